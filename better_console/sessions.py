"""Session tokens: HS256 JWTs signed with the TOKEN_HASH secret, issued and verified here.

Claims: those of the published console servers, ``sessionId``, ``email``, ``permissions`` (the
session's highest level, one string) and ``expiresAt`` (epoch seconds), so that anything that
decodes their tokens reads ours; then ours on top: ``method`` (``auto_approve`` or
``magic_link``), ``iat``, ``exp`` (equal to ``expiresAt``), ``aud`` (``better-console``) and
``jti``. The algorithm is pinned to HS256 (never taken from the token's header) and every claim is
required.

Auto-approve tokens are stateless and are accepted only while auto-approve is on and allowed in
the current environment. Magic-link tokens must also have a ``better_console_sessions`` row,
found by the sha256 of the token, that has not expired.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from better_console.conf import ConsoleConfig, load
from better_console.exceptions import ConsoleError
from better_console.refusals import auto_approve_refused
from better_console.registry import PERMISSIONS, SessionInfo

ALGORITHM = "HS256"
AUDIENCE = "better-console"
AUTO_APPROVE = "auto_approve"
MAGIC_LINK = "magic_link"
REQUIRED_CLAIMS = (
    "sessionId",
    "email",
    "permissions",
    "expiresAt",
    "method",
    "iat",
    "exp",
    "aud",
    "jti",
)
DEFAULT_EMAIL = "dev@localhost"


class InvalidSessionError(ConsoleError):
    """The bearer token is missing, malformed, forged, expired or revoked."""

    status = 401
    code = "INVALID_TOKEN"

    def __init__(self) -> None:
        super().__init__("Invalid or expired session")


@dataclass(frozen=True)
class IssuedToken:
    """A signed session token and its lifetime in seconds (``expiresIn``)."""

    token: str
    expires_in: int

    def body(self) -> dict[str, Any]:
        return {"sessionToken": self.token, "expiresIn": self.expires_in}


def token_digest(token: str) -> str:
    """sha256 hex of a session token: how a stored session knows its token."""
    return hashlib.sha256(token.encode()).hexdigest()


def build_claims(
    *,
    session_id: str,
    email: str,
    permissions: Iterable[str],
    method: str,
    issued_at: int,
    expires_at: int,
    jti: str,
) -> dict[str, Any]:
    """The claims of a session token, always in the same order (so re-signing is byte-equal)."""
    return {
        "sessionId": session_id,
        "email": email,
        "permissions": highest_level(permissions),
        "expiresAt": expires_at,
        "method": method,
        "iat": issued_at,
        "exp": expires_at,
        "aud": AUDIENCE,
        "jti": jti,
    }


def highest_level(levels: Iterable[str]) -> str:
    """The highest of ``levels`` (read < write < admin): what a token's ``permissions`` holds."""
    ranked = [PERMISSIONS.index(level) for level in levels if level in PERMISSIONS]
    return PERMISSIONS[max(ranked, default=0)]


def sign(claims: dict[str, Any], secret: str) -> str:
    """An HS256 JWT of ``claims``; deterministic for the same claims and secret."""
    import jwt

    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def issue_stateless(config: ConsoleConfig, email: str | None = None) -> IssuedToken:
    """An auto-approve session: a token with the ALLOWED_ACTIONS, nothing stored."""
    now = int(time.time())
    claims = build_claims(
        session_id=str(uuid.uuid4()),
        email=email or DEFAULT_EMAIL,
        permissions=config.allowed_actions,
        method=AUTO_APPROVE,
        issued_at=now,
        expires_at=now + config.token_lifetime,
        jti=uuid.uuid4().hex,
    )
    return IssuedToken(sign(claims, config.secret), config.token_lifetime)


