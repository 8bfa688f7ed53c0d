"""Delivery of queued mails: claim rows, send them over the backend, record each outcome."""

from __future__ import annotations

import dataclasses
import json
import logging
import smtplib
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from email.message import MIMEPart
from email.mime.base import MIMEBase
from typing import Any

from django.core import mail as django_mail
from django.core.mail import EmailMultiAlternatives, make_msgid
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.core.mail.utils import DNS_NAME
from django.utils import timezone
from django.utils.module_loading import import_string

from better_core import rates
from better_mail import attachments
from better_mail.conf import mail_settings
from better_mail.exceptions import (
    MailConfigurationError,
    PermanentSendError,
    TransientSendError,
)
from better_tenant.shortcuts import system_scope

# Delivery claims rows with one ``WITH c AS MATERIALIZED (SELECT ... FOR UPDATE SKIP LOCKED)
# UPDATE`` (queued -> sending) in a short transaction, so two workers never send one mail twice,
# then sends them outside any lock through Django's default mailer or the mail's BACKENDS alias
# (one connection per backend per batch) and records the outcome, in the row and as a
# MailAttempt: ``sent`` with the provider's ids, ``queued`` again with a later ``send_at``
# after a transient error, or ``failed``. This work runs after the caller's transaction, in system
# mode when better_tenant is installed: the caller's scope has ended by then and a batch spans
# tenants.

logger = logging.getLogger("better_mail")

METADATA_KEY = "better_mail_id"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What deliver() did: the final status, and when to try again (seconds) if at all."""

    status: str
    retry_in: float | None = None
    error: str = ""
    log_id: Any = None


NOT_CLAIMED = Outcome("not_claimed")

# One statement claims a batch: due, queued rows that no other transaction has locked move to
# "sending". The UPDATE re-checks the status of each locked row, so a row claimed and committed
# by another worker in the meantime is not taken twice.
# Expired mails (``expires_at`` passed) are taken by the same statement and cancelled instead:
# they come back with status "cancelled" and are not sent. Claims go by priority (high first),
# then by due time.
# The candidates are a MATERIALIZED CTE: as an ``IN (SELECT ... LIMIT n)`` subquery the planner
# may run the locking subquery more than once, and each run, skipping rows already locked,
# returns new ones, so one statement could claim more than ``n`` rows.
_CLAIM_SQL = """
WITH candidates AS MATERIALIZED (
  SELECT id FROM {table}
  WHERE status = 'queued' AND (send_at IS NULL OR send_at <= %s){only}
  ORDER BY priority, send_at NULLS FIRST
  LIMIT %s
  FOR UPDATE SKIP LOCKED
)
UPDATE {table} AS m SET
  status = CASE WHEN m.expires_at <= %s THEN 'cancelled' ELSE 'sending' END,
  attempts = CASE WHEN m.expires_at <= %s THEN m.attempts ELSE m.attempts + 1 END,
  error = CASE WHEN m.expires_at <= %s
    THEN 'expired: not sent by ' || to_char(m.expires_at AT TIME ZONE 'UTC',
                                            'YYYY-MM-DD HH24:MI:SS') || ' UTC'
    ELSE m.error END,
  payload = CASE WHEN m.expires_at <= %s THEN NULL ELSE m.payload END,
  updated_at = %s
