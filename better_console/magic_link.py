"""The magic link handshake: init (email a code), verify (the code), poll, claim (the token).

The steps, statuses and error texts are those of the published console servers. The session id
is a UUID; the code is six characters of ``CODE_ALPHABET`` (no 0/O, 1/I), stored only as its
sha256 and compared in constant time. A link is good for ten minutes (its claim for one more);
after MAX_ATTEMPTS wrong codes it is locked. Verifying uses a link up: a second verify is refused.
The claim is single-use: it sets the link's ``token_hash`` with ``UPDATE ... WHERE token_hash IS
NULL``, so only the first claim gets a token and creates a session row; any later one is answered
``already_claimed`` and nothing else, so a session id read from a log or a URL opens nothing.

Beyond the published servers: one address holds at most MAX_LINKS_PER_EMAIL live links awaiting
their code, so that its codes cannot be guessed link after link from many clients, and a wrong code
answers the ``remainingAttempts``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.db import transaction
from django.utils import timezone

from better_console.conf import ConsoleConfig, MagicLinkConfig
from better_console.cors import origin_allowed
from better_console.email_policy import delivery_available, email_allowed
from better_console.exceptions import ConsoleError
from better_console.sessions import IssuedToken, create_stored_session

logger = logging.getLogger("better_console")

# A magic link (its code, its verification and its claim) is good for this long.
MAGIC_LINK_LIFETIME = 600
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6
CODE_FORMAT = re.compile(r"\A[A-HJ-NP-Z2-9]{6}\Z")
UUID_FORMAT = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z", re.I)
# A verified link may still be claimed this long after it expires (the UI polls, then claims).
CLAIM_GRACE = timedelta(seconds=60)
# Links one address may hold within MAGIC_LINK_LIFETIME: with MAX_ATTEMPTS each, this bounds the
# guesses at its codes however many clients ask (and the mails sent to it).
MAX_LINKS_PER_EMAIL = 10

PENDING, VERIFIED, EXPIRED = "pending", "verified", "expired"
CLAIMED, ALREADY_CLAIMED = "claimed", "already_claimed"


# --- errors of the handshake (the published servers' texts) ---------------------------------------


def email_not_allowed(email: str) -> ConsoleError:
    return ConsoleError(
        f'Email "{email}" may not open a console session: add it (or a pattern matching it) to '
        "BETTER_CONSOLE['MAGIC_LINK']['ALLOWED_EMAILS'] or BETTER_CONSOLE_ALLOWED_EMAILS.",
        status=400,
        code="EMAIL_NOT_ALLOWED",
    )


def link_not_found() -> ConsoleError:
    return ConsoleError("Magic link not found", status=404, code="MAGIC_LINK_NOT_FOUND")


def link_used() -> ConsoleError:
    return ConsoleError("Magic link already used", status=410, code="MAGIC_LINK_USED")


def link_expired() -> ConsoleError:
    return ConsoleError("Magic link expired", status=410, code="MAGIC_LINK_EXPIRED")


def link_locked() -> ConsoleError:
    return ConsoleError("Too many failed attempts", status=429, code="MAGIC_LINK_LOCKED")


def invalid_code(remaining: int) -> ConsoleError:
    return ConsoleError(
        "Invalid code", status=401, code="INVALID_CODE", remainingAttempts=remaining
    )


def not_verified() -> ConsoleError:
    return ConsoleError("Magic link not yet verified", status=409, code="NOT_VERIFIED")


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


# --- input ----------------------------------------------------------------------------------------


def _invalid(message: str) -> ConsoleError:
    return ConsoleError(message, status=400, code="INVALID_REQUEST")


def checked_session_id(value: Any) -> str:
    """``session_id`` as sent, lowercased, or the 400 of a missing or malformed one."""
    if value is None or value == "":
        raise _invalid("Missing session_id")
    if not isinstance(value, str) or not UUID_FORMAT.match(value):
        raise _invalid("Invalid session_id format")
    return value.lower()


def checked_pair(code: Any, session_id: Any) -> tuple[str, str]:
    """``(code, session_id)`` of a verify request, or the 400 the published servers answer."""
    if not code or not session_id:
        raise _invalid("Missing code or session_id")
    if not isinstance(code, str) or not CODE_FORMAT.match(code):
        raise _invalid("Invalid code format")
    if not isinstance(session_id, str) or not UUID_FORMAT.match(session_id):
        raise _invalid("Invalid session_id format")
    return code, session_id.lower()


# --- codes ----------------------------------------------------------------------------------------


def generate_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def hash_code(code: str) -> str:
    """sha256 hex of a code."""
    return hashlib.sha256(code.encode()).hexdigest()


def new_session_id() -> str:
    return str(uuid.uuid4())


def status_of(link: Any) -> str:
    """pending, verified or expired, as ``session/poll`` answers."""
    if link.verified_at is not None:
        return VERIFIED
    return EXPIRED if link.is_expired else PENDING


@dataclass(frozen=True)
class Claim:
    """The answer of ``session/claim``: ``claimed`` with a token, or ``already_claimed``."""

    token: IssuedToken | None

    def body(self) -> dict[str, Any]:
        if self.token is None:
            return {"status": ALREADY_CLAIMED}
        return {"status": CLAIMED, **self.token.body()}


# --- the four steps ---------------------------------------------------------------------------


def start(
    config: ConsoleConfig,
    email: str,
    *,
    app_name: str | None = None,
    base_url: str | None = None,
    request: Any = None,
) -> str:
    """Store a magic link for ``email`` and send its code; returns the session id."""
    from better_console.models import MagicLink

    link_config = _link_config(config)
    email = email.strip()
    # Matched as sent (a look-alike must not lowercase into an allowed address), stored lowercase.
    if not email_allowed(email, link_config.allowed_emails):
        raise email_not_allowed(email)
    email = email.lower()
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
            verify_url=_verify_url(request, link.session_id, code),
            request=request,
        )
    return link.session_id


def _refuse_flooding(email: str, now: datetime) -> None:
    """429 once ``email`` holds MAX_LINKS_PER_EMAIL links that await their code.

    The per-IP throttle cannot bound the guesses at one address's codes (nor the mails sent to
    it) when they come from many addresses; this does, whatever the number of clients. A link
    verified by its owner can no longer be guessed at, so it does not count.
    """
    from better_console.models import MagicLink

    live = MagicLink.objects.filter(
        expires_at__gt=now, email__iexact=email, verified_at__isnull=True
    )
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
    """Check ``code`` and use the link up; returns ``verified`` or raises the protocol's error."""
    from better_console.models import MagicLink

    link_config = _link_config(config)
    with transaction.atomic():
        # The row lock serialises attempts, so that parallel guesses cannot exceed the limit.
        link = MagicLink.objects.select_for_update().filter(session_id=session_id).first()
        if link is None:
            raise link_not_found()
        if link.verified_at is not None:
            raise link_used()
        if link.is_expired:
            raise link_expired()
        if link.failed_attempts >= link_config.max_attempts:
            raise link_locked()
        if hmac.compare_digest(hash_code(code), link.code_hash):
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

    _link_config(config)
    link = MagicLink.objects.filter(session_id=session_id).first()
    if link is None:
        raise link_not_found()
    return status_of(link)


