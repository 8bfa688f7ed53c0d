"""Settings of better_tenant, read from ``settings.BETTER_TENANT``."""

from __future__ import annotations

from better_core.settings import AppSettings

DEFAULTS = {
    # Database alias whose connection carries the tenant scope.
    "DATABASE": "default",
    # NOLOGIN role that run_as_system() enters with SET LOCAL ROLE; the app role is a NOINHERIT
    # member of it.
    "SYSTEM_ROLE": "better_tenant_system",
    # Resolvers, tried in this order; None disables one.
    "HEADER": "X-Tenant-ID",
    "PATH": None,  # e.g. "/t/:tenantId/*"
    "SUBDOMAIN": False,
    "JWT_CLAIM": None,  # e.g. "tenant_id", read from "Authorization: Bearer <jwt>"
    "JWT_KEY": None,  # verify the JWT with this key; None decodes without verification
    "JWT_ALGORITHMS": ["HS256"],
    "JWT_AUDIENCE": None,  # expected "aud" of verified tokens; None rejects tokens carrying one
    "CUSTOM_RESOLVER": None,  # dotted path: callable(request) -> str | None
    "RESOLVE_TO_ID": None,  # dotted path: callable(identifier) -> UUID | str | None
    # Who may use the tenant a request names: callable(request, tenant_id) -> bool (or a dotted
    # path), sync or async, run before the view inside the tenant's scope. Resolving a tenant
    # proves nothing about the caller; e.g. better_tenant.authorization.membership(...).
    "AUTHORIZE": None,
    # Where the middleware applies.
    "PATH_PREFIXES": [],  # empty: every path that is not exempt
    "EXEMPT_PATHS": ["/admin/", "/static/", "/media/", "/favicon.ico"],
    # What a request without a known tenant gets.
    "MISSING_TENANT_STATUS": 404,
    "ON_MISSING_TENANT": None,  # dotted path: callable(request) -> HttpResponse
    # Identifier -> tenant id cache.
    "CACHE_ALIAS": "default",
    "CACHE_TIMEOUT": 300,
    # Carry the tenant of the sender to Celery tasks.
    "CELERY": True,
}

IMPORT_STRINGS = ("CUSTOM_RESOLVER", "RESOLVE_TO_ID", "ON_MISSING_TENANT", "AUTHORIZE")

tenant_settings = AppSettings("BETTER_TENANT", DEFAULTS, IMPORT_STRINGS)
