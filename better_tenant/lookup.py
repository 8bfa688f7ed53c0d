"""Identifier to tenant id: UUIDs, slugs and a custom ``RESOLVE_TO_ID``, cached."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.core.cache import caches
from django.db import connections

from better_tenant import sql
from better_tenant.conf import tenant_settings

# Longer than any slug or UUID, or outside these characters: an unknown tenant without a query.
MAX_IDENTIFIER = 255
_IDENTIFIER_RE = re.compile(r"^[A-Za-z0-9._:@-]+$")
_MISS = "-"


def _cache() -> Any:
    return caches[tenant_settings.CACHE_ALIAS]


def _key(kind: str, value: str) -> str:
    return f"better_tenant:{kind}:{value}"


def resolve_to_id(identifier: Any) -> uuid.UUID | None:
    """The id of the tenant named by ``identifier`` (UUID or slug), or None if there is none.

    A configured ``RESOLVE_TO_ID`` callable decides first (custom domains and the like); its
    answer is trusted as is. Otherwise a UUID must belong to an existing tenant and anything else
    is looked up as a slug. Answers are cached and invalidated when a tenant changes.
    """
    if identifier is None:
        return None
    if isinstance(identifier, uuid.UUID):
        identifier = str(identifier)
    if not isinstance(identifier, str):
        return None
    identifier = identifier.strip()
    if not identifier or len(identifier) > MAX_IDENTIFIER or not _IDENTIFIER_RE.match(identifier):
        return None
    custom = tenant_settings.RESOLVE_TO_ID
    if custom is not None:
        result = custom(identifier)
        if result is None:
            return None
        try:
            return uuid.UUID(str(result))
        except ValueError:
            return None
    try:
        as_uuid = uuid.UUID(identifier)
    except ValueError:
        return _lookup("slug", identifier.lower())
    return _lookup("id", str(as_uuid))


def _lookup(kind: str, value: str) -> uuid.UUID | None:
    cache = _cache()
    key = _key(kind, value)
    cached = cache.get(key)
    if cached is not None:
        return None if cached == _MISS else uuid.UUID(cached)
    found = _resolve(value)
    # Misses are cached briefly: an unknown tenant costs no query per request, and a new tenant
    # shows up within seconds even on caches that are not invalidated across processes.
    timeout = tenant_settings.CACHE_TIMEOUT if found else min(5, tenant_settings.CACHE_TIMEOUT)
    cache.set(key, str(found) if found else _MISS, timeout)
    return found


def _resolve(value: str) -> uuid.UUID | None:
    """Ask the database which tenant ``value`` (a canonical UUID or a slug) names.

    A tenant scope sees only its own row of the tenants table and code outside any scope sees
    none, so the answer comes from ``better_tenant_lookup()``, a function owned by the migration
    role that returns an id and nothing else. One query, as a plain SELECT on the table was.
    """
    with connections[tenant_settings.DATABASE].cursor() as cursor:
        cursor.execute(f"SELECT {sql.LOOKUP_FUNCTION}(%s)", [value])
        row = cursor.fetchone()
    found = row[0] if row else None
    if found is None or isinstance(found, uuid.UUID):
        return found
    return uuid.UUID(str(found))


def invalidate(tenant_id: Any = None, slugs: tuple[str, ...] = ()) -> None:
    """Forget cached answers for a tenant id and slugs."""
    keys = [_key("slug", slug.lower()) for slug in slugs if slug]
    if tenant_id is not None:
        keys.append(_key("id", str(tenant_id)))
    if keys:
        _cache().delete_many(keys)
