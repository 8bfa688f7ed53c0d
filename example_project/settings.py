"""Settings of the example project, read from the environment (django-environ).

DATABASE_URL is the runtime (app) role; DATABASE_OWNER_URL the role that owns the tables and runs
migrations. With neither set, an embedded PostgreSQL is started in .data/ with both roles.
Commands that change the schema (migrate, makemigrations, flush, better_tenant init) connect as the
owner automatically; everything else, runserver included, runs as the app role.
"""

import sys
from pathlib import Path

import environ

from better_core.embedded import configure_databases, configure_redis

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

SECRET_KEY = env.str("SECRET_KEY", default="dev-insecure-change-me-in-production-0123456789abcdef")
DEBUG = env.bool("DEBUG", default=True)
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=["localhost", "127.0.0.1", ".localhost", "testserver"]
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "better_tenant",
    "better_audit",
    "better_webhooks",
    "better_mail",
    "example_project.projects",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "better_tenant.middleware.TenantMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"
ASGI_APPLICATION = "example_project.asgi.application"

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

_runtime_db, _owner_db = configure_databases(env, BASE_DIR)
OWNER_COMMANDS = {"migrate", "makemigrations", "flush", "sqlflush", "squashmigrations"}
_as_owner = env.str("DB_ROLE", default="") == "owner" or (
    len(sys.argv) > 1
    and sys.argv[0].endswith("manage.py")
    and (
        sys.argv[1] in OWNER_COMMANDS
        or sys.argv[1:3] in (["better_tenant", "init"], ["better_audit", "migrate"])
    )
)
DATABASES = {"default": _owner_db if _as_owner else _runtime_db}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DATABASE_OWNER = _owner_db

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Celery: REDIS_URL, or an embedded Redis in .data/redis (reused when already running).
CELERY_BROKER_URL = configure_redis(env, BASE_DIR)
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

AUTH_PASSWORD_VALIDATORS = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# drf-spectacular describes the DRF views (the webhooks API included) as OpenAPI.
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
SPECTACULAR_SETTINGS = {"TITLE": "better example project API", "VERSION": "1.0.0"}

BETTER_TENANT = {
    "HEADER": "X-Tenant-ID",
    "PATH": "/t/:tenantId/*",
    "SUBDOMAIN": True,
    "EXEMPT_PATHS": ["/admin/", "/static/", "/health"],
}