def claim(config: ConsoleConfig, session_id: str) -> Claim:
    """Exchange a verified magic link for a session token, once."""
    from better_console.models import MagicLink

    _link_config(config)
    link = MagicLink.objects.filter(session_id=session_id).first()
    if link is None:
        raise link_not_found()
    if link.verified_at is None:
        raise not_verified()
    if link.expires_at + CLAIM_GRACE <= timezone.now():
        raise link_expired()
    if link.token_hash is not None:
        return Claim(None)
    session, issued = create_stored_session(
        config, session_id=link.session_id, email=link.email, save=False
    )
    with transaction.atomic():
        won = MagicLink.objects.filter(pk=link.pk, token_hash__isnull=True).update(
            token_hash=session.token_hash, claimed_at=timezone.now()
        )
        if not won:
            # Another claim got there first: it alone holds the token.
            return Claim(None)
        session.save(force_insert=True)
    return Claim(issued)


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
    return base_url if origin_allowed(origin, config.allowed_origins) else None


def _verify_url(request: Any, session_id: str, code: str) -> str | None:
    """This server's own page that verifies the link when it is opened from the mail.

    Built from the request's host (which Django checks against ALLOWED_HOSTS), never from the
    caller's ``baseUrl``: a mail sent from this server only ever links back to it.
    """
    if request is None or not hasattr(request, "build_absolute_uri"):
        return None
    from django.urls import reverse

    path = reverse("better_console", kwargs={"path": "console/session/verify"})
    query = urlencode({"session_id": session_id, "code": code})
    return request.build_absolute_uri(f"{path}?{query}")


def _deliver(
    config: ConsoleConfig,
    link: Any,
    code: str,
    *,
    app_name: str | None,
    console_url: str | None,
    verify_url: str | None,
    request: Any,
) -> None:
    """SEND_CODE when set, else the ``console_magic_link`` mail (``better_console.mail``)."""
    send_code = config.magic_link.send_code if config.magic_link else None
    try:
        if send_code is not None:
            send_code(
                link.email,
                link.session_id,
                code,
                app_name=app_name,
                console_url=console_url,
                verify_url=verify_url,
                expires_at=link.expires_at,
                request=request,
            )
            return
        import better_mail
        from better_console import mail  # noqa: F401 - registers it where AUTODISCOVER is off

        better_mail.send(
            "console_magic_link",
            to=link.email,
            code=code,
            expires_minutes=MAGIC_LINK_LIFETIME // 60,
            console_url=console_url,
            verify_url=verify_url,
            tags=["better_console"],
        )
    except Exception:
        logger.exception("better_console: the sign-in code for %s could not be sent", link.email)
        raise delivery_failed() from None
