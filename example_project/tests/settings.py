"""Settings of the example's tests: the example project on a test database of its own."""

import os

import django

from example_project.settings import *  # noqa: F403
from example_project.settings import BETTER_WEBHOOKS, DATABASE_OWNER, DATABASES

# The tests connect as the application role; the harness creates and migrates the test database
# as the owner (better_tenant.testing.django_db_setup_with_roles). The suffix keeps it apart from
# the main suite's, which may run at the same time (tests/test_example.py runs this suite).
DATABASES["default"]["TEST"] = {
    "NAME": f"{os.environ.get('BETTER_TEST_DB', 'test_better')}_example",
    "OWNER": {"USER": DATABASE_OWNER["USER"], "PASSWORD": DATABASE_OWNER.get("PASSWORD", "")},
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# better_webhooks: a fixed key, plain http to the local receiver, no Celery (the tests run the
# polling worker or deliver directly).
BETTER_WEBHOOKS = {
    **BETTER_WEBHOOKS,
    "ENCRYPTION_KEYS": ["v1:" + "0123456789abcdef" * 4],
    "ALLOW_HTTP_LOCALHOST": True,
    "CELERY": False,
}

# Mails stay in django.core.mail.outbox instead of .data/mail.
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
else:
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
