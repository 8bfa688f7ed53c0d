"""Test helpers: session tokens for the product routes without the sign-in handshake.

``session_token(permissions, email=...)`` stores a console session (as a claimed magic link
would) and returns its bearer token, signed with the configured TOKEN_HASH; it needs database
access. ``auth_headers(token)`` turns it into keyword arguments of Django's test client. The
``console_auth`` pytest fixture does both::

    def test_list(client, console_auth):
        response = client.get("/.well-known/better/tenant/tenants", **console_auth("read"))

Import the fixture into a ``conftest.py`` to use it:
``from better_console.testing import console_auth  # noqa: F401``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from better_console.registry import PERMISSIONS

ALL_PERMISSIONS = PERMISSIONS


def session_token(
    permissions: str | Iterable[str] = ALL_PERMISSIONS,
    *,
    email: str = "console@example.com",
    lifetime: int | None = None,
    stateless: bool = False,
) -> str:
    """A valid session token with ``permissions`` (a level such as ``"write"``, or levels).

    Stored (a ``better_console_sessions`` row, valid whatever the sign-in methods) unless
    ``stateless`` is True: then it is an auto-approve token, accepted only while AUTO_APPROVE
    is on. ``lifetime`` is in seconds (default: TOKEN_LIFETIME).
    """
    import uuid

    from better_console import sessions
    from better_console.conf import load
    from better_console.magic_link import new_session_id

    levels = [permissions] if isinstance(permissions, str) else list(permissions)
    unknown = [p for p in levels if p not in PERMISSIONS]
    if unknown:
        raise ValueError(f"Unknown permission levels {unknown}; use {list(PERMISSIONS)}.")
    config = load()
    if stateless:
        import time

        now = int(time.time())
        claims = sessions.build_claims(
            session_id=str(uuid.uuid4()),
            email=email,
            permissions=levels,
            method=sessions.AUTO_APPROVE,
            issued_at=now,
            expires_at=now + (lifetime or config.token_lifetime),
            jti=uuid.uuid4().hex,
        )
        return sessions.sign(claims, config.secret)
    _, issued = sessions.create_stored_session(
        config, session_id=new_session_id(), email=email, permissions=levels, lifetime=lifetime
    )
    return issued.token


def auth_headers(token: str) -> dict[str, str]:
    """``Authorization: Bearer <token>`` as test client keyword arguments."""
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def console_auth(db: None) -> Callable[..., dict[str, str]]:
    """``console_auth(permissions="read", email=...)``: client kwargs of a stored session."""

    def make(
        permissions: str | Iterable[str] = ALL_PERMISSIONS, *, email: str = "console@example.com"
    ) -> dict[str, str]:
        return auth_headers(session_token(permissions, email=email))

    return make