FROM candidates
WHERE m.id = candidates.id
RETURNING m.*
"""


def claim_batch(limit: int, ids: Sequence[Any] | None = None) -> list[Any]:
    """Lock up to ``limit`` queued, due mails (of ``ids`` if given) and mark them ``sending``.

    Those whose ``expires_at`` has passed are cancelled instead, and not returned.

    ``SKIP LOCKED``: mails another worker is claiming right now are skipped, not waited for;
    once that worker commits they are no longer ``queued`` and match nothing.
    """
    from django.db import connection

    from better_mail.models import MailLog, MailStatus

    if limit <= 0 or (ids is not None and not ids):
        return []
    now = timezone.now()
    params: list[Any] = [now]
    only = ""
    if ids is not None:
        only = " AND id = ANY(%s)"
        params.append([uuid.UUID(str(log_id)) for log_id in ids])
    params += [limit, now, now, now, now, now]
    query = _CLAIM_SQL.format(table=connection.ops.quote_name(MailLog._meta.db_table), only=only)
    with system_scope():
        logs = list(MailLog.objects.raw(query, params))
    expired = [log for log in logs if log.status == MailStatus.CANCELLED]
    for log in expired:
        logger.info("better_mail: mail %s %s; cancelled", log.pk, log.error)
    logs = [log for log in logs if log.status == MailStatus.SENDING]
    # RETURNING gives no order: send by priority, then by due time (when queued, if not
    # scheduled).
    logs.sort(key=lambda log: (log.priority, log.send_at or log.created_at))
    return logs


def claim(log_id: Any) -> Any:
    """Claim one mail (see ``claim_batch``); None when it is not (or no longer) queued and due."""
    try:
        logs = claim_batch(1, [log_id])
    except ValueError:
        return None  # not a UUID: no such mail
    return logs[0] if logs else None


def deliver(log_id: Any) -> Outcome:
    """Claim the mail ``log_id`` and send it; the outcome is recorded on the row."""
    slots = take_rate_slots(1)
    if not slots.granted:
        return Outcome("rate_limited", retry_in=slots.resets_in, log_id=log_id)
    log = claim(log_id)
    if log is None:
        slots.give_back(1)
        return NOT_CLAIMED
    return send_claimed(log)


def deliver_many(log_ids: Sequence[Any]) -> list[Outcome]:
    """Claim and send these mails in batches over one backend connection per batch.

    Mails the rate limit holds back get an outcome ``rate_limited`` with ``retry_in``; mails
    already taken elsewhere are skipped (no outcome).
    """
    outcomes: list[Outcome] = []
    pending = list(log_ids)
    size = max(int(mail_settings.BATCH_SIZE), 1)
    while pending:
        slots = take_rate_slots(min(size, len(pending)))
        if not slots.granted:
            outcomes.extend(
                Outcome("rate_limited", retry_in=slots.resets_in, log_id=i) for i in pending
            )
            break
        chunk, pending = pending[: slots.granted], pending[slots.granted :]
        try:
            logs = claim_batch(len(chunk), chunk)
        except ValueError:
            logs = [log for log in (claim(i) for i in chunk) if log is not None]
        # Mails already taken elsewhere use no slot.
        slots.give_back(slots.granted - len(logs))
        outcomes.extend(send_claimed_many(logs))
    return outcomes


def build_message(log: Any) -> EmailMultiAlternatives:
    """The EmailMultiAlternatives of a claimed mail (text body, HTML alternative)."""
    payload = log.payload or {}
    if not payload:
        raise PermanentSendError(
            f"Mail {log.pk} has no rendered message left to send (it was sent or cancelled)."
        )
    message = EmailMultiAlternatives(
        subject=log.subject,
        body=payload.get("text", ""),
        from_email=log.from_email or None,
        to=list(log.to),
        cc=list(log.cc),
        bcc=list(log.bcc),
        reply_to=list(log.reply_to),
        headers=dict(payload.get("headers") or {}),
    )
    message.attach_alternative(payload.get("html", ""), "text/html")
    for item in payload.get("attachments") or ():
        decoded = attachments.decode(item)
        if isinstance(decoded, (MIMEBase, MIMEPart)):
            message.attach(decoded)
        else:
            message.attach(*decoded)
    # django-anymail reads these attributes, which EmailMessage does not declare; other backends
    # ignore them. The log id in the metadata comes back in the provider's tracking webhooks.
    metadata = {**(log.metadata or {}), METADATA_KEY: str(log.pk)}
    message.metadata = metadata  # type: ignore[attr-defined]
    message.tags = list(log.tags)  # type: ignore[attr-defined]
    return message


def send_claimed(log: Any) -> Outcome:
    """Send a mail this process has claimed (status ``sending``) and record what happened."""
    return send_claimed_many([log])[0]


def mail_backend(alias: str = "") -> Any:
    """A new connection of the mailer ``alias`` of ``BETTER_MAIL['BACKENDS']``, or the default.

    An alias no longer configured raises PermanentSendError (the mail fails, naming it).

    ``MAILERS["default"]`` on Django 6.1+ (which falls back to EMAIL_BACKEND where MAILERS is not
    set; ``get_connection()`` is deprecated there), EMAIL_BACKEND before.
    """
    if alias:
        spec = mail_settings.BACKENDS.get(alias)
        if spec is None:
            raise PermanentSendError(
                f"The mail names the backend alias {alias!r}, which BETTER_MAIL['BACKENDS'] no "
                "longer defines."
            )
        # What get_connection() does, without its deprecation on Django 6.1.
        # Only the configured options: errors raise by default, and Django 6.1 warns when a
        # backend is handed a fail_silently its __init__ does not declare.
        return import_string(spec["BACKEND"])(**spec["OPTIONS"])
    mailers = getattr(django_mail, "mailers", None)
    if mailers is not None:
        return mailers.default
    return django_mail.get_connection(fail_silently=False)


def send_claimed_many(logs: Sequence[Any]) -> list[Outcome]:
    """Send claimed mails over one connection per backend; successes recorded in one UPDATE each.

    Outcomes come in the order of ``logs``.
    """
    groups: dict[str, list[Any]] = {}
    for log in logs:
        groups.setdefault(getattr(log, "backend", "") or "", []).append(log)
    outcomes: dict[Any, Outcome] = {}
    for alias, group in groups.items():
        for outcome in _send_over_one_backend(group, alias):
            outcomes[outcome.log_id] = outcome
    return [outcomes[log.pk] for log in logs]


def _send_over_one_backend(logs: Sequence[Any], alias: str) -> list[Outcome]:
    from better_mail.models import MailStatus

    if not logs:
        return []
    outcomes: list[Outcome] = []
    sent: list[tuple[Any, Any, dict[str, Any]]] = []
    try:
        connection = mail_backend(alias)
        # One connection for the batch (one SMTP session); each message is sent on its own so
        # that each gets its own outcome.
        connection.open()
    except Exception as exc:
        return [_record_failure(log, exc) for log in logs]
    try:
        for log in logs:
            try:
                message = build_message(log)
                if getattr(connection, "esp_name", None) is None:
                    # Not an ESP (those return their own ids, and some refuse this header).
                    _ensure_message_id(message)
                with _smtp_refusals(connection) as refused:
                    if not connection.send_messages([message]):
                        raise PermanentSendError(
                            f"The email backend {type(connection).__name__} accepted no message "
                            f"for mail {log.pk}."
                        )
            except Exception as exc:
                outcomes.append(_record_failure(log, exc))
                # The session may be broken: the next message opens a new one.
                _close_quietly(connection)
                continue
            sent.append((log, message, refused))
            outcomes.append(Outcome(MailStatus.SENT, log_id=log.pk))
    finally:
        _close_quietly(connection)
    if sent:
        _record_successes(sent, connection)
    return outcomes


def _ensure_message_id(message: Any) -> None:
    """Give the message its Message-ID now, which Django would otherwise make while sending,
    so that the log stores the id the server received."""
    if _message_id_header(message) is None:
        message.extra_headers["Message-ID"] = make_msgid(domain=DNS_NAME)


def _message_id_header(message: Any) -> str | None:
    for name, value in message.extra_headers.items():
        if name.lower() == "message-id":
            return str(value)
    return None


@contextmanager
def _smtp_refusals(connection: Any) -> Iterator[dict[str, tuple[int, bytes]]]:
    """The recipients an SMTP server refused while others accepted the message.

    smtplib returns them from ``sendmail()`` and Django's SMTP backend drops that answer, so the
    session's ``sendmail`` is wrapped for one send. Other backends report nothing here.
    """
    refused: dict[str, tuple[int, bytes]] = {}
    if not isinstance(connection, SMTPBackend):
        yield refused
        return
    connection.open()
    session = connection.connection
    if session is None:  # fail_silently and the server could not be reached
        yield refused
        return
    original = session.sendmail

    def sendmail(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        refused.update(result or {})
        return result

    session.sendmail = sendmail  # type: ignore[method-assign]
    try:
        yield refused
    finally:
        session.__dict__.pop("sendmail", None)


def refusal_status(code: int, message: bytes | str) -> dict[str, Any]:
    """A refused recipient as ``recipient_status`` holds it: rejected (5xx) or deferred (4xx)."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    status = "deferred" if _transient_code(code) else "rejected"
    return {"status": status, "message_id": None, "code": code, "message": text}


