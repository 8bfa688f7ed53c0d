"""send(): render, log and queue a mail; deliver(): claim queued mails and hand them to the backend.

Life of a mail:

1. ``send()`` renders the template (variable errors raise here, before anything is written),
   inserts a ``MailLog`` row with status ``queued`` in the caller's transaction and tenant scope,
   and adds it to the transaction's on-commit batch. A rolled-back transaction leaves neither
   row nor mail.
2. After commit the batch is published to Celery (``better_mail.send`` for one mail,
   ``better_mail.send_many`` for up to ``BATCH_SIZE``) in async mode, or delivered in process in
   sync mode. Scheduled mails (``send_at`` in the future) are published with that ETA;
   ``send_due()`` (``manage.py better_mail send-due`` or the periodic task
   ``better_mail.send_due``) sends whatever is due and was not sent, for installs without a
   worker or when publishing failed.
3. Delivery claims rows with one ``WITH c AS MATERIALIZED (SELECT ... FOR UPDATE SKIP LOCKED)``
   ``UPDATE``
   (queued -> sending) in a short transaction, so two workers never send one mail twice, then
   sends them outside any lock through Django's default mailer (one connection per batch)
   and records the outcome: ``sent`` with the provider's ids, ``queued`` again with a later
   ``send_at`` after a transient error, or ``failed``.

Database work after the caller's transaction runs in system mode when better_tenant is
installed (the caller's scope has ended by then and the row may belong to any tenant)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import email
import email.policy
import functools
import importlib.util
import json
import logging
import smtplib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from email.message import MIMEPart
from email.mime.base import MIMEBase
from email.utils import parseaddr
from typing import Any

import django
from django.conf import settings
from django.core import mail as django_mail
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.db import IntegrityError, router, transaction
from django.utils import timezone

from better_core import rates
from better_mail.conf import mail_settings
from better_mail.exceptions import (
    InvalidRecipient,
    MailConfigurationError,
    PermanentSendError,
    TransientSendError,
)
from better_mail.templates import MailTemplate, get_template
from better_tenant.shortcuts import current_tenant_id, system_scope, tenancy_installed

logger = logging.getLogger("better_mail")

METADATA_KEY = "better_mail_id"


# send() ---------------------------------------------------------------------------------------


def send(
    template: str | type[MailTemplate],
    *,
    to: str | Sequence[str],
    cc: str | Sequence[str] | None = None,
    bcc: str | Sequence[str] | None = None,
    reply_to: str | Sequence[str] | None = None,
    from_email: str | None = None,
    attachments: Iterable[Any] | None = None,
    headers: Mapping[str, str] | None = None,
    tags: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    send_at: datetime | None = None,
    async_: bool | None = None,
    idempotency_key: str | None = None,
    context: Mapping[str, Any] | None = None,
    **variables: Any,
) -> Any:
    """Render ``template`` and queue it; returns the ``MailLog`` (status ``queued``).

    Variables are given as keyword arguments or as ``context={...}`` (both are merged; use
    ``context`` for a variable named like a parameter of send(), e.g. ``tags``). They are
    validated here: a missing, unknown or mistyped one raises ``TemplateVariableError`` and
    nothing is written.

    ``attachments``: ``(filename, content, mimetype)`` tuples (content ``bytes`` or ``str``) or
    MIME parts (``email.message.MIMEPart``, or ``MIMEBase`` as before Django 6.0).
    ``send_at``: not sent before this aware datetime. ``async_``: None follows
    ``BETTER_MAIL['ASYNC']``; True sends through Celery (when installed), False in
    process after commit. ``idempotency_key``: a second send() with the same key returns the
    first mail's log and sends nothing (keys are unique across the whole table).
    """
    from better_mail.models import MailLog, MailStatus

    cls = get_template(template)
    rendered = cls.render(context, **variables)
    recipients = {
        "to": _addresses(to, "to"),
        "cc": _addresses(cc, "cc"),
        "bcc": _addresses(bcc, "bcc"),
        "reply_to": _addresses(reply_to, "reply_to"),
    }
    if not (recipients["to"] or recipients["cc"] or recipients["bcc"]):
        raise InvalidRecipient("send() needs at least one recipient in to=, cc= or bcc=.")
    if send_at is not None and timezone.is_naive(send_at):
        raise ValueError(
            "send_at must be an aware datetime (e.g. timezone.now() + timedelta(hours=1))."
        )
    sender = from_email or mail_settings.DEFAULT_FROM or settings.DEFAULT_FROM_EMAIL
    _addresses(sender, "from_email")
    tenant_id = current_tenant_id()

    if idempotency_key is not None:
        existing = _find_by_key(idempotency_key, tenant_id)
        if existing is not None:
            return existing

    # A credential in a stored body would be readable by whoever may read the log.
    store = bool(mail_settings.STORE_BODIES) and not cls.sensitive
    log = MailLog(
        tenant_id=tenant_id,
        template=cls.name,
        from_email=sender,
        subject=rendered.subject,
        status=MailStatus.QUEUED,
        tags=list(tags or []),
        metadata=dict(metadata or {}),
        idempotency_key=idempotency_key,
        send_at=send_at,
        html_body=rendered.html if store else "",
        text_body=rendered.text if store else "",
        payload={
            "html": rendered.html,
            "text": rendered.text,
            "headers": {str(k): str(v) for k, v in (headers or {}).items()},
            "attachments": [_encode_attachment(item) for item in attachments or ()],
        },
        **recipients,
    )
    alias = router.db_for_write(MailLog, instance=log)
    # Only a key can collide (the id is a fresh UUID): without one, no savepoint round trips.
    savepoint = (
        transaction.atomic(using=alias) if idempotency_key is not None else contextlib.nullcontext()
    )
    try:
        with savepoint:
            insert_log(log, alias)
    except IntegrityError:
        if idempotency_key is None:
            raise
        # Another send() with the same key committed between our lookup and our insert.
        existing = _find_by_key(idempotency_key, tenant_id)
        if existing is None:
            raise IntegrityError(
                f"The idempotency key {idempotency_key!r} is already used by a mail of another "
                "tenant. Include the tenant in the key."
            ) from None
        return existing

    after_commit(log.pk, send_at, _use_celery(async_))
    return log


def insert_log(log: Any, using: str) -> None:
    """Write a new ``MailLog`` with one parametrised INSERT: the statement ``save()`` would send.

    ``Model.save(force_insert=True)`` compiles that statement again for every mail, at about
    half the cost of running it. When anything watches the model's saves (a ``pre_save`` or
    ``post_save`` receiver, such as better_audit's for an audited ``mail_logs``), the ORM's save
    runs instead, so that it sees the row as before.
    """
    from django.db import connections
    from django.db.models.signals import post_save, pre_save

    model = type(log)
    if pre_save.has_listeners(model) or post_save.has_listeners(model):
        log.save(force_insert=True, using=using)
        return
    connection = connections[using]
    query, fields = _insert_statement(model, using)
    # The values prepared as save() prepares them (JSON adapters, array items). For None and
    # for the plain value of a plain field (a str for a CharField, an aware datetime, a UUID)
    # that is the value itself, so the field is not asked.
    params = []
    for field, plain_type in fields:
        value = getattr(log, field.attname)
        if value is not None and (
            type(value) is not plain_type or (plain_type is datetime and value.tzinfo is None)
        ):
            value = field.get_db_prep_save(value, connection)
        params.append(value)
    with connection.cursor() as cursor:
        cursor.execute(query, params)
    log._state.adding = False
    log._state.db = using


@functools.lru_cache(maxsize=8)
def _insert_statement(model: Any, using: str) -> tuple[str, list[tuple[Any, type | None]]]:
    from django.db import connections, models

    # Exact field classes and the value type that their preparation on PostgreSQL returns
    # unchanged (a datetime only when aware); other fields and values are prepared by the field.
    plain_types = {
        models.CharField: str,
        models.TextField: str,
        models.UUIDField: uuid.UUID,
        models.PositiveIntegerField: int,
        models.DateTimeField: datetime,
    }
    connection = connections[using]
    postgres = connection.vendor == "postgresql"
    fields = list(model._meta.concrete_fields)
    quote = connection.ops.quote_name
    query = "INSERT INTO {} ({}) VALUES ({})".format(
        quote(model._meta.db_table),
        ", ".join(quote(field.column) for field in fields),
        ", ".join(["%s"] * len(fields)),
    )
    return query, [(field, plain_types.get(type(field)) if postgres else None) for field in fields]


def _find_by_key(key: str, tenant_id: uuid.UUID | None) -> Any:
    from better_mail.models import MailLog

    if tenant_id is None and tenancy_installed():
        # Rows without a tenant are only readable in system mode.
        with system_scope():
            return MailLog.objects.filter(idempotency_key=key, tenant_id__isnull=True).first()
    return MailLog.objects.filter(idempotency_key=key).first()


def _addresses(value: str | Sequence[str] | None, label: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        if not (isinstance(item, str) and _is_address(item)):
            raise InvalidRecipient(
                f"{label}: {item!r} is not an email address. Use 'user@example.com' or "
                "'Name <user@example.com>'."
            )
    return items


@functools.lru_cache(maxsize=4096)
def _is_address(item: str) -> bool:
    # Cached: the sender and frequent recipients are validated once per process.
    try:
        validate_email(parseaddr(item)[1])
    except ValidationError:
        return False
    return True


def _use_celery(async_: bool | None) -> bool:
    wanted = mail_settings.ASYNC if async_ is None else async_
    return bool(wanted) and celery_available()


def celery_available() -> bool:
    """True when Celery is installed (the send task can be published)."""
    return importlib.util.find_spec("celery") is not None


# Attachments ----------------------------------------------------------------------------------


def _encode_attachment(item: Any) -> dict[str, Any]:
    if isinstance(item, (MIMEBase, MIMEPart)):
        return {"mime": base64.b64encode(item.as_bytes()).decode("ascii")}
    try:
        filename, content, mimetype = item
    except (TypeError, ValueError):
        raise TypeError(
            f"Attachment {item!r} is not a (filename, content, mimetype) tuple or a MIME part."
        ) from None
    if isinstance(content, str):
        return {"filename": filename, "text": content, "mimetype": mimetype}
    return {
        "filename": filename,
        "base64": base64.b64encode(bytes(content)).decode("ascii"),
        "mimetype": mimetype,
    }


def _decode_attachment(data: Mapping[str, Any]) -> Any:
    if "mime" in data:
        if django.VERSION >= (6, 0):
            # Django 6.0 attaches email.message.MIMEPart and deprecates MIMEBase parts.
            return email.message_from_bytes(
                base64.b64decode(data["mime"]), _class=MIMEPart, policy=email.policy.default
            )
        parsed = email.message_from_bytes(base64.b64decode(data["mime"]))
        maintype, _, subtype = parsed.get_content_type().partition("/")
        part = MIMEBase(maintype, subtype)
        for header in ("Content-Type", "MIME-Version"):
            del part[header]
        for header, value in parsed.items():
            part[header] = value
        part.set_payload(parsed.get_payload())
        return part
    content = data["text"] if "text" in data else base64.b64decode(data["base64"])
    return (data["filename"], content, data["mimetype"])


# After commit ---------------------------------------------------------------------------------


class _Pending:
    """The mails queued in one transaction, handed over together when it commits."""

    def __init__(self) -> None:
        self.celery: list[Any] = []
        self.in_process: list[Any] = []
        self.ran = False

    def __call__(self) -> None:
        self.ran = True
        celery, self.celery = self.celery, []
        in_process, self.in_process = self.in_process, []
        if celery:
            publish(celery)
        if in_process:
            deliver_many(in_process)


def after_commit(log_id: Any, send_at: datetime | None = None, use_celery: bool = True) -> None:
    """Hand a queued mail over once the current transaction commits (now, without one).

    Mails queued in one transaction share one on-commit callback, so that a thousand sends in
    a transaction make a few Celery messages of ``BATCH_SIZE`` ids (or one in-process batch),
    not a thousand. The callback is robust: a failure to hand mails over is logged, never
    raised into the committing code, and the rows stay queued for ``send_due()``.
    """
    if send_at is not None and send_at > timezone.now():
        transaction.on_commit(lambda: dispatch(log_id, send_at, use_celery), robust=True)
        return
    conn = transaction.get_connection()
    pending = None
    # The callback registered earlier in this transaction, if it is still registered (a
    # rollback drops it, and then a new one is needed).
    for entry in reversed(getattr(conn, "run_on_commit", ())):
        callback = entry[1] if isinstance(entry, tuple) and len(entry) > 1 else None
        if isinstance(callback, _Pending) and not callback.ran:
            pending = callback
            break
    fresh = pending is None
    if fresh:
        pending = _Pending()
    (pending.celery if use_celery else pending.in_process).append(log_id)
    if fresh:
        transaction.on_commit(pending, robust=True)


def dispatch(log_id: Any, send_at: datetime | None = None, use_celery: bool = True) -> None:
    """Hand one committed, queued mail to Celery, or deliver it now in sync mode.

    A mail whose ``send_at`` is in the future waits: Celery gets it with that ETA, and in sync
    mode ``send_due()`` sends it once due.
    """
    due = send_at is None or send_at <= timezone.now()
    if use_celery:
        publish([log_id], eta=None if due else send_at)
    elif due:
        deliver(log_id)


def publish(
    log_ids: Sequence[Any], eta: datetime | None = None, countdown: float | None = None
) -> None:
    """Send Celery tasks for these mails: ``better_mail.send`` for one, ``send_many`` for more.

    If publishing fails (broker down) the rows stay queued for ``send_due()``; the error is
    logged.
    """
    from better_mail import tasks

    options: dict[str, Any] = {}
    if mail_settings.QUEUE:
        options["queue"] = mail_settings.QUEUE
    if eta is not None:
        options["eta"] = eta
    if countdown is not None:
        options["countdown"] = countdown
    ids = [str(log_id) for log_id in log_ids]
    size = max(int(mail_settings.BATCH_SIZE), 1)
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        try:
            if len(chunk) == 1:
                tasks.send_mail.apply_async(args=chunk, **options)
            else:
                tasks.send_many.apply_async(args=[chunk], **options)
        except Exception:
            logger.exception(
                "better_mail: could not publish mail(s) %s to Celery; they stay queued until "
                "send_due() (manage.py better_mail send-due) sends them.",
                ", ".join(chunk),
            )


# Delivery -------------------------------------------------------------------------------------


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
# The candidates are a MATERIALIZED CTE: as an ``IN (SELECT ... LIMIT n)`` subquery the planner
# may run the locking subquery more than once, and each run, skipping rows already locked,
# returns new ones, so one statement could claim more than ``n`` rows.
_CLAIM_SQL = """
WITH candidates AS MATERIALIZED (
  SELECT id FROM {table}
  WHERE status = 'queued' AND (send_at IS NULL OR send_at <= %s){only}
  ORDER BY send_at NULLS FIRST
  LIMIT %s
  FOR UPDATE SKIP LOCKED
)
UPDATE {table} SET status = 'sending', attempts = attempts + 1, updated_at = %s
FROM candidates
WHERE {table}.id = candidates.id
RETURNING {table}.*
"""


def claim_batch(limit: int, ids: Sequence[Any] | None = None) -> list[Any]:
    """Lock up to ``limit`` queued, due mails (of ``ids`` if given) and mark them ``sending``.

    ``SKIP LOCKED``: mails another worker is claiming right now are skipped, not waited for;
    once that worker commits they are no longer ``queued`` and match nothing.
    """
    from django.db import connection

    from better_mail.models import MailLog

    if limit <= 0 or (ids is not None and not ids):
        return []
    now = timezone.now()
    params: list[Any] = [now]
    only = ""
    if ids is not None:
        only = " AND id = ANY(%s)"
        params.append([uuid.UUID(str(log_id)) for log_id in ids])
    params += [limit, now]
    query = _CLAIM_SQL.format(table=connection.ops.quote_name(MailLog._meta.db_table), only=only)
    with system_scope():
        logs = list(MailLog.objects.raw(query, params))
    # RETURNING gives no order: send in the order the mails were queued.
    logs.sort(key=lambda log: log.created_at)
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
    granted, wait = take_rate_slots(1)
    if not granted:
        return Outcome("rate_limited", retry_in=wait, log_id=log_id)
    log = claim(log_id)
    if log is None:
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
        granted, wait = take_rate_slots(min(size, len(pending)))
        if not granted:
            outcomes.extend(Outcome("rate_limited", retry_in=wait, log_id=i) for i in pending)
            break
        chunk, pending = pending[:granted], pending[granted:]
        try:
            logs = claim_batch(len(chunk), chunk)
        except ValueError:
            logs = [log for log in (claim(i) for i in chunk) if log is not None]
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
        decoded = _decode_attachment(item)
        if isinstance(decoded, (MIMEBase, MIMEPart)):
            message.attach(decoded)
        else:
            message.attach(*decoded)
    # django-anymail reads these attributes; other backends ignore them. The log id in the
    # metadata comes back in the provider's tracking webhooks.
    message.metadata = {**(log.metadata or {}), METADATA_KEY: str(log.pk)}
    message.tags = list(log.tags)
    return message


def send_claimed(log: Any) -> Outcome:
    """Send a mail this process has claimed (status ``sending``) and record what happened."""
    return send_claimed_many([log])[0]


def mail_backend() -> Any:
    """A new connection of the default mailer.

    ``MAILERS["default"]`` on Django 6.1+ (which falls back to EMAIL_BACKEND where MAILERS is not
    set; ``get_connection()`` is deprecated there), EMAIL_BACKEND before.
    """
    mailers = getattr(django_mail, "mailers", None)
    if mailers is not None:
        return mailers.default
    return django_mail.get_connection(fail_silently=False)


def send_claimed_many(logs: Sequence[Any]) -> list[Outcome]:
    """Send claimed mails over one backend connection; successes are recorded in one UPDATE."""
    from better_mail.models import MailStatus

    if not logs:
        return []
    outcomes: list[Outcome] = []
    sent: list[tuple[Any, Any]] = []
    try:
        connection = mail_backend()
        # One connection for the batch (one SMTP session); each message is sent on its own so
        # that each gets its own outcome.
        connection.open()
    except Exception as exc:
        return [_record_failure(log, exc) for log in logs]
    try:
        for log in logs:
            try:
                message = build_message(log)
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
            sent.append((log, message))
            outcomes.append(Outcome(MailStatus.SENT, log_id=log.pk))
    finally:
        _close_quietly(connection)
    if sent:
        _record_successes(sent, connection)
    return outcomes


def _close_quietly(connection: Any) -> None:
    try:
        connection.close()
    except Exception:
        logger.debug("better_mail: closing the email backend failed", exc_info=True)


def _record_successes(sent: Sequence[tuple[Any, Any]], connection: Any) -> None:
    from django.db import connection as db

    from better_mail.models import MailLog

    now = timezone.now()
    provider = getattr(connection, "esp_name", None) or type(connection).__module__
    rows: list[Any] = []
    for log, message in sent:
        message_id, recipients = _anymail_result(message)
        rows.extend([str(log.pk), provider, message_id, json.dumps(recipients), now])
    values = ", ".join(["(%s::uuid, %s::text, %s::text, %s::jsonb, %s::timestamptz)"] * len(sent))
    table = db.ops.quote_name(MailLog._meta.db_table)
    # A tracking event that arrived before this update may already have moved the status on.
    query = f"""
