"""Signing secrets: generation, AES-GCM encryption at rest under versioned keys, rotation."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets as _secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from better_webhooks.conf import webhook_settings
from better_webhooks.exceptions import ConfigurationError, EncryptionError

SECRET_PREFIX = "whsec_"
_KEY_PATTERN = re.compile(r"^(v\d+):([0-9a-fA-F]+)$")
_NONCE_BYTES = 12
#: Key id of the key derived from SECRET_KEY when DEBUG is on and no key is configured.
DEV_KEY_ID = "dev"


def generate_secret() -> str:
    """A new signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode()


def generate_key(version: int = 1) -> str:
    """A new encryption key in the ``v<N>:<64 hex digits>`` form of ENCRYPTION_KEYS."""
    return f"v{version}:{_secrets.token_hex(32)}"


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a secret (``whsec_`` + base64, or bare base64)."""
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EncryptionError(
            "A webhook secret must be 'whsec_' followed by base64; got a value that is not."
        ) from exc


def parse_key(value: str) -> tuple[str, bytes]:
    """``(key_id, key bytes)`` of one ``v<N>:<hex>`` key, or ConfigurationError saying why not."""
    match = _KEY_PATTERN.match(str(value).strip())
    if not match:
        raise ConfigurationError(
            "Each BETTER_WEBHOOKS['ENCRYPTION_KEYS'] entry must look like 'v1:<64 hex digits>'. "
            "Generate one with `manage.py better_webhooks generate-key`."
        )
    key_id, hex_key = match.groups()
    if len(hex_key) != 64:
        raise ConfigurationError(
            f"Encryption key {key_id} has {len(hex_key) // 2} bytes; it must have 32 "
            "(64 hex digits). Generate one with `manage.py better_webhooks generate-key`."
        )
    key = bytes.fromhex(hex_key)
    if len(set(key)) < 8:
        raise ConfigurationError(
            f"Encryption key {key_id} is weak (too few distinct bytes). Generate a random one "
            "with `manage.py better_webhooks generate-key`."
        )
    return key_id, key


def configured_keys() -> list[tuple[str, bytes]]:
    """The encryption keys, newest first (ConfigurationError when none can be used)."""
    values = webhook_settings.raw("ENCRYPTION_KEYS") or []
    if isinstance(values, str):
        values = [values]
    keys = [parse_key(value) for value in values]
    ids = [key_id for key_id, _ in keys]
    if len(set(ids)) != len(ids):
        raise ConfigurationError(
            "BETTER_WEBHOOKS['ENCRYPTION_KEYS'] names a key version twice; give each key its own "
            "version (v1, v2, ...)."
        )
    if not keys:
        if settings.DEBUG:
            # Development only: a stable key derived from SECRET_KEY (a system check warns).
            derived = hashlib.sha256(b"better_webhooks:" + settings.SECRET_KEY.encode()).digest()
            return [(DEV_KEY_ID, derived)]
        raise ConfigurationError(
            "BETTER_WEBHOOKS['ENCRYPTION_KEYS'] is empty: endpoint secrets cannot be encrypted. "
            "Add a key from `manage.py better_webhooks generate-key`."
        )
    return keys


def _aesgcm(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def encrypt(plaintext: str, context: str) -> dict[str, str]:
    """Encrypt under the newest key; ``context`` (the endpoint id) is bound as associated data."""
    key_id, key = configured_keys()[0]
    nonce = _secrets.token_bytes(_NONCE_BYTES)
    sealed = _aesgcm(key).encrypt(nonce, plaintext.encode(), context.encode())
    return {"key_id": key_id, "ciphertext": base64.b64encode(nonce + sealed).decode()}


def decrypt(item: dict[str, Any], context: str) -> str:
    """Decrypt one stored secret; EncryptionError when its key is gone or the data is altered."""
    from cryptography.exceptions import InvalidTag

    keys = dict(configured_keys())
    key = keys.get(item.get("key_id", ""))
    if key is None:
        raise EncryptionError(
            f"Secret encrypted with key {item.get('key_id')!r}, which is not in "
            "BETTER_WEBHOOKS['ENCRYPTION_KEYS']. Put the old key back (after the new one), then "
            "run `manage.py better_webhooks rotate-encryption`."
        )
    blob = base64.b64decode(item["ciphertext"])
    try:
        plain = _aesgcm(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], context.encode())
    except InvalidTag as exc:
        raise EncryptionError(
            f"A secret of endpoint {context} does not decrypt with key {item.get('key_id')!r}: "
            "the stored value was altered or belongs to another endpoint."
        ) from exc
    return plain.decode()


def secret_entry(endpoint_id: Any, secret: str, now: datetime | None = None) -> dict[str, Any]:
    """A stored-secret item for ``endpoint.secrets`` (current: no expiry)."""
    return {
        "id": _secrets.token_hex(8),
        **encrypt(secret, str(endpoint_id)),
        "created_at": (now or timezone.now()).isoformat(),
        "expires_at": None,
    }


def _expired(item: dict[str, Any], now: datetime) -> bool:
    expires = item.get("expires_at")
    if not expires:
        return False
    return datetime.fromisoformat(expires) <= now


def endpoint_secrets(endpoint: Any, now: datetime | None = None) -> list[str]:
    """The valid secrets of an endpoint in plain text, newest first (all are signed with)."""
    now = now or timezone.now()
    return [
        decrypt(item, str(endpoint.id))
        for item in endpoint.secrets or []
        if not _expired(item, now)
    ]


def rotated_secrets(
    endpoint: Any, new_secret: str, overlap: timedelta, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The ``secrets`` list after rotating to ``new_secret``: the old ones expire after overlap."""
    now = now or timezone.now()
    kept = []
    for item in endpoint.secrets or []:
        if _expired(item, now):
            continue
        current_expiry = item.get("expires_at")
        expiry = now + overlap
        if current_expiry:
            expiry = min(expiry, datetime.fromisoformat(current_expiry))
        kept.append({**item, "expires_at": expiry.isoformat()})
    if overlap.total_seconds() <= 0:
        kept = []
    return [secret_entry(endpoint.id, new_secret, now), *kept]


def reencrypted(endpoint: Any) -> list[dict[str, Any]] | None:
    """The ``secrets`` list re-encrypted under the newest key, or None when already so."""
    newest = configured_keys()[0][0]
    if all(item.get("key_id") == newest for item in endpoint.secrets or []):
        return None
    result = []
    for item in endpoint.secrets or []:
        if item.get("key_id") == newest:
            result.append(item)
            continue
        plain = decrypt(item, str(endpoint.id))
        result.append({**item, **encrypt(plain, str(endpoint.id))})
    return result
