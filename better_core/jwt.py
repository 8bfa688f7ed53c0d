"""Bearer tokens of a request and their JWT claims, verified with a key or only decoded."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

# Longer values cannot be a token worth reading; PyJWT is not asked to parse them.
MAX_TOKEN_LENGTH = 8192

DEFAULT_ALGORITHMS = ("HS256",)


def bearer_token(request: Any) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None.

    ``request`` is anything with a WSGI-style ``META`` (Django's and DRF's requests).
    """
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return token


def decode_claims(
    token: str,
    key: Any = None,
    *,
    algorithms: Iterable[str] | None = None,
    audience: Any = None,
    refuse_unexpected_audience: bool = True,
    on_error: Callable[[Exception], None] | None = None,
) -> dict[str, Any] | None:
    """The claims of ``token``, or None when it is not a usable JWT.

    With ``key`` the signature and the ``exp``/``nbf`` claims are verified (with ``algorithms``,
    HS256 when None), and ``aud`` must match ``audience`` when one is given. Without an
    audience, a token carrying ``aud`` is refused unless ``refuse_unexpected_audience`` is False.
    Without ``key`` the token is only decoded: use that only where another layer has verified it.
    A malformed, expired or badly signed token yields None after ``on_error(exc)`` is called.
    """
    import jwt

    try:
        if key is None:
            payload = jwt.decode(token, options={"verify_signature": False})
        else:
            payload = jwt.decode(
                token,
                key,
                algorithms=list(DEFAULT_ALGORITHMS if algorithms is None else algorithms),
                audience=audience,
                options={} if refuse_unexpected_audience else {"verify_aud": audience is not None},
            )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        if on_error is not None:
            on_error(exc)
        return None
    return payload if isinstance(payload, dict) else None


def bearer_claims(request: Any, key: Any = None, **options: Any) -> dict[str, Any] | None:
    """The claims of the request's bearer JWT (see ``decode_claims`` for ``key`` and options)."""
    token = bearer_token(request)
    if token is None:
        return None
    return decode_claims(token, key, **options)