UPDATE {table} AS m SET
  status = CASE WHEN m.status = 'sending' THEN 'sent' ELSE m.status END,
  provider = v.provider, provider_message_id = v.message_id, recipient_status = v.recipients,
  sent_at = v.at, updated_at = v.at, payload = NULL, error = ''
FROM (VALUES {values}) AS v(id, provider, message_id, recipients, at)
WHERE m.id = v.id
"""
    with system_scope(), db.cursor() as cursor:
        cursor.execute(query, rows)


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
    from better_mail.models import MailLog, MailStatus

    transient = is_transient(exc)
    description = describe_error(exc)
    now = timezone.now()
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
                updated_at=now,
            )
        return Outcome(MailStatus.QUEUED, retry_in=delay, error=description, log_id=log.pk)
    if transient:
        description = f"gave up after {log.attempts} attempts: {description}"
    logger.error("better_mail: mail %s failed: %s", log.pk, description)
    with system_scope():
        MailLog.objects.filter(pk=log.pk, status=MailStatus.SENDING).update(
            status=MailStatus.FAILED, error=description, updated_at=now, payload=None
        )
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
        return False
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500 or exc.smtp_code < 0
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
        granted, _ = take_rate_slots(min(size, remaining))
        if not granted:
            break
        logs = claim_batch(granted)
        if not logs:
            break
        remaining -= len(logs)
        outcomes = send_claimed_many(logs)
        sent += sum(outcome.status == MailStatus.SENT for outcome in outcomes)
    return sent


def fail_stale() -> int:
    """Mark mails stuck in ``sending`` (their worker died) as failed; returns how many."""
    from better_mail.models import MailLog, MailStatus

    now = timezone.now()
    cutoff = now - timedelta(seconds=float(mail_settings.STALE_SENDING_AFTER))
    with system_scope():
        return MailLog.objects.filter(status=MailStatus.SENDING, updated_at__lt=cutoff).update(
            status=MailStatus.FAILED,
            error="interrupted: the worker stopped while sending, so the provider may or may "
            "not have accepted this mail. Send it again if it did not arrive.",
            updated_at=now,
            payload=None,
        )


def cancel(log: Any) -> bool:
    """Cancel a mail that is still queued (e.g. scheduled); True when it was cancelled."""
    from better_mail.models import MailLog, MailStatus

    scope = (
        system_scope()
        if log.tenant_id is None or current_tenant_id() is None
        else contextlib.nullcontext()
    )
    with scope:
        cancelled = MailLog.objects.filter(
            pk=log.pk, status=MailStatus.QUEUED, tenant_id=log.tenant_id
        ).update(status=MailStatus.CANCELLED, payload=None, updated_at=timezone.now())
    if cancelled:
        log.status = MailStatus.CANCELLED
    return bool(cancelled)


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


def take_rate_slots(wanted: int) -> tuple[int, float]:
    """Take up to ``wanted`` sends from the rate limit: (granted, seconds until the next window).

    Fixed windows counted in Django's default cache, shared by all workers when that cache is
    shared (Redis, Memcached, database). Without ``RATE_LIMIT`` everything is granted.
    """
    rate = mail_settings.RATE_LIMIT
    if not rate or wanted <= 0:
        return wanted, 0.0
    from django.core.cache import cache

    count, period = parse_rate(rate)
    window = rates.hit(cache, "better_mail:rate", period, wanted)
    granted = max(0, min(wanted, count - (window.used - wanted)))
    return granted, window.resets_in


def queued_count() -> int:
    """Mails waiting to be sent (all tenants)."""
    from better_mail.models import MailLog, MailStatus

    with system_scope():
        return MailLog.objects.filter(status=MailStatus.QUEUED).count()
