"""DRF errors as the suite's JSON shape ``{"error": "...", "code": "UPPER_SNAKE"}``."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

_UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9_]*$")

#: Error codes of the DRF exceptions, by class (the first match in this order wins).
CODES: tuple[tuple[type[exceptions.APIException], str], ...] = (
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


#: Django's refusals of an over-size request: the setting that sets the limit, the status and
#: code of the answer, and what the limit counts.
UPLOAD_LIMITS: tuple[tuple[type[SuspiciousOperation], str, int, str, str], ...] = (
    (RequestDataTooBig, "DATA_UPLOAD_MAX_MEMORY_SIZE", 413, "PAYLOAD_TOO_LARGE", "bytes"),
    (TooManyFieldsSent, "DATA_UPLOAD_MAX_NUMBER_FIELDS", 400, "TOO_MANY_FIELDS", "fields"),
    (TooManyFilesSent, "DATA_UPLOAD_MAX_NUMBER_FILES", 400, "TOO_MANY_FILES", "files"),
)


def upload_limit_error(exc: Exception) -> exceptions.APIException | None:
    """Django's refusal of an over-size request as an API error, None for other exceptions.

    Django raises these while a view reads the body; left alone they become its HTML 400 page.
    """
    for cls, setting, status, code, unit in UPLOAD_LIMITS:
        if isinstance(exc, cls):
            error = exceptions.APIException(
                f"The request holds more than the {getattr(settings, setting)} {unit} this "
                f"server accepts ({setting}). Send a smaller request.",
                code,
            )
            error.status_code = status
            return error
    return None


def first_message(detail: Any, prefix: str = "") -> str:
    """The first message of a (nested) DRF error detail, prefixed with the field it concerns."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            label = "" if key == "non_field_errors" else f"{prefix}{key}"
            return first_message(value, f"{label}." if label else prefix)
    if isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)) and value:
                return first_message(value, f"{prefix}{index}.")
            if value:
                return first_message(value, prefix)
        return "Invalid input."
    field = prefix.rstrip(".")
    return f"{field}: {detail}" if field else str(detail)


def error_code(exc: exceptions.APIException) -> str:
    """``exc.error_code``, else an UPPER_SNAKE code given to the detail, else the class's code."""
    code = getattr(exc, "error_code", None) or getattr(exc.detail, "code", None)
    if isinstance(code, str) and _UPPER_SNAKE.match(code):
        return code
    return next((name for cls, name in CODES if isinstance(exc, cls)), "BAD_REQUEST")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render errors as ``{"error", "code"}``, plus ``details`` for field errors.

    Django's Http404, PermissionDenied and ValidationError are answered like DRF's own, a body
    over Django's upload limits as a 413 (or a 400 for too many fields or files); anything else
    that is not an APIException is left to Django (a 500).
    """
    exc = upload_limit_error(exc) or exc
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.messages)
    if not isinstance(exc, exceptions.APIException):
        return None
    body: dict[str, Any] = {"error": first_message(exc.detail), "code": error_code(exc)}
    # Optional attributes: ``details`` of an app's own exceptions, ``auth_header`` set by
    # APIView.handle_exception, ``wait`` of Throttled.
    details = getattr(exc, "details", None)
    auth_header = getattr(exc, "auth_header", None)
    wait = getattr(exc, "wait", None)
    if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
        body["details"] = exc.detail
    elif details:
        body["details"] = details
    headers: dict[str, str] = {}
    if auth_header:
        headers["WWW-Authenticate"] = auth_header
    if wait is not None:
        headers["Retry-After"] = str(int(wait))
    return Response(body, status=exc.status_code, headers=headers)
