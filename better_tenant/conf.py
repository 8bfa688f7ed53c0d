"""Settings of better_tenant, read from ``settings.BETTER_TENANT``."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from better_core.settings import (
    AppSettings,
    Bool,
    Import,
    Int,
    Invalid,
    Setting,
    Str,
    of_type,
    role_name,
)


def _database(alias: str) -> None:
    if alias not in settings.DATABASES:
        raise Invalid(
            f"is {alias!r}, which is not in DATABASES.",
            id="better_tenant.E008",
            hint=f"Use one of: {', '.join(settings.DATABASES)}.",
        )


def _system_role(role: str) -> None:
    try:
        role_name(role)
    except Invalid as exc:
        raise Invalid(
            exc.message,
            id="better_tenant.E009",
            hint="Use letters, digits and underscores, starting with a letter (at most 63 "
            "bytes), e.g. 'better_tenant_system'.",
        ) from None


def _path_pattern(pattern: str) -> None:
    segments = pattern.strip("/").split("/")
    if not pattern.startswith("/"):
        problem = "does not start with '/'"
    elif ":tenantId" not in segments:
        problem = "has no ':tenantId' segment"
    elif "*" in segments[:-1]:
        problem = "has '*' before its last segment"
    else:
        return
    raise Invalid(f"{pattern!r} {problem}.", id="better_tenant.E004")


def _jwt_algorithms(value: Any) -> Any:
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(name, str) and name for name in value)
    ):
        raise Invalid(f"must be a non-empty list of algorithm names, got {value!r}.")
    if any(name.lower() == "none" for name in value):
        raise Invalid(
            "allows 'none', which accepts unsigned tokens.",
            hint="Remove 'none'; list only the algorithms your issuer signs with.",
        )
    return value


def _paths(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        raise Invalid(f"must be a list or tuple, got {type(value).__name__} {value!r}.")
    bad = [path for path in value if not isinstance(path, str) or not path.startswith("/")]
    if bad:
        raise Invalid(
            f"holds entries that are not paths: {', '.join(map(repr, bad))}.",
            id="better_tenant.E011",
            hint="Each entry is a path prefix starting with '/', e.g. '/api/'.",
        )
    return value


def _error_status(status: int) -> None:
    if not 400 <= status <= 599:
        raise Invalid(
            f"is {status}; it must be an HTTP error status from 400 to 599.",
            id="better_tenant.E005",
        )


def _cache_alias(alias: str) -> None:
    caches = getattr(settings, "CACHES", {}) or {}
    if alias not in caches:
        raise Invalid(
            f"is {alias!r}, which is not in CACHES.",
            id="better_tenant.E010",
            hint=f"Use one of: {', '.join(caches) or '(no caches configured)'}.",
        )


def _context_key(value: Any) -> Any:
    if not isinstance(value, str | bytes):
        raise Invalid(f"must be a string or bytes, got {type(value).__name__}.")
    if len(value) < 32:
        raise Invalid(
            f"is {len(value)} characters long; a key needs at least 32.",
            hint="Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'",
        )
    return value


def _context_key_fallbacks(value: Any) -> Any:
    if value is None:
        return value
    if not isinstance(value, list | tuple) or len(value) > 1:
        raise Invalid(
            "must be None or a list of at most one key: the database holds two live keys, the "
            "signing key and one fallback."
        )
    for key in value:
        _context_key(key)
    return value


SCHEMA = {
    "DATABASE": Str(
        "default",
        validate=_database,
        id="better_tenant.E003",
        hint="The database alias whose connection carries the tenant scope (PostgreSQL).",
    ),
    "SYSTEM_ROLE": Str(
        "better_tenant_system",
        validate=_system_role,
        id="better_tenant.E003",
        hint="The NOLOGIN role run_as_system() enters with SET LOCAL ROLE, e.g. "
        "'better_tenant_system'.",
    ),
    "HEADER": Str(
        "X-Tenant-ID",
        nullable=True,
        blank=False,
        id="better_tenant.E003",
        hint="Name the header (e.g. 'X-Tenant-ID') or set it to None to disable it.",
    ),
    # Strict: a pattern that cannot be matched stops the middleware rather than resolving nothing.
    "PATH": Str(
        None,
        nullable=True,
        validate=_path_pattern,
        strict=True,
        id="better_tenant.E003",
        hint="Write the segment that holds the tenant as ':tenantId', e.g. '/t/:tenantId/*' "
        "('*' matches the rest of the path and may only end it).",
    ),
    "SUBDOMAIN": Bool(
        False,
        id="better_tenant.E003",
        hint="True resolves the tenant from the first label of the host (tenant.example.com).",
    ),
    "JWT_CLAIM": Str(
        None,
        nullable=True,
        id="better_tenant.E003",
        hint="The claim of 'Authorization: Bearer <jwt>' naming the tenant, e.g. 'tenant_id'.",
    ),
    "JWT_KEY": Setting(
        None,
        id="better_tenant.E003",
        hint="The key verifying the JWT; None decodes it without verification.",
    ),
    "JWT_ALGORITHMS": Setting(
        ["HS256"],
        parse=_jwt_algorithms,
        id="better_tenant.E007",
        hint="E.g. ['HS256'] or ['RS256'].",
    ),
    "JWT_AUDIENCE": Setting(
        None,
        parse=of_type(str, list, tuple),
        nullable=True,
        id="better_tenant.E003",
        hint="The expected 'aud' of verified tokens; None rejects tokens carrying one.",
    ),
    # Strict: a resolver that cannot be loaded stops the middleware rather than resolving nothing.
    "CUSTOM_RESOLVER": Import(
        None,
        strict=True,
        id="better_tenant.E006",
        hint="A dotted path to a callable(request) -> str | None, e.g. "
        "'myproject.tenancy.resolve'.",
    ),
    "RESOLVE_TO_ID": Import(
        None,
        id="better_tenant.E006",
        hint="A dotted path to a callable(identifier) -> UUID | str | None.",
    ),
    # Strict: falling back to no AUTHORIZE would let every caller into any tenant.
    "AUTHORIZE": Import(
        None,
        strict=True,
        id="better_tenant.E006",
        hint="A callable(request, tenant_id) -> bool or its dotted path, e.g. "
        "better_tenant.authorization.membership('app.Membership').",
    ),
    "PATH_PREFIXES": Setting(
        [],
        parse=_paths,
        id="better_tenant.E003",
        hint="Where the middleware applies, e.g. ['/api/']; empty: every path not exempt.",
    ),
    "EXEMPT_PATHS": Setting(
        ["/admin/", "/static/", "/media/", "/favicon.ico"],
        parse=_paths,
        id="better_tenant.E003",
        hint="Path prefixes the middleware leaves alone, e.g. ['/admin/', '/static/'].",
    ),
    "MISSING_TENANT_STATUS": Int(
        404,
        validate=_error_status,
        id="better_tenant.E003",
        hint="Use 404 (the default), 400 or 403, or set ON_MISSING_TENANT to build the response "
        "yourself.",
    ),
    "ON_MISSING_TENANT": Import(
        None,
        id="better_tenant.E006",
        hint="A dotted path to a callable(request) -> HttpResponse.",
    ),
    "CACHE_ALIAS": Str(
        "default",
        validate=_cache_alias,
        id="better_tenant.E003",
        hint="The cache alias of the identifier -> tenant id cache.",
    ),
    "CACHE_TIMEOUT": Int(
        300,
        min=0,
        nullable=True,
        id="better_tenant.E003",
        hint="Seconds an identifier lookup is cached (0 or more, or None); 300 by default.",
    ),
    "CELERY": Bool(
        True, id="better_tenant.E003", hint="True carries the sender's tenant to Celery tasks."
    ),
    # Signed: an injected set_config cannot name another tenant (see better_tenant.sql).
    "SIGNED_CONTEXT": Bool(
        True,
        id="better_tenant.E014",
        hint="True (the default) verifies the tenant in the database; False trusts the plain "
        "setting, for databases where the owner may not create SECURITY DEFINER functions.",
    ),
    "CONTEXT_KEY": Setting(
        None,
        nullable=True,
        parse=_context_key,
        strict=True,
        id="better_tenant.E014",
        hint="At least 32 characters, or None to derive the key from SECRET_KEY.",
    ),
    "CONTEXT_KEY_FALLBACKS": Setting(
        None,
        nullable=True,
        parse=_context_key_fallbacks,
        strict=True,
        id="better_tenant.E014",
        hint="None (derived from SECRET_KEY_FALLBACKS) or a list of at most one earlier key.",
    ),
    # False: a view is atomic exactly when the project makes it so (ATOMIC_REQUESTS, atomic());
    # each statement carries the tenant. True: the whole view runs in one transaction.
    "ATOMIC": Bool(
        False,
        id="better_tenant.E003",
        hint="True runs each tenant view in one transaction (rolled back if it raises); False "
        "leaves transactions to Django.",
    ),
}

tenant_settings = AppSettings(
    "BETTER_TENANT",
    SCHEMA,
    id="better_tenant.E001",
    unknown_id="better_tenant.E002",
    # DATABASE and CACHE_ALIAS name entries of these.
    reload_on=("DATABASES", "CACHES"),
)