def stored_claims(session: Any) -> dict[str, Any]:
    """The claims of a ``ConsoleSession`` row's token (see ``ConsoleSession``)."""
    return build_claims(
        session_id=session.session_id,
        email=session.email,
        permissions=session.permissions,
        method=MAGIC_LINK,
        issued_at=int(session.created_at.timestamp()),
        expires_at=int(session.expires_at.timestamp()),
        jti=session.id.hex,
    )


def create_stored_session(
    config: ConsoleConfig,
    *,
    session_id: str,
    email: str,
    permissions: Iterable[str] | None = None,
    lifetime: int | None = None,
    save: bool = True,
) -> tuple[Any, IssuedToken]:
    """A ``ConsoleSession`` row and its token (the row is saved unless ``save`` is False)."""
    from better_console.models import ConsoleSession

    now = int(time.time())
    lifetime = config.token_lifetime if lifetime is None else lifetime
    session = ConsoleSession(
        id=uuid.uuid4(),
        session_id=session_id,
        email=email,
        permissions=list(config.allowed_actions if permissions is None else permissions),
        created_at=datetime.fromtimestamp(now, tz=UTC),
        expires_at=datetime.fromtimestamp(now + lifetime, tz=UTC),
    )
    token = sign(stored_claims(session), config.secret)
    session.token_hash = token_digest(token)
    if save:
        session.save(force_insert=True)
    return session, IssuedToken(token, lifetime)


def effective_permissions(claimed: str | Iterable[str], allowed: Iterable[str]) -> tuple[str, ...]:
    """The allowed levels at or below the claimed one (ALLOWED_ACTIONS caps older tokens)."""
    if isinstance(claimed, str):
        claimed = [claimed]
    ranks = [PERMISSIONS.index(p) for p in claimed if p in PERMISSIONS]
    top = max(ranks, default=-1)
    return tuple(p for p in PERMISSIONS if p in allowed and PERMISSIONS.index(p) <= top)


def decode(token: str, secret: str) -> dict[str, Any]:
    """The verified claims of ``token``, or InvalidSessionError."""
    import jwt

    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": list(REQUIRED_CLAIMS), "verify_signature": True},
        )
    except (jwt.PyJWTError, ValueError, TypeError):
        raise InvalidSessionError() from None
    if not (
        isinstance(claims.get("sessionId"), str)
        and isinstance(claims.get("email"), str)
        and claims.get("permissions") in PERMISSIONS
        and claims.get("expiresAt") == claims.get("exp")
        and claims.get("method") in (AUTO_APPROVE, MAGIC_LINK)
    ):
        raise InvalidSessionError()
    return claims


def verify(token: str, config: ConsoleConfig | None = None) -> SessionInfo:
    """The session of a bearer token, or InvalidSessionError."""
    from django.utils import timezone

    from better_console.models import ConsoleSession

    config = config or load()
    if not config.secret:
        raise InvalidSessionError()
    claims = decode(token, config.secret)
    if claims["method"] == AUTO_APPROVE:
        # A stateless token is only as good as the switch that issued it.
        if not config.auto_approve or auto_approve_refused(config) is not None:
            raise InvalidSessionError()
    else:
        stored = ConsoleSession.objects.filter(
            token_hash=token_digest(token), expires_at__gt=timezone.now()
        ).first()
        if stored is None or stored.session_id != claims["sessionId"]:
            raise InvalidSessionError()
    return SessionInfo(
        session_id=claims["sessionId"],
        email=claims["email"],
        permissions=effective_permissions(claims["permissions"], config.allowed_actions),
        expires_at=int(claims["exp"]),
    )


def purge_expired() -> tuple[int, int]:
    """Delete expired sessions and magic links; returns (sessions, magic links) deleted."""
    from django.utils import timezone

    from better_console.models import ConsoleSession, MagicLink

    now = timezone.now()
    sessions, _ = ConsoleSession.objects.filter(expires_at__lte=now).delete()
    links, _ = MagicLink.objects.filter(expires_at__lte=now).delete()
    return sessions, links
