"""Connection tokens: generation, their ``sha256:<hex>`` hash and the JWT secret it yields."""

from __future__ import annotations

import hashlib
import re
import secrets

HASH_PREFIX = "sha256:"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# The seed's floor for a signing secret outside development.
MIN_SECRET_LENGTH = 32


def generate_token_pair() -> tuple[str, str]:
    """A new random connection token and its ``sha256:<64 hex>`` hash (the only part stored)."""
    token = secrets.token_hex(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    """The ``sha256:<hex>`` hash of a raw connection token."""
    return HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def secret_from_hash(value: str) -> str:
    """The JWT signing secret of a token hash: the value without its ``sha256:`` prefix."""
    value = (value or "").strip()
    return value[len(HASH_PREFIX) :] if value.lower().startswith(HASH_PREFIX) else value


def is_valid_token_hash(value: str) -> bool:
    """True for ``sha256:<64 hex>`` or a bare ``<64 hex>``, the formats ``init`` prints."""
    return bool(_HEX64.match(secret_from_hash(value).lower()))
