"""Browser fixtures: the system Chromium, driven by Playwright, against the live server."""

# A conftest.py enables them by importing them (tests/e2e, example_project/tests/e2e):
#
# - ``chromium_path``: the system Chromium (``BETTER_CHROMIUM``, else ``chromium`` or
#   ``chromium-browser`` on the PATH). Playwright never downloads a browser of its own here.
# - ``browser``: one headless Chromium for the whole package of the conftest.
# - ``page``: a fresh browser context (cookies, storage) per test, its URLs relative to the live
#   server; ``server_errors`` lists every response of that page with a 5xx status.
# - ``superuser`` and ``admin_page``: a superuser, and a page logged in as them through the
#   admin's login form; ``login(page, username, password)`` logs in any other user.
#
# Without Chromium or Playwright the tests skip, saying which is missing; with
# ``BETTER_REQUIRE_BROWSER=1`` (as CI sets it) they fail instead.
#
# The tests run against the live server's own database connection, so their data must be
# committed: ``live_server`` makes each test transactional, and the suite's harness empties the
# tables as the owner role afterwards.

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")
# No network but loopback: without these Chromium keeps calling out (updates, sync, QUIC probes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
SUPERUSER = "e2e-admin"
SUPERUSER_PASSWORD = "e2e-admin-password"


def find_chromium() -> str | None:
    """The Chromium executable to drive, or None."""
    explicit = os.environ.get("BETTER_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_unavailable(reason: str) -> None:
    """Skip, or fail when the run requires the browser (``BETTER_REQUIRE_BROWSER=1``)."""
    if os.environ.get("BETTER_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (BETTER_REQUIRE_BROWSER=1 requires the browser)", pytrace=False)
    pytest.skip(reason)


def login(page: Any, username: str, password: str) -> None:
    """Log in through the admin's login form; raises AssertionError when the admin refuses."""
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    with page.expect_navigation():
        page.click("#login-form [type=submit]")
    if page.locator("#user-tools").count() == 0:
        note = page.locator(".errornote").all_inner_texts()
        raise AssertionError(f"The admin refused {username!r}: {note or page.title()}")


@pytest.fixture(scope="package")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        browser_unavailable(
            "No Chromium found: install Debian's chromium package (apt-get install chromium) "
            "or set BETTER_CHROMIUM to its path"
        )
    return path


@pytest.fixture(scope="package")
def browser(chromium_path: str) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_unavailable("Playwright is not installed: pip install -e '.[dev]'")
    # Playwright's sync API keeps its event loop marked as running in this thread between calls,
    # which Django's async-safety check takes for async code: it would refuse the tests' ORM calls
    # (and the database fixtures'), though every one of them is synchronous. Only while the
    # browser lives, so the rest of the suite keeps the check.
    saved = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        # Playwright gives every launch a fresh, temporary profile (user data dir).
        chromium = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()
        if saved is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = saved


@pytest.fixture
def server_errors() -> list[str]:
    """``"<status> <url>"`` of each 5xx response the ``page`` received."""
    return []


@pytest.fixture
def page(browser: Any, live_server: Any, server_errors: list[str]) -> Iterator[Any]:
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()

    def record(response: Any) -> None:
        if response.status >= 500:
            server_errors.append(f"{response.status} {response.url}")

    tab.on("response", record)
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture
def superuser(transactional_db: None, django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser(
        SUPERUSER, f"{SUPERUSER}@example.com", SUPERUSER_PASSWORD
    )


@pytest.fixture
def admin_page(page: Any, superuser: Any) -> Any:
    """A page logged into the admin as ``superuser``, on the admin index."""
    login(page, superuser.get_username(), SUPERUSER_PASSWORD)
    return page
