"""JSON errors of the webhooks API: ``{"error": "...", "code": "UPPER_SNAKE"}``, 4xx statuses."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status

# The API answers every error in the suite's shape; ApiError's code is its ``error_code``.
from better_core.drf import exception_handler  # noqa: F401


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
