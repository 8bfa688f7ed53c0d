"""JSON errors of the webhooks API: ``{"error": "...", "code": "UPPER_SNAKE"}``, 4xx statuses."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

#: Error codes of the DRF exceptions, by class (the first match in this order wins).
_CODES: tuple[tuple[type[exceptions.APIException], str], ...] = (
    (exceptions.ValidationError, "VALIDATION_ERROR"),
    (exceptions.ParseError, "INVALID_JSON"),
    (exceptions.NotAuthenticated, "UNAUTHORIZED"),
    (exceptions.AuthenticationFailed, "UNAUTHORIZED"),
    (exceptions.PermissionDenied, "FORBIDDEN"),
    (exceptions.NotFound, "NOT_FOUND"),
    (exceptions.MethodNotAllowed, "METHOD_NOT_ALLOWED"),
    (exceptions.NotAcceptable, "NOT_ACCEPTABLE"),
    (exceptions.UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE"),
    (exceptions.Throttled, "RATE_LIMITED"),
)


class ApiError(exceptions.APIException):
    """An error with its own code; ``status_code`` defaults to 400."""

    def __init__(self, message: str, code: str, status_code: int = status.HTTP_400_BAD_REQUEST):
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        #: Extra structured information for the response (e.g. payload errors by path).
        self.details: dict[str, Any] | None = None


def not_found(what: str, value: Any) -> ApiError:
    return ApiError(
        f"No {what} has the id {value!r} (or it belongs to another tenant).",
        "NOT_FOUND",
        status.HTTP_404_NOT_FOUND,
    )


def _first_message(detail: Any, prefix: str = "") -> str:
    """The first message of a (nested) DRF error detail, prefixed with the field it concerns."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            label = "" if key == "non_field_errors" else f"{prefix}{key}"
            return _first_message(value, f"{label}." if label else prefix)
    if isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)) and value:
                return _first_message(value, f"{prefix}{index}.")
            if value:
                return _first_message(value, prefix)
        return "Invalid input."
    field = prefix.rstrip(".")
    return f"{field}: {detail}" if field else str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render API errors as ``{"error", "code"}`` (plus ``details`` for field errors)."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.messages)
    if not isinstance(exc, exceptions.APIException):
        return None
    if isinstance(exc, ApiError):
        code = exc.error_code
    else:
        code = next((name for cls, name in _CODES if isinstance(exc, cls)), "BAD_REQUEST")
    body: dict[str, Any] = {"error": _first_message(exc.detail), "code": code}
    if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
        body["details"] = exc.detail
    elif getattr(exc, "details", None):
        body["details"] = exc.details
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None) is not None:
        headers["Retry-After"] = str(int(exc.wait))
    return Response(body, status=exc.status_code, headers=headers)
