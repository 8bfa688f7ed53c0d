"""JSON errors of the API: ``{"error": "...", "code": "UPPER_SNAKE"}`` with a 4xx status."""

from __future__ import annotations

import re
from typing import Any

from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

from example_project.projects.services import ServiceError

_UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_CODES: tuple[tuple[type[exceptions.APIException], str], ...] = (
    (exceptions.ValidationError, "VALIDATION_ERROR"),
    (exceptions.ParseError, "INVALID_JSON"),
    (exceptions.NotAuthenticated, "UNAUTHORIZED"),
    (exceptions.AuthenticationFailed, "UNAUTHORIZED"),
    (exceptions.PermissionDenied, "FORBIDDEN"),
    (exceptions.NotFound, "NOT_FOUND"),
    (exceptions.MethodNotAllowed, "METHOD_NOT_ALLOWED"),
    (exceptions.UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE"),
)


def _message(detail: Any) -> str:
    """The first message of a DRF error detail, led by the field it concerns."""
    if isinstance(detail, dict):
        for field, value in detail.items():
            inner = _message(value)
            return inner if field == "non_field_errors" else f"{field}: {inner}"
    if isinstance(detail, list):
        return _message(detail[0]) if detail else "Invalid input."
    return str(detail)


def _code(exc: exceptions.APIException) -> str:
    code = getattr(exc.detail, "code", None)
    if isinstance(code, str) and _UPPER_SNAKE.match(code):
        return code
    return next((name for cls, name in _CODES if isinstance(exc, cls)), "BAD_REQUEST")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render service refusals and DRF errors in the API's error shape."""
    if isinstance(exc, ServiceError):
        return Response({"error": str(exc), "code": exc.code}, status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found (or it belongs to another tenant).")
    if not isinstance(exc, exceptions.APIException):
        return None
    body: dict[str, Any] = {"error": _message(exc.detail), "code": _code(exc)}
    if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
        body["details"] = exc.detail
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    return Response(body, status=exc.status_code, headers=headers)
