"""The signed context's keys: derived from settings, signed into proofs, installed in the database.

``BETTER_TENANT["CONTEXT_KEY"]`` signs; ``CONTEXT_KEY_FALLBACKS`` (at most one) is still accepted,
so a key can be rotated with two live keys. By default both derive from ``SECRET_KEY`` and
``SECRET_KEY_FALLBACKS`` with the label :data:`KEY_LABEL`, so rotating Django's secret rotates
them too. A key is 128 bits (see ``mac``). The database holds the same keys in owner-only
sequences (``sql.KEY_SEQUENCES``), written by migration 0003 and by ``manage.py better_tenant
init``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from typing import Any

import psycopg
from django.conf import settings

from better_tenant import sql
from better_tenant.conf import tenant_settings

#: The label of the key derived from ``SECRET_KEY``: the first ``KEY_BYTES`` of
#: HMAC-SHA256(SECRET_KEY, KEY_LABEL).
KEY_LABEL = "better_tenant.context_key"
KEY_BYTES = 16


# Both are pure: cached, so that signing a proof on every statement derives no key again.
@functools.lru_cache(maxsize=8)
def _derive(secret: str | bytes) -> bytes:
    raw = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(raw, KEY_LABEL.encode(), hashlib.sha256).digest()[:KEY_BYTES]


@functools.lru_cache(maxsize=8)
def key_from_setting(value: str | bytes) -> bytes:
    """A configured key (any length, at least 32 characters) hashed to 16 bytes."""
    raw = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(raw).digest()[:KEY_BYTES]


def current_key() -> bytes:
    configured = tenant_settings.CONTEXT_KEY
    return key_from_setting(configured) if configured else _derive(settings.SECRET_KEY)


def live_keys() -> list[bytes]:
    """The live keys, signing key first: at most two, as the database holds."""
    configured = tenant_settings.CONTEXT_KEY_FALLBACKS
    if configured is None:
        fallbacks = [_derive(s) for s in getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    else:
        fallbacks = [key_from_setting(k) for k in configured]
    current = current_key()
    live = [current] + [k for k in fallbacks if k != current]
    return live[: len(sql.KEY_SLOTS)]


def fingerprint(key: bytes) -> str:
    """A public name for a key (a hash of a hash): enough to compare, nothing to sign with."""
    return hashlib.sha256(b"better_tenant.fingerprint|" + key).hexdigest()[:16]


def halves(key: bytes) -> tuple[int, int]:
    """The key as the two signed int8 values its sequences hold."""
    return (
        int.from_bytes(key[:8], "big", signed=True),
        int.from_bytes(key[8:KEY_BYTES], "big", signed=True),
    )


def mac(key: bytes, message: bytes) -> bytes:
    """The MAC the database computes (``sql._mac_sql``): SHA-512 of the key and the message,
    truncated to ``sql.MAC_BYTES``. The truncation is what keeps a keyed hash of this form from
    length extension; it is one digest where HMAC takes two."""
    return hashlib.sha512(key + message).digest()[: sql.MAC_BYTES]


def proof(target: str, key: bytes | None = None, issued: int | None = None) -> str:
    """What ``better_tenant_enter()`` accepts for ``target`` (a tenant id or a marker such as
    ``"system"``) for ``sql.PROOF_MAX_AGE`` seconds around ``issued`` (default: now)."""
    stamp = str(int(time.time()) if issued is None else issued)
    message = f"{sql.PROOF_LABEL}|{target}|{stamp}".encode()
    return f"{target}|{stamp}|{mac(key or current_key(), message).hex()}"


def install(connection: Any) -> list[str]:
    """Write the live keys into the key sequences as their owner (``connection``, a Django one);
    an unused slot is emptied. Returns the fingerprints, which also go into the sequences'
    comments. The values go as bound parameters, in no statement text.
    """
    live = live_keys()
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        for index, slot in enumerate(sql.KEY_SLOTS):
            names = sql.key_sequences(slot)
            key = live[index] if index < len(live) else None
            for name, value in zip(names, halves(key) if key else (None, None), strict=True):
                if value is None:
                    cursor.execute(f"ALTER SEQUENCE {sql.qn(name)} RESTART")
                else:
                    cursor.execute("SELECT setval(%s::regclass, %s, true)", [name, value])
            note = sql.literal(fingerprint(key)) if key else "NULL"
            cursor.execute(f"COMMENT ON SEQUENCE {sql.qn(names[0])} IS {note}")
    return [fingerprint(key) for key in live]
