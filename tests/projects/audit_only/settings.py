"""better_audit alone, with Django's admin: no better_tenant, console, webhooks or mail."""

from tests.projects.base import *  # noqa: F403
from tests.projects.base import ADMIN_APPS, ADMIN_MIDDLEWARE, databases

INSTALLED_APPS = [*ADMIN_APPS, "better_audit", "tests.projects.audit_only"]
MIDDLEWARE = [*ADMIN_MIDDLEWARE, "better_audit.middleware.AuditContextMiddleware"]
ROOT_URLCONF = "tests.projects.audit_only.urls"
DATABASES = databases("audit_only")

BETTER_AUDIT = {"TABLES": ["audit_only_orders"], "CELERY": False}
