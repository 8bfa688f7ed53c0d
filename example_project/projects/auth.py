"""Access tokens of the API: JWTs that name the user and the tenant, and the DRF authentication.

A token carries ``sub`` (the user id), ``email``, ``tenant`` (the tenant id), ``role``, ``iat`` and
``exp``, signed with ``BETTER_TENANT["JWT_KEY"]``. The same token serves three readers:
TenantMiddleware resolves the request's tenant from its ``tenant`` claim, AuditContextMiddleware
records its ``sub`` as the actor, and ``JWTAuthentication`` below authenticates the user.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.request import Request

from better_core.jwt import bearer_token, decode_claims

TOKEN_LIFETIME = timedelta(hours=1)
ALGORITHM = "HS256"


@dataclass(frozen=True)
class AccessToken:
    """``request.auth`` of an authenticated API request: the verified claims and the membership."""

    claims: dict[str, Any]
    membership: Any

    @property
    def tenant_id(self) -> str:
        return self.claims["tenant"]


def signing_key() -> str:
    """The key that signs and verifies tokens (the tenant resolver verifies with the same one)."""
    from better_tenant.conf import tenant_settings

    key = tenant_settings.JWT_KEY
    if not key:
        raise ImproperlyConfigured(
            "BETTER_TENANT['JWT_KEY'] is not set: it signs the API's access tokens. Set JWT_KEY "
            "in the environment (the example settings default to SECRET_KEY)."
        )
    return key


def issue_token(user: Any, tenant: Any, role: str, lifetime: timedelta = TOKEN_LIFETIME) -> str:
    """A signed access token for ``user`` acting in ``tenant`` with ``role``."""
    now = int(time.time())
    claims = {
        "sub": str(user.pk),
        "email": user.email,
        "tenant": str(tenant.pk),
        "role": role,
        "iat": now,
        "exp": now + int(lifetime.total_seconds()),
    }
    return jwt.encode(claims, signing_key(), algorithm=ALGORITHM)


def read_token(token: str) -> dict[str, Any] | None:
    """The verified claims of ``token`` (signature and expiry), or None."""
    claims = decode_claims(token, signing_key(), algorithms=[ALGORITHM])
    if claims is None:
        return None
    if not isinstance(claims.get("sub"), str) or not claims["sub"].isdigit():
        return None
    if not isinstance(claims.get("tenant"), str):
        return None
    return claims


class JWTAuthentication(BaseAuthentication):
    """Authenticate a request by its bearer token, inside the tenant the request resolved to.

    Refused: a malformed, badly signed or expired token (401 ``TOKEN_INVALID``), a token issued
    for another tenant than the one the request names (403 ``TENANT_MISMATCH``), an inactive or
    deleted user (401 ``USER_INACTIVE``), and a user who is not a member of the tenant (403
    ``NOT_A_MEMBER``), e.g. because the membership was removed after the token was issued.
    """

    def authenticate(self, request: Request) -> tuple[Any, AccessToken] | None:
        token = bearer_token(request)
        if token is None:
            return None
        claims = read_token(token)
        if claims is None:
            raise AuthenticationFailed(
                "The access token is invalid or expired; get a new one from POST /api/auth/token.",
                code="TOKEN_INVALID",
            )
        # TenantMiddleware has resolved the tenant (header, path, subdomain or this token) and
        # runs the view in its scope.
        tenant_id = getattr(request._request, "tenant_id", None)
        if tenant_id is None:
            raise PermissionDenied(
                "This endpoint needs a tenant; the request named none.", code="TENANT_REQUIRED"
            )
        if claims["tenant"] != str(tenant_id):
            raise PermissionDenied(
                "The access token was issued for another tenant than the one this request names.",
                code="TENANT_MISMATCH",
            )
        from example_project.projects.models import Membership

        # One query for the user and the membership; row-level security confines the membership
        # to the request's tenant.
        user_id = int(claims["sub"])
        membership = (
            Membership.objects.select_related("user")
            .filter(user_id=user_id, user__is_active=True)
            .first()
        )
        if membership is not None:
            return membership.user, AccessToken(claims, membership)
        if not get_user_model().objects.filter(pk=user_id, is_active=True).exists():
            raise AuthenticationFailed(
                "The token's user no longer exists or is inactive.", code="USER_INACTIVE"
            )
        raise PermissionDenied(
            "The token's user is not a member of this tenant.", code="NOT_A_MEMBER"
        )

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
