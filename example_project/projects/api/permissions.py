"""Who may call what: members of the request's tenant, and its owners and admins."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from example_project.projects.auth import AccessToken


class IsMember(BasePermission):
    """Authenticated by ``JWTAuthentication``, which proved membership of the request's tenant."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, AccessToken)


class IsTenantAdmin(IsMember):
    """A member whose role in the request's tenant is owner or admin."""

    message = "Only the tenant's owners and admins may do this."
    code = "ADMIN_REQUIRED"

    def has_permission(self, request: Request, view: Any) -> bool:
        return super().has_permission(request, view) and request.auth.membership.is_admin
