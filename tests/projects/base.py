"""Settings shared by the test projects; each project's settings add its apps and database name."""

from __future__ import annotations

import os
from pathlib import Path

import django
import environ

from better_core.embedded import configure_databases, configure_redis

# The repository root: the embedded servers (.data/) and .env are shared by every test project.
_ROOT = Path(__file__).resolve().parents[2]
_env = environ.Env()
if (_ROOT / ".env").exists():
    environ.Env.read_env(_ROOT / ".env", overwrite=False)

SECRET_KEY = "test-projects-insecure-0123456789abcdef0123456789abcdef"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# Django's admin and what it needs, for the projects whose admin pages are tested.
ADMIN_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Django 6.0+ checks it wherever a model has an ArrayField (audit, console, webhooks, mail).
    "django.contrib.postgres",
]
ADMIN_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

# Mails stay in django.core.mail.outbox.
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
else:
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def databases(project: str = "") -> dict[str, dict]:
    """``DATABASES``: the app role at run time; a test database of the project's own, which the
    harness creates and migrates as the owner (better_tenant.testing).

    The full project (``tests/settings.py``, no ``project``) uses ``BETTER_TEST_DB`` itself; each
    other project suffixes it with its name.
    """
    runtime, owner = configure_databases(_env, _ROOT)
    # A Celery worker started by the tests connects to the test database through this variable.
    if os.environ.get("BETTER_DB_NAME"):
        runtime["NAME"] = os.environ["BETTER_DB_NAME"]
    name = os.environ.get("BETTER_TEST_DB", "test_better")
    # One database per project, so that the projects and the main suite may run side by side.
    runtime["TEST"] = {
        "NAME": f"{name}_{project}" if project else name,
        "OWNER": {"USER": owner["USER"], "PASSWORD": owner.get("PASSWORD", "")},
    }
    return {"default": runtime}


def broker_url() -> str:
    """The Celery broker: REDIS_URL, or the embedded Redis in the repository's .data/redis."""
    return configure_redis(_env, _ROOT)