def describe_refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    """``a@example.com: 450 Greylisted; b@example.com: 550 No such user``."""
    parts = []
    for address, (code, message) in refused.items():
        info = refusal_status(code, message)
        parts.append(f"{address}: {code} {info['message']}")
    return "; ".join(parts)


def _transient_code(code: int) -> bool:
    # RFC 5321 4.2.1: a 4yz reply is a transient failure, 5yz a permanent one. A negative code
    # is smtplib's own (the connection failed mid-reply): worth another attempt.
    return 400 <= code < 500 or code < 0


def _close_quietly(connection: Any) -> None:
    try:
        connection.close()
    except Exception:
        logger.debug("better_mail: closing the email backend failed", exc_info=True)


def _record_successes(
    sent: Sequence[tuple[Any, Any, dict[str, tuple[int, bytes]]]], connection: Any
) -> None:
    from django.db import connection as db

    from better_mail.models import AttemptStatus, MailAttempt, MailLog

    now = timezone.now()
    provider = getattr(connection, "esp_name", None) or type(connection).__module__
    rows: list[Any] = []
    attempts: list[Any] = []
    for log, message, refused in sent:
        message_id, recipients = _anymail_result(message)
        if message_id is None:
            # Not an ESP: the Message-ID header given before sending is the one the server got.
            message_id = _message_id_header(message)
        error = ""
        if refused:
            # The server took the message for some recipients: it is sent, and the others are
            # recorded. A refused recipient is not retried, even on a 4xx: another attempt
            # would send the mail again to those that accepted it.
            accepted = {"status": "sent", "message_id": message_id}
            for address in message.recipients():
                recipients.setdefault(address, dict(accepted))
            for address, (code, text) in refused.items():
                recipients[address] = refusal_status(code, text)
            error = f"sent, but some recipients were refused: {describe_refusals(refused)}"
        rows.extend([str(log.pk), provider, message_id, json.dumps(recipients), error, now])
        attempts.append(_attempt(log, AttemptStatus.SENT, now, error))
    values = ", ".join(
        ["(%s::uuid, %s::text, %s::text, %s::jsonb, %s::text, %s::timestamptz)"] * len(sent)
    )
    table = db.ops.quote_name(MailLog._meta.db_table)
    # A tracking event that arrived before this update may already have moved the status on.
    query = f"""
UPDATE {table} AS m SET
  status = CASE WHEN m.status = 'sending' THEN 'sent' ELSE m.status END,
  provider = v.provider, provider_message_id = v.message_id, recipient_status = v.recipients,
  sent_at = v.at, updated_at = v.at, payload = NULL, error = v.error
FROM (VALUES {values}) AS v(id, provider, message_id, recipients, error, at)
WHERE m.id = v.id
"""
    # The attempts go in the same transaction: no second round of BEGIN/COMMIT per batch.
    with system_scope(), db.cursor() as cursor:
        cursor.execute(query, rows)
        MailAttempt.objects.bulk_create(attempts)


