"""better_console alone: no better_tenant, audit, webhooks or mail."""

from tests.projects.base import *  # noqa: F403
from tests.projects.base import databases

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.postgres",
    "better_console",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "better_console.urls"
DATABASES = databases("console_only")

BETTER_CONSOLE = {
    "TOKEN_HASH": "sha256:" + "c0ffee00" * 8,
    "AUTO_APPROVE": True,
    "ALLOWED_ORIGINS": ["https://console.usebetter.dev"],
}
