"""Fixtures of the browser tests: Chromium, a page on the live server and a logged-in admin."""

from tests.support.browser import (  # noqa: F401
    admin_page,
    browser,
    chromium_path,
    page,
    server_errors,
    superuser,
)
