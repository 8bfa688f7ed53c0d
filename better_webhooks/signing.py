"""Payload signing as in the Standard Webhooks specification (HMAC-SHA256, ``v1,<base64>``).

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``, the key is the base64-decoded
part of the secret after ``whsec_``. During a secret rotation each valid secret signs, and the
signatures are sent space-separated, so receivers holding either secret accept the message. The
same values go out under the ``webhook-*`` names and the ``X-Webhook-*`` names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

from better_webhooks.crypto import secret_bytes

SIGNATURE_VERSION = "v1"


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def digest(secret: str, message_id: str, timestamp: int, body: str | bytes) -> bytes:
    """The raw HMAC-SHA256 of ``{message_id}.{timestamp}.{body}`` under one secret."""
    content = b"%s.%d.%s" % (_as_bytes(message_id), int(timestamp), _as_bytes(body))
    return hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()


def sign(secret: str, message_id: str, timestamp: int, body: str | bytes) -> str:
    """The ``v1,<base64>`` signature of one message under one secret."""
    raw = digest(secret, message_id, timestamp, body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(raw).decode()}"


def signature_header(
    secrets: Iterable[str], message_id: str, timestamp: int, body: str | bytes
) -> str:
    """The signature header value: one signature per valid secret, space-separated."""
    return " ".join(sign(secret, message_id, timestamp, body) for secret in secrets)


def signed_headers(
    secrets: Iterable[str], message_id: str, timestamp: int, body: str | bytes
) -> dict[str, str]:
    """Both header sets of one attempt (the timestamp is the attempt's own)."""
    signature = signature_header(secrets, message_id, timestamp, body)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": signature,
        "X-Webhook-ID": message_id,
        "X-Webhook-Timestamp": str(int(timestamp)),
        "X-Webhook-Signature": signature,
    }
