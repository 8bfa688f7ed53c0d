"""The magic link handshake: init (email a code), verify (the code), poll, claim (the token).

The code is six characters from an alphabet without look-alikes (no 0/O, 1/I/L), stored only as
its sha256 and compared in constant time. A link is good for ten minutes; after MAX_ATTEMPTS
wrong codes it is locked. One address holds at most MAX_LINKS_PER_EMAIL live links, so that its
codes cannot be guessed link after link from many clients. The claim sets the link's
``token_hash`` with ``UPDATE ... WHERE token_hash IS NULL``, so that only one session row is ever
created; a repeated claim re-signs the stored session's claims, which yields the same token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from better_console.conf import (
    MAGIC_LINK_LIFETIME,
    ConsoleConfig,
    MagicLinkConfig,
    delivery_available,
    email_allowed,
)
from better_console.exceptions import ConsoleError
from better_console.sessions import (
    IssuedToken,
    create_stored_session,
    sign,
    stored_claims,
    token_digest,
)

logger = logging.getLogger("better_console")

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6
SESSION_ID_PREFIX = "sess_"
# Links one address may hold within MAGIC_LINK_LIFETIME: with MAX_ATTEMPTS each, this bounds the
# guesses at its codes however many clients ask (and the mails sent to it).
MAX_LINKS_PER_EMAIL = 10

PENDING, VERIFIED, CLAIMED, EXPIRED, LOCKED = "pending", "verified", "claimed", "expired", "locked"


# --- errors of the handshake (names as the console UI knows them) ---------------------------------


def _named(name: str, status: int, code: str, message: str, **extra: Any) -> ConsoleError:
    return ConsoleError(name, status=status, code=code, message=message, **extra)


def email_not_allowed(email: str) -> ConsoleError:
    return _named(
        "ConsoleEmailNotAllowedError",
        403,
        "EMAIL_NOT_ALLOWED",
        f'Email "{email}" is not in the allowed list.',
    )


def link_not_found() -> ConsoleError:
    return _named(
        "ConsoleMagicLinkNotFoundError",
        404,
        "SESSION_NOT_FOUND",
        "No sign-in is pending under this sessionId. Start again with session/init.",
    )


def link_expired() -> ConsoleError:
    return _named(
        "ConsoleMagicLinkExpiredError",
        410,
        "MAGIC_LINK_EXPIRED",
        "The code has expired (codes are valid for 10 minutes). Start again with session/init.",
    )


def link_locked() -> ConsoleError:
    return _named(
        "ConsoleMagicLinkLockedError",
        429,
        "MAGIC_LINK_LOCKED",
        "Too many wrong codes: this sign-in is locked. Start again with session/init.",
    )


def invalid_code(remaining: int) -> ConsoleError:
    return _named(
        "ConsoleMagicLinkInvalidCodeError",
        401,
        "INVALID_CODE",
        "The code is not correct.",
        remainingAttempts=remaining,
    )


def not_verified() -> ConsoleError:
    return _named(
        "ConsoleMagicLinkNotVerifiedError",
        403,
        "NOT_VERIFIED",
        "The code has not been verified yet: call session/verify first.",
    )


def delivery_unavailable() -> ConsoleError:
    return ConsoleError(
        "Magic link codes cannot be delivered: install better_mail or set "
        "BETTER_CONSOLE['MAGIC_LINK']['SEND_CODE'].",
        status=503,
        code="EMAIL_DELIVERY_UNAVAILABLE",
    )


def delivery_failed() -> ConsoleError:
    return ConsoleError(
        "The sign-in code could not be sent. Try again later.",
        status=502,
        code="EMAIL_DELIVERY_FAILED",
    )


# --- codes ----------------------------------------------------------------------------------------


def generate_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def hash_code(code: str) -> str:
    """sha256 hex of a code as typed: case and surrounding spaces do not matter."""
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


def new_session_id() -> str:
    return SESSION_ID_PREFIX + secrets.token_urlsafe(24)


def status_of(link: Any, max_attempts: int) -> str:
    """pending, verified, claimed, expired or locked."""
    if link.token_hash is not None:
        return CLAIMED
    if link.failed_attempts >= max_attempts:
        return LOCKED
    if link.is_expired:
        return EXPIRED
    return VERIFIED if link.verified_at is not None else PENDING


# --- the four steps ---------------------------------------------------------------------------


def start(
    config: ConsoleConfig,
    email: str,
    *,
    app_name: str | None = None,
    base_url: str | None = None,
    request: Any = None,
) -> str:
    """Store a magic link for ``email`` and send its code; returns the ``sessionId``."""
    from better_console.models import MagicLink

    link_config = _link_config(config)
    email = email.strip()
    if not email_allowed(email, link_config.allowed_emails):
        raise email_not_allowed(email)
    if not delivery_available(config):
        raise delivery_unavailable()
    now = timezone.now()
    _refuse_flooding(email, now)
    code = generate_code()
    link = MagicLink(
        session_id=new_session_id(),
        email=email,
        code_hash=hash_code(code),
        expires_at=now + timedelta(seconds=MAGIC_LINK_LIFETIME),
        created_at=now,
    )
    # One transaction: a code that cannot be handed over leaves no link behind.
    with transaction.atomic():
        link.save(force_insert=True)
        _deliver(
            config,
            link,
            code,
            app_name=app_name,
            console_url=_console_url(config, base_url),
            request=request,
        )
    return link.session_id


def _refuse_flooding(email: str, now: datetime) -> None:
    """429 once ``email`` holds MAX_LINKS_PER_EMAIL links that have not expired.

    The per-IP throttle cannot bound the guesses at one address's codes when they come from
    many addresses; this does, whatever the number of clients.
    """
    from better_console.models import MagicLink

    live = MagicLink.objects.filter(expires_at__gt=now, email__iexact=email)
    expiries = list(
        live.order_by("expires_at").values_list("expires_at", flat=True)[:MAX_LINKS_PER_EMAIL]
    )
    if len(expiries) < MAX_LINKS_PER_EMAIL:
        return
    retry_after = max(1, math.ceil((expiries[0] - now).total_seconds()))
    raise ConsoleError(
        f"Too many sign-ins were started for this address. Try again in {retry_after} seconds.",
        status=429,
        code="RATE_LIMITED",
        retryAfter=retry_after,
    )


def verify(config: ConsoleConfig, session_id: str, code: str) -> str:
    """Check ``code``; returns ``verified`` or raises (wrong code, locked, expired, unknown)."""
    from better_console.models import MagicLink

    link_config = _link_config(config)
    with transaction.atomic():
        # The row lock serialises attempts, so that parallel guesses cannot exceed the limit.
        link = MagicLink.objects.select_for_update().filter(session_id=session_id).first()
        if link is None:
            raise link_not_found()
        status = status_of(link, link_config.max_attempts)
        if status == LOCKED:
            raise link_locked()
        if status == CLAIMED:
            return VERIFIED
        if status == EXPIRED:
            raise link_expired()
        if hmac.compare_digest(hash_code(code), link.code_hash):
            if link.verified_at is None:
                link.verified_at = timezone.now()
                link.save(update_fields=["verified_at"])
            return VERIFIED
        link.failed_attempts += 1
        link.save(update_fields=["failed_attempts"])
        remaining = max(link_config.max_attempts - link.failed_attempts, 0)
    # Outside the atomic block: the failed attempt must be committed, not rolled back.
    raise invalid_code(remaining)


def poll(config: ConsoleConfig, session_id: str) -> str:
    """The status of a magic link, for the console UI waiting on the user."""
    from better_console.models import MagicLink

    link_config = _link_config(config)
    link = MagicLink.objects.filter(session_id=session_id).first()
    if link is None:
        raise link_not_found()
    return status_of(link, link_config.max_attempts)


def claim(config: ConsoleConfig, session_id: str) -> IssuedToken:
    """Exchange a verified magic link for a session token; repeating it returns the same token."""
    from better_console.models import ConsoleSession, MagicLink

    link_config = _link_config(config)
    link = MagicLink.objects.filter(session_id=session_id).first()
    if link is None:
        raise link_not_found()
    if link.is_expired:
        raise link_expired()
    if link.token_hash is None:
        if link.failed_attempts >= link_config.max_attempts:
            raise link_locked()
        if link.verified_at is None:
            raise not_verified()
        session, issued = create_stored_session(
            config, session_id=link.session_id, email=link.email, save=False
        )
        with transaction.atomic():
            won = MagicLink.objects.filter(
                pk=link.pk,
                token_hash__isnull=True,
                verified_at__isnull=False,
                expires_at__gt=timezone.now(),
            ).update(token_hash=session.token_hash, claimed_at=timezone.now())
            if won:
                session.save(force_insert=True)
                return issued
        # Another claim got there first; answer with its session.
        link.refresh_from_db()
        if link.token_hash is None:
            raise link_expired()
    stored = ConsoleSession.objects.filter(token_hash=link.token_hash).first()
    if stored is None or stored.is_expired:
        raise link_expired()
    token = sign(stored_claims(stored), config.secret)
    if hmac.compare_digest(token_digest(token), stored.token_hash):
        remaining = int((stored.expires_at - timezone.now()).total_seconds())
        return IssuedToken(token, max(remaining, 0))
    # The secret changed since the claim (token rotation): that session is void.
    raise ConsoleError(
        "This sign-in was claimed under another connection token. Start again with session/init.",
        status=409,
        code="SESSION_ALREADY_CLAIMED",
    )


# --- delivery -------------------------------------------------------------------------------------


def _link_config(config: ConsoleConfig) -> MagicLinkConfig:
    if config.magic_link is None:
        raise ConsoleError("Magic link sign-in is not configured.", status=404, code="NOT_FOUND")
    return config.magic_link


def _console_url(config: ConsoleConfig, base_url: str | None) -> str | None:
    """``baseUrl`` of the init request when it is on an allowed origin, else None.

    The link goes into an email sent from this server, so it may only point at a console UI
    the server trusts.
    """
    if not isinstance(base_url, str) or not base_url:
        return None
    if any(ch.isspace() or not ch.isprintable() or ch == "\\" for ch in base_url):
        # urlsplit drops tabs and newlines before parsing, but the link goes into the mail as
        # given: it must be one plain URL, not text of the caller's choosing.
        return None
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    return base_url if origin in config.allowed_origins else None


def _deliver(
    config: ConsoleConfig,
    link: Any,
    code: str,
    *,
    app_name: str | None,
    console_url: str | None,
    request: Any,
) -> None:
    """SEND_CODE when set, else the ``console_magic_link`` mail of better_mail."""
    send_code = config.magic_link.send_code if config.magic_link else None
    try:
        if send_code is not None:
            send_code(
                link.email,
                link.session_id,
                code,
                app_name=app_name,
                console_url=console_url,
                expires_at=link.expires_at,
                request=request,
            )
            return
        import better_mail

        better_mail.send(
            "console_magic_link",
            to=link.email,
            code=code,
            expires_minutes=MAGIC_LINK_LIFETIME // 60,
            console_url=console_url,
            tags=["better_console"],
        )
    except Exception:
        logger.exception("better_console: the sign-in code for %s could not be sent", link.email)
        raise delivery_failed() from None
