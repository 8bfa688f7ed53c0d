"""Settings of the full test project: the five apps, DRF and the test models, as the app role."""

import os

from tests.projects.base import *  # noqa: F403
from tests.projects.base import ADMIN_APPS, ADMIN_MIDDLEWARE, broker_url, databases

INSTALLED_APPS = [
    *ADMIN_APPS,
    # The live server of the browser tests serves the admin's stylesheets and scripts.
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "better_tenant",
    "better_audit",
    "better_webhooks",
    "better_mail",
    "better_console",
    "tests.testapp",
]

# Each app's middleware after authentication, in the order the README and the example use.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    *ADMIN_MIDDLEWARE,
    "better_audit.middleware.AuditContextMiddleware",
    "better_tenant.middleware.TenantMiddleware",
]
ROOT_URLCONF = "tests.urls"
# Development, as for the example: manage.py and the benchmarks on these settings may start with
# the console's AUTO_APPROVE, which it refuses elsewhere. pytest-django turns DEBUG off in tests.
DEBUG = True

# The suite connects as the application role; the harness creates and migrates the test database
# (BETTER_TEST_DB, default test_better) as the owner (better_tenant.testing).
DATABASES = databases()
# The benchmarks that run on these settings ask for persistent connections, as a deployment has.
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("CONN_MAX_AGE", "0"))

# Celery (tests.testapp.celery): REDIS_URL, or the embedded Redis in .data/redis. Tests run tasks
# eagerly or in a worker of their own (tests.support.celery_worker).
CELERY_BROKER_URL = broker_url()
CELERY_RESULT_BACKEND = CELERY_BROKER_URL

# drf-spectacular describes the DRF views (the webhooks API included) as OpenAPI.
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}

# better_tenant: requests name their tenant in a header; the tenant tests configure the other
# resolvers (path, subdomain, token) themselves.
BETTER_TENANT = {"HEADER": "X-Tenant-ID"}

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

# better_mail: mails stay in django.core.mail.outbox (tests.projects.base; tests switch backends
# with tests.mail.backends.use_backend).

# better_console: a fixed signing hash, both sign-in methods (tests switch with override_settings).
BETTER_CONSOLE = {
    "TOKEN_HASH": "sha256:" + "c0ffee00" * 8,
    "AUTO_APPROVE": True,
    "MAGIC_LINK": {"ALLOWED_EMAILS": ["admin@example.com", "*@ops.example.com"]},
    "ALLOWED_ORIGINS": ["https://console.usebetter.dev", "http://localhost:5173"],
}