def _attempt(log: Any, status: str, at: Any, error: str = "", code: int | None = None) -> Any:
    from better_mail.models import MailAttempt

    return MailAttempt(
        mail_id=log.pk,
        tenant_id=log.tenant_id,
        at=at,
        status=status,
        error=error,
        code=code,
        backend=getattr(log, "backend", "") or "",
    )


def record_attempts(attempts: Sequence[Any]) -> None:
    """Add rows to the attempt log (in system mode: a batch spans tenants)."""
    from better_mail.models import MailAttempt

    if attempts:
        with system_scope():
            MailAttempt.objects.bulk_create(attempts)


def error_code(exc: BaseException) -> int | None:
    """The SMTP reply code or the provider's HTTP status an error carries, if any."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        codes = [code for code, _ in exc.recipients.values()]
        # A transient code is what made the mail wait, so it is the one to show.
        return next((code for code in codes if _transient_code(code)), codes[0])
    if isinstance(exc, smtplib.SMTPResponseException):
        return int(exc.smtp_code)
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


def _anymail_result(message: Any) -> tuple[str | None, dict[str, Any]]:
    status = getattr(message, "anymail_status", None)
    if status is None:
        return None, {}
    recipients = {
        address: {
            "status": info.status,
            "message_id": None if info.message_id is None else str(info.message_id),
        }
        for address, info in (status.recipients or {}).items()
    }
    message_id = status.message_id
    if isinstance(message_id, set | frozenset | list | tuple):
        # One id per recipient (batch sends): kept per recipient, the first as the log's.
        ids = sorted(str(item) for item in message_id if item is not None)
        message_id = ids[0] if ids else None
    return (None if message_id is None else str(message_id)), recipients


def _record_failure(log: Any, exc: BaseException) -> Outcome:
    from better_mail.models import AttemptStatus, MailLog, MailStatus

    transient = is_transient(exc)
    description = describe_error(exc)
    code = error_code(exc)
    now = timezone.now()
    # Every recipient was refused: each one's answer is kept, as after a partial refusal.
    recipients: dict[str, Any] = {}
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        recipients = {
            address: refusal_status(code, text) for address, (code, text) in exc.recipients.items()
        }
    max_attempts = int(mail_settings.MAX_ATTEMPTS)
    if transient and log.attempts < max_attempts:
        delay = backoff(log.attempts)
        logger.warning(
            "better_mail: mail %s failed transiently (attempt %s of %s), retrying in %ss: %s",
            log.pk,
            log.attempts,
            max_attempts,
            delay,
            description,
        )
        with system_scope():
            MailLog.objects.filter(pk=log.pk, status=MailStatus.SENDING).update(
                status=MailStatus.QUEUED,
                send_at=now + timedelta(seconds=delay),
                error=description,
                recipient_status=recipients,
                updated_at=now,
            )
        record_attempts([_attempt(log, AttemptStatus.DEFERRED, now, description, code)])
        return Outcome(MailStatus.QUEUED, retry_in=delay, error=description, log_id=log.pk)
    if transient:
        description = f"gave up after {log.attempts} attempts: {description}"
    logger.error("better_mail: mail %s failed: %s", log.pk, description)
    with system_scope():
        MailLog.objects.filter(pk=log.pk, status=MailStatus.SENDING).update(
            status=MailStatus.FAILED,
            error=description,
            recipient_status=recipients,
            updated_at=now,
            payload=None,
        )
    record_attempts([_attempt(log, AttemptStatus.FAILED, now, description, code)])
    return Outcome(MailStatus.FAILED, error=description, log_id=log.pk)


def backoff(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: RETRY_BACKOFF doubled per attempt, capped."""
    base = float(mail_settings.RETRY_BACKOFF)
    return min(base * 2 ** max(attempts - 1, 0), float(mail_settings.RETRY_BACKOFF_MAX))


