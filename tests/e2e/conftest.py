"""Fixtures of the browser tests: Chromium, a page on the live server, a logged-in admin and a
local webhook receiver."""

from tests.support.browser import (  # noqa: F401
    admin_page,
    browser,
    chromium_path,
    page,
    server_errors,
    superuser,
)
from tests.support.webhooks import receiver  # noqa: F401
