"""better_mail alone, with Django's admin: no better_tenant, audit, console or webhooks."""

from tests.projects.base import *  # noqa: F403
from tests.projects.base import ADMIN_APPS, ADMIN_MIDDLEWARE, databases

# This package is an app too: better_mail autodiscovers the templates in its mail.py.
INSTALLED_APPS = [*ADMIN_APPS, "better_mail", "tests.projects.mail_only"]
MIDDLEWARE = ADMIN_MIDDLEWARE
ROOT_URLCONF = "tests.projects.mail_only.urls"
DATABASES = databases("mail_only")

# Sent in this process after commit, not through Celery.
BETTER_MAIL = {"ASYNC": False}
DEFAULT_FROM_EMAIL = "no-reply@example.com"