def is_transient(exc: BaseException) -> bool:
    """True for errors a later attempt may not meet: network trouble, SMTP 4xx, provider 5xx."""
    if isinstance(exc, TransientSendError):
        return True
    if isinstance(exc, PermanentSendError):
        return False
    anymail = _anymail_exceptions()
    if anymail is not None:
        if isinstance(exc, anymail.AnymailRecipientsRefused | anymail.AnymailInvalidAddress):
            return False
        if isinstance(exc, anymail.AnymailAPIError):
            code = getattr(exc, "status_code", None)
            if code is not None:
                return code >= 500 or code in (408, 429)
            return _network_cause(exc)
        if isinstance(exc, anymail.AnymailError):
            return False
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        # Every recipient was refused. One 4xx among them (greylisting, a full mailbox) is
        # enough to try again: nobody has the mail yet and that recipient may take it later,
        # while the 5xx ones are refused again and recorded when the mail goes out to the
        # others. Only when all answers are 5xx is the mail failed.
        codes = [code for code, _ in exc.recipients.values()]
        return any(_transient_code(code) for code in codes)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(exc, smtplib.SMTPResponseException):
        # SMTPSenderRefused, SMTPDataError and other replies: 4xx transient, 5xx permanent.
        return _transient_code(exc.smtp_code)
    if isinstance(exc, smtplib.SMTPException):
        return False
    return isinstance(exc, ConnectionError | TimeoutError | OSError)


