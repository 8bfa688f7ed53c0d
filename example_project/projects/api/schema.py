"""How the API appears in the OpenAPI document (drf-spectacular)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, extend_schema

from example_project.projects.api.serializers import ErrorSerializer


class TenantJWTScheme(OpenApiAuthenticationExtension):
    """The bearer JWT of ``POST /api/auth/token``; its ``tenant`` claim names the tenant."""

    target_class = "example_project.projects.auth.JWTAuthentication"
    name = "tenantJWT"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


PAGE = [
    OpenApiParameter("limit", int, description="1 to 200 (default 50)"),
    OpenApiParameter("offset", int, description="rows to skip (default 0)"),
]


def documented(
    operation_id: str, response: Any, *, request: Any = None, status: int = 200, **extra: Any
) -> Any:
    """``extend_schema`` with the API's error shape on its 4xx answers."""
    errors = dict.fromkeys((400, 401, 403, 404, 409), ErrorSerializer)
    return extend_schema(
        operation_id=operation_id,
        request=request,
        responses={status: response, **errors},
        **extra,
    )
