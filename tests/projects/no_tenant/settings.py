"""better_audit, better_console, better_webhooks and better_mail without better_tenant."""

from tests.projects.base import *  # noqa: F403
from tests.projects.base import ADMIN_APPS, ADMIN_MIDDLEWARE, databases

INSTALLED_APPS = [
    *ADMIN_APPS,
    "rest_framework",
    "drf_spectacular",
    "better_audit",
    "better_webhooks",
    "better_mail",
    "better_console",
    # Its models are audited and its mail.py holds a template.
    "tests.projects.no_tenant",
]
MIDDLEWARE = [*ADMIN_MIDDLEWARE, "better_audit.middleware.AuditContextMiddleware"]
ROOT_URLCONF = "tests.projects.no_tenant.urls"
DATABASES = databases("no_tenant")
DEFAULT_FROM_EMAIL = "no-reply@example.com"

BETTER_AUDIT = {"TABLES": ["no_tenant_orders"], "CELERY": False}
BETTER_WEBHOOKS = {
    "ENCRYPTION_KEYS": ["v1:" + "0123456789abcdef" * 4],
    # The tests' receiver listens on 127.0.0.1; deliveries go through the polling worker.
    "ALLOW_HTTP_LOCALHOST": True,
    "CELERY": False,
    "EVENTS": [
        {
            "name": "order.created",
            "description": "An order was created",
            "schema": {
                "type": "object",
                "properties": {"number": {"type": "string"}},
                "required": ["number"],
            },
        }
    ],
}
BETTER_MAIL = {"ASYNC": False}
BETTER_CONSOLE = {
    "TOKEN_HASH": "sha256:" + "c0ffee00" * 8,
    "AUTO_APPROVE": True,
    "ALLOWED_ORIGINS": ["https://console.usebetter.dev"],
}
