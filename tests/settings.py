"""Settings for the test suite: the example project plus test-only models, run as the app role."""

import os

import django

from example_project.settings import *  # noqa: F403
from example_project.settings import DATABASE_OWNER, DATABASES, INSTALLED_APPS

_EXTRA_APPS = ("better_audit", "rest_framework", "rest_framework.authtoken")
INSTALLED_APPS = [
    *INSTALLED_APPS,
    *(app for app in _EXTRA_APPS if app not in INSTALLED_APPS),
    "tests.testapp",
]

# The suite connects as the application role; the harness creates and migrates the test database
# as the owner (better_tenant.testing.django_db_setup_with_roles).
DATABASES["default"]["TEST"] = {
    "NAME": os.environ.get("BETTER_TEST_DB", "test_better"),
    "OWNER": {"USER": DATABASE_OWNER["USER"], "PASSWORD": DATABASE_OWNER.get("PASSWORD", "")},
}
# A Celery worker started by the tests connects to the test database through this variable.
if os.environ.get("BETTER_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["BETTER_DB_NAME"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# better_audit: the audited test tables (tests/testapp models; Note, Comment and Country are not).
BETTER_AUDIT = {
    "TABLES": [
        "test_invoices",
        "testapp.InvoiceLine",
        "test_attachments",
        "test_labels",
        "test_events",
        "test_places",
        "test_shops",
    ],
    "SKIP_BEFORE_STATE": ["test_events"],
}

# better_webhooks: fixed test keys, plain http to the tests' local receivers, no Celery (the tests
# run the polling worker or the task directly).
BETTER_WEBHOOKS = {
    "ENCRYPTION_KEYS": ["v1:" + "0123456789abcdef" * 4],
    "ALLOW_HTTP_LOCALHOST": True,
    "CELERY": False,
}

# better_mail: mails stay in django.core.mail.outbox (tests switch backends with
# tests.mail.backends.use_backend).
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
else:
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

# better_console: a fixed signing hash, both sign-in methods (tests switch with override_settings).
BETTER_CONSOLE = {
    "TOKEN_HASH": "sha256:" + "c0ffee00" * 8,
    "AUTO_APPROVE": True,
    "MAGIC_LINK": {"ALLOWED_EMAILS": ["admin@example.com", "*@ops.example.com"]},
    "ALLOWED_ORIGINS": ["https://console.usebetter.dev", "http://localhost:5173"],
}
