"""Browser tests: the admin driven through Debian's Chromium."""
