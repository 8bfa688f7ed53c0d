"""Settings of the example project, read from the environment (django-environ).

DATABASE_URL is the runtime (app) role; DATABASE_OWNER_URL the role that owns the tables and runs
migrations. With neither set, an embedded PostgreSQL is started in .data/ with both roles.
Commands that change the schema (migrate, makemigrations, flush, better_tenant init) connect as the
owner automatically; everything else, runserver included, runs as the app role.
"""

import sys
from pathlib import Path

import django
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
    # Django 6.0+ checks it wherever a model has an ArrayField (audit, console, webhooks, mail).
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "better_tenant",
    "better_audit",
    "better_webhooks",
    "better_mail",
    "better_console",
    "example_project.projects",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "better_audit.middleware.AuditContextMiddleware",
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
        or sys.argv[1:3]
        in (["better_tenant", "init"], ["better_audit", "migrate"], ["better_console", "migrate"])
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

# Signs and verifies the API's access tokens (example_project.projects.auth).
JWT_KEY = env.str("JWT_KEY", default=SECRET_KEY)

BETTER_TENANT = {
    "HEADER": "X-Tenant-ID",
    "PATH": "/t/:tenantId/*",
    "SUBDOMAIN": True,
    # The API's tokens name their tenant in the "tenant" claim.
    "JWT_CLAIM": "tenant",
    "JWT_KEY": JWT_KEY,
    # Sign-up and sign-in come before any tenant; the webhook receiver is called by the sender.
    "EXEMPT_PATHS": ["/admin/", "/static/", "/health", "/api/auth/", "/hooks/"],
}
# W008 warns that the header, path and subdomain sit beside verified tokens with no AUTHORIZE.
# Here that is deliberate: /projects is the open demonstration of those resolvers, and the API
# authenticates in DRF, after the middleware, where its permissions check the membership
# (example_project.projects.api): a middleware-level authorizer would see anonymous users.
SILENCED_SYSTEM_CHECKS = ["better_tenant.W008"]

# The example SaaS (example_project.projects): who changed what, tagged for compliance.
BETTER_AUDIT = {
    "TABLES": ["projects", "tasks", "memberships", "invites", "auth.User"],
    "ACTOR_EXTRACTORS": [
        ["better_audit.extractors.from_bearer_token", {"claim": "sub"}],
        "better_audit.extractors.from_user",
    ],
    "JWT_KEY": JWT_KEY,
    "ENRICHMENT": [
        {"table": "projects", "operation": "*", "compliance": ["soc2"]},
        {
            "table": "projects",
            "operation": "DELETE",
            "label": "Project deleted",
            "severity": "high",
        },
        {"table": "tasks", "operation": "*", "compliance": ["soc2"]},
        {"table": "memberships", "operation": "*", "compliance": ["soc2"], "severity": "high"},
        {"table": "invites", "operation": "*", "compliance": ["gdpr", "soc2"]},
        {
            "table": "auth.User",
            "operation": "*",
            "compliance": ["gdpr", "soc2"],
            "redact": ["password"],
            "description": "example_project.projects.audit.describe_user_change",
        },
    ],
}

BETTER_WEBHOOKS = {
    # `manage.py better_webhooks generate-key`; with DEBUG and none, a key derived from SECRET_KEY.
    "ENCRYPTION_KEYS": env.list("WEBHOOK_ENCRYPTION_KEYS", default=[]),
    # The demo's receiver is this server on 127.0.0.1.
    "ALLOW_HTTP_LOCALHOST": DEBUG,
}

# Mails go to files in .data/mail unless EMAIL_BACKEND names another backend (SMTP, anymail).
_MAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend")
_MAIL_FILES = BASE_DIR / ".data" / "mail"
if django.VERSION >= (6, 1):
    # Django 6.1 configures mail through MAILERS; EMAIL_BACKEND and EMAIL_FILE_PATH are deprecated.
    MAILERS = {
        "default": {
            "BACKEND": _MAIL_BACKEND,
            "OPTIONS": {"file_path": str(_MAIL_FILES)} if "filebased" in _MAIL_BACKEND else {},
        }
    }
else:
    EMAIL_BACKEND = _MAIL_BACKEND
    EMAIL_FILE_PATH = _MAIL_FILES

# better_console: auto-approve while developing; in production, magic link codes to the addresses
# in BETTER_CONSOLE_ALLOWED_EMAILS. The fixed hash below signs development sessions only.
_DEV_CONSOLE_TOKEN_HASH = "sha256:" + "5d0c9a1e" * 8
BETTER_CONSOLE = {
    "TOKEN_HASH": env.str(
        "BETTER_CONSOLE_TOKEN_HASH", default=_DEV_CONSOLE_TOKEN_HASH if DEBUG else ""
    ),
    "AUTO_APPROVE": DEBUG,
    "MAGIC_LINK": (
        {"ALLOWED_EMAILS": env.str("BETTER_CONSOLE_ALLOWED_EMAILS")}
        if env.str("BETTER_CONSOLE_ALLOWED_EMAILS", default="")
        else None
    ),
    "ALLOWED_ORIGINS": [
        "https://console.usebetter.dev",
        *(["http://localhost:5173"] if DEBUG else []),
    ],
}
