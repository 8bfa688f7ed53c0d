"""JSON errors of the API: ``{"error": "...", "code": "UPPER_SNAKE"}`` with a 4xx status."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

from better_core import drf as errors
from example_project.projects.services import ServiceError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render service refusals and DRF errors in the API's error shape."""
    if isinstance(exc, ServiceError):
        return Response({"error": str(exc), "code": exc.code}, status=exc.status)
    if isinstance(exc, Http404):
        # RLS hides other tenants' rows, so "not found" may mean "not yours".
        exc = exceptions.NotFound("Not found (or it belongs to another tenant).")
    return errors.exception_handler(exc, context)
