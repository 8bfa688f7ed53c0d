"""better_tenant alone: no better_audit, console, webhooks or mail."""

from tests.projects.base import *  # noqa: F403
from tests.projects.base import databases

INSTALLED_APPS = ["django.contrib.contenttypes", "better_tenant", "tests.projects.tenant_only"]
MIDDLEWARE = ["better_tenant.middleware.TenantMiddleware"]
ROOT_URLCONF = "tests.projects.tenant_only.urls"
DATABASES = databases("tenant_only")

BETTER_TENANT = {"HEADER": "X-Tenant-ID", "CELERY": False}
