"""Errors of better_webhooks."""

from __future__ import annotations


class WebhookError(Exception):
    """Base of the errors of better_webhooks."""


class ConfigurationError(WebhookError):
    """``BETTER_WEBHOOKS`` has a value the app cannot use."""


class TenancyNotInstalledError(WebhookError, ValueError):
    """A ``tenant=`` given while better_tenant is not installed, so no tenant exists to name."""


class UnknownEventError(WebhookError):
    """An event name that is not in the catalog."""


class PayloadValidationError(WebhookError):
    """A payload that does not match its event's schema; ``errors`` maps paths to messages."""

    def __init__(self, event: str, errors: dict[str, str]) -> None:
        self.event = event
        self.errors = errors
        details = "; ".join(f"{path}: {message}" for path, message in errors.items())
        super().__init__(f"Invalid payload for event {event!r}: {details}")


class PayloadTooLargeError(WebhookError):
    """A payload whose JSON body exceeds ``MAX_PAYLOAD_BYTES``."""

    def __init__(self, event: str, size: int, limit: int) -> None:
        self.event = event
        self.size = size
        self.limit = limit
        super().__init__(
            f"The payload of {event!r} is {size:,} bytes as JSON, over the limit of {limit:,} "
            "(BETTER_WEBHOOKS['MAX_PAYLOAD_BYTES']): send a reference to the data (an id or a "
            "URL the receiver fetches) instead of the data itself."
        )


class EncryptionError(WebhookError):
    """A secret cannot be encrypted or decrypted with the configured keys."""


class UnsafeURLError(WebhookError):
    """A URL the SSRF guard refuses (scheme, host or resolved address)."""


class WebhookSignatureError(WebhookError):
    """A received webhook whose headers or signature do not verify; ``code`` says why."""

    def __init__(self, message: str, code: str = "INVALID_SIGNATURE") -> None:
        self.code = code
        super().__init__(message)