def _network_cause(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc.__context__
    if cause is None:
        return False
    try:
        import requests

        if isinstance(cause, requests.ConnectionError | requests.Timeout):
            return True
    except ImportError:
        pass
    return isinstance(cause, ConnectionError | TimeoutError | OSError)


def _anymail_exceptions() -> Any:
    try:
        from anymail import exceptions
    except ImportError:
        return None
    return exceptions


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        return f"{type(exc).__name__}: {describe_refusals(exc.recipients)}"[:2000]
    try:
        text = str(exc)
    except Exception:
        # Some providers' exceptions format their HTTP response and fail without one.
        text = repr(exc.args)
    return f"{type(exc).__name__}: {text}"[:2000]


# Scheduled and leftover mails -----------------------------------------------------------------


def send_due(limit: int = 100) -> int:
    """Send up to ``limit`` queued mails whose time has come; returns how many were sent.

    Mails are claimed ``BATCH_SIZE`` at a time and each batch goes over one backend connection.
    Mails left ``sending`` longer than ``STALE_SENDING_AFTER`` seconds (a worker died mid-send)
    are marked failed, not sent again: the provider may already have accepted them, and
    better_mail never risks sending a mail twice.
    """
    from better_mail.models import MailStatus

    fail_stale()
    sent = 0
    remaining = limit
    size = max(int(mail_settings.BATCH_SIZE), 1)
    while remaining > 0:
        slots = take_rate_slots(min(size, remaining))
        if not slots.granted:
            break
        logs = claim_batch(slots.granted)
        # Slots the claim found no mail for go back, so that a frequent send-due with little
        # to send does not use up the window.
        slots.give_back(slots.granted - len(logs))
        if not logs:
            break
        remaining -= len(logs)
        outcomes = send_claimed_many(logs)
        sent += sum(outcome.status == MailStatus.SENT for outcome in outcomes)
    return sent


def fail_stale() -> int:
    """Mark mails stuck in ``sending`` (their worker died) as failed; returns how many."""
    from better_mail.models import AttemptStatus, MailLog, MailStatus

    now = timezone.now()
    cutoff = now - timedelta(seconds=float(mail_settings.STALE_SENDING_AFTER))
    error = (
        "interrupted: the worker stopped while sending, so the provider may or may not have "
        "accepted this mail. Send it again if it did not arrive."
    )
    with system_scope():
        # Locked, so that the attempts recorded are those of the rows this call fails.
        stale = list(
            MailLog.objects.select_for_update(skip_locked=True)
            .filter(status=MailStatus.SENDING, updated_at__lt=cutoff)
            .only("pk", "tenant_id", "backend")
        )
        if not stale:
            return 0
        MailLog.objects.filter(pk__in=[log.pk for log in stale]).update(
            status=MailStatus.FAILED, error=error, updated_at=now, payload=None
        )
        record_attempts([_attempt(log, AttemptStatus.FAILED, now, error) for log in stale])
    return len(stale)


def queued_count() -> int:
    """Mails waiting to be sent (all tenants)."""
    from better_mail.models import MailLog, MailStatus

    with system_scope():
        return MailLog.objects.filter(status=MailStatus.QUEUED).count()


# Rate limit -----------------------------------------------------------------------------------


def parse_rate(value: str) -> tuple[int, int]:
    """``"100/m"`` -> (100, 60); also ``"10/s"``, ``"5000/h"``, ``"20/10s"``."""
    try:
        return rates.parse_rate(value)
    except ValueError:
        raise MailConfigurationError(
            f"BETTER_MAIL['RATE_LIMIT'] = {value!r} is not a rate. Use {rates.RATE_HELP}; "
            "a rate allows at least one mail."
        ) from None


@dataclasses.dataclass
class RateSlots:
    """Sends granted by the rate limit, and the seconds until its next window."""

    granted: int
    resets_in: float = 0.0
    window: rates.Window | None = None

    def give_back(self, unused: int) -> None:
        """Return ``unused`` of the granted slots (no mail to claim for them) to their window."""
        unused = min(unused, self.granted)
        if self.window is None or unused <= 0:
            return
        from django.core.cache import cache

        rates.give_back(cache, self.window, unused)
        self.granted -= unused


def take_rate_slots(wanted: int) -> RateSlots:
    """Take up to ``wanted`` sends from the rate limit; hand back what goes unused.

    Fixed windows counted in Django's default cache, shared by all workers when that cache is
    shared (Redis, Memcached, database). Without ``RATE_LIMIT`` everything is granted.
    """
    rate = mail_settings.RATE_LIMIT
    if not rate or wanted <= 0:
        return RateSlots(max(wanted, 0))
    from django.core.cache import cache

    count, period = parse_rate(rate)
    window = rates.hit(cache, "better_mail:rate", period, wanted)
    # The counter reserves all ``wanted`` at once, so concurrent workers never see room that
    # another has already taken; what is refused here goes back at once, what the caller does
    # not use goes back through give_back(). At any time the counter is at least the sends
    # made plus the slots still held, so no interleaving of workers grants more than the rate.
    granted = max(0, min(wanted, count - (window.used - wanted)))
    slots = RateSlots(wanted, window.resets_in, window)
    slots.give_back(wanted - granted)
    return slots
