"""send(): validate and render a mail, write its MailLog, and hand it over after commit."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from email.utils import parseaddr
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, router, transaction
from django.db.models import Model
from django.utils import timezone

from better_mail import delivery
from better_mail.attachments import encode as encode_attachment
from better_mail.conf import mail_settings

# Re-exported: send_due is public API (better_mail.send_due) and used to be defined here.
from better_mail.delivery import send_due as send_due
from better_mail.exceptions import InvalidRecipient, UnknownBackend
from better_mail.templates import MailTemplate, get_template
from better_tenant.shortcuts import current_tenant_id, system_scope, tenancy_installed

# Life of a mail, up to its delivery (better_mail.delivery):
#
# 1. send() renders the template (variable errors raise here, before anything is written),
#    inserts a MailLog row with status ``queued`` in the caller's transaction and tenant scope,
#    and adds it to the transaction's on-commit batch. A rolled-back transaction leaves neither
#    row nor mail.
# 2. After commit the batch is published to Celery (``better_mail.send`` for one mail,
#    ``better_mail.send_many`` for up to BATCH_SIZE) in async mode, or delivered in process in
#    sync mode. Scheduled mails (``send_at`` in the future) are published with that ETA;
#    send_due() (``manage.py better_mail send-due`` or the periodic task
#    ``better_mail.send_due``) sends whatever is due and was not sent, for installs without a
#    worker or when publishing failed.

logger = logging.getLogger("better_mail")


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
    priority: str | None = None,
    backend: str | None = None,
    expires_at: datetime | None = None,
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
    ``priority``: ``"now"`` sends in process right after commit, skipping the queue (and
    Celery); ``"high"``, ``"normal"`` and ``"low"`` order the queue's claims (high first, then by
    due time); None follows ``BETTER_MAIL['DEFAULT_PRIORITY']``. ``backend``: an alias of
    ``BETTER_MAIL['BACKENDS']`` to send through instead of the default mailer (an unknown one
    raises ``UnknownBackend``). ``expires_at``: an aware datetime after which the mail is
    cancelled rather than sent late.
    """
    from better_mail.models import MailLog, MailPriority

    log, level = _build_log(
        template,
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        from_email=from_email,
        attachments=attachments,
        headers=headers,
        tags=tags,
        metadata=metadata,
        send_at=send_at,
        context=context,
        priority=priority,
        backend=backend,
        expires_at=expires_at,
        variables=variables,
        idempotency_key=idempotency_key,
    )
    if idempotency_key is not None:
        existing = _find_by_key(idempotency_key, log.tenant_id)
        if existing is not None:
            return existing

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
        existing = _find_by_key(idempotency_key, log.tenant_id)
        if existing is None:
            raise IntegrityError(
                f"The idempotency key {idempotency_key!r} is already used by a mail of another "
                "tenant. Include the tenant in the key."
            ) from None
        return existing

    # "now" is delivered by this process, whatever ASYNC says: no broker round trip.
    after_commit(log.pk, send_at, level != MailPriority.NOW and _use_celery(async_))
    return log


#: What each mail of send_many() may set on its own; the rest is shared by the batch.
MANY_FIELDS = frozenset(
    {"to", "cc", "bcc", "reply_to", "context", "headers", "attachments", "tags", "metadata"}
)


def send_many(
    template: str | type[MailTemplate],
    mails: Iterable[Mapping[str, Any]],
    *,
    from_email: str | None = None,
    tags: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    send_at: datetime | None = None,
    async_: bool | None = None,
    priority: str | None = None,
    backend: str | None = None,
    expires_at: datetime | None = None,
) -> list[Any]:
    """Queue one mail of ``template`` per item of ``mails``; returns their ``MailLog`` rows.

    Each item is a dict of what differs from mail to mail: ``to`` (required), ``cc``, ``bcc``,
    ``reply_to``, ``context`` (the template's variables), ``headers``, ``attachments``, ``tags``
    and ``metadata`` (these two override the shared ones). The other parameters are shared and
    mean what they mean for ``send()``. Every mail is validated and rendered first: one bad
    item raises (naming its position) and nothing is written. The rows are then written with
    one INSERT per ``BATCH_SIZE`` mails in the caller's transaction and handed over after
    commit together (one Celery task per ``BATCH_SIZE`` mails), which the worker sends over one
    connection per backend. There is no ``idempotency_key``: use ``send()`` for mails that
    need one.
    """
    from better_mail.models import MailLog, MailPriority

    logs, levels = [], set()
    for position, item in enumerate(mails):
        unknown = set(item) - MANY_FIELDS
        if unknown:
            allowed = ", ".join(sorted(MANY_FIELDS))
            raise TypeError(
                f"send_many(): mail {position} has {', '.join(sorted(unknown))}, which a mail "
                f"of send_many() cannot set on its own (it may set {allowed})."
            )
        if "to" not in item:
            raise InvalidRecipient(f"send_many(): mail {position} has no 'to'.")
        try:
            log, level = _build_log(
                template,
                to=item["to"],
                cc=item.get("cc"),
                bcc=item.get("bcc"),
                reply_to=item.get("reply_to"),
                from_email=from_email,
                attachments=item.get("attachments"),
                headers=item.get("headers"),
                tags=item.get("tags", tags),
                metadata=item.get("metadata", metadata),
                send_at=send_at,
                context=item.get("context"),
                priority=priority,
                backend=backend,
                expires_at=expires_at,
            )
        except Exception as exc:
            exc.add_note(f"(send_many(): mail {position})")
            raise
        logs.append(log)
        levels.add(level)
    if not logs:
        return []
    alias = router.db_for_write(MailLog, instance=logs[0])
    use_celery = MailPriority.NOW not in levels and _use_celery(async_)
    # One transaction even in autocommit mode, so the batch is handed over once, after it.
    with transaction.atomic(using=alias):
        insert_logs(logs, alias)
        for log in logs:
            after_commit(log.pk, send_at, use_celery)
    return logs


def _build_log(
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
    context: Mapping[str, Any] | None = None,
    priority: str | None = None,
    backend: str | None = None,
    expires_at: datetime | None = None,
    variables: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> tuple[Any, int]:
    """Validate and render one mail: its unsaved ``MailLog`` (status ``queued``) and priority.

    Everything that can be wrong with a mail is found here, before anything is written.
    """
    from better_mail.models import MailLog, MailPriority, MailStatus

    variables = variables or {}

    level = _priority(priority)
    if backend is not None and backend not in mail_settings.BACKENDS:
        configured = ", ".join(sorted(mail_settings.BACKENDS)) or "none"
        raise UnknownBackend(
            f"backend={backend!r} is not an alias of BETTER_MAIL['BACKENDS'] (configured: "
            f"{configured}). Add it there, or leave backend out for the default mailer."
        )
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
    if expires_at is not None and timezone.is_naive(expires_at):
        raise ValueError(
            "expires_at must be an aware datetime (e.g. timezone.now() + timedelta(hours=1))."
        )
    if level == MailPriority.NOW and send_at is not None and send_at > timezone.now():
        raise ValueError("priority='now' sends at once; it cannot wait for a future send_at.")
    sender = from_email or mail_settings.DEFAULT_FROM or settings.DEFAULT_FROM_EMAIL
    _addresses(sender, "from_email")
    tenant_id = current_tenant_id()
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
        expires_at=expires_at,
        priority=level,
        backend=backend or "",
        variables=None if cls.sensitive else _stored_variables({**(context or {}), **variables}),
        html_body=rendered.html if store else "",
        text_body=rendered.text if store else "",
        payload={
            "html": rendered.html,
            "text": rendered.text,
            "headers": {str(k): str(v) for k, v in (headers or {}).items()},
            "attachments": [encode_attachment(item) for item in attachments or ()],
        },
        **recipients,
    )
    return log, level


def _priority(name: str | None) -> int:
    from better_mail.conf import PRIORITIES
    from better_mail.models import MailPriority

    name = mail_settings.DEFAULT_PRIORITY if name is None else name
    if name not in PRIORITIES:
        raise ValueError(
            f"priority={name!r} is not a priority; use one of {', '.join(PRIORITIES)}."
        )
    return int(MailPriority[name.upper()])


def _stored_variables(values: dict[str, Any]) -> dict[str, Any] | None:
    """The variables as JSON if they come back from it unchanged; None otherwise.

    A date, a Decimal or a model instance would come back as another type, and a requeue would
    then render something else (or fail validation), so such mails are not requeued.
    """
    try:
        stored = json.loads(json.dumps(values))
    except (TypeError, ValueError):
        return None
    return stored if stored == values else None


def insert_log(log: Any, using: str) -> None:
    """Write a new ``MailLog`` with one parametrised INSERT: the statement ``save()`` would send.

    ``Model.save(force_insert=True)`` compiles that statement again for every mail, at about
    half the cost of running it. When anything watches the model's saves (a ``pre_save`` or
    ``post_save`` receiver, such as better_audit's for an audited ``mail_logs``), the ORM's save
    runs instead, so that it sees the row as before.
    """
    from django.db import connections
    from django.db.models.signals import post_save, pre_save

    model: type[Model] = type(log)
    if pre_save.has_listeners(model) or post_save.has_listeners(model):
        log.save(force_insert=True, using=using)
        return
    connection = connections[using]
    query, fields = _insert_statement(model, using)
    with connection.cursor() as cursor:
        cursor.execute(query, _row_params(log, fields, connection))
    log._state.adding = False
    log._state.db = using


def _row_params(log: Any, fields: list[tuple[Any, type | None]], connection: Any) -> list[Any]:
    """The values of ``log``'s row prepared as save() prepares them (JSON adapters, array
    items). For None and for the plain value of a plain field (a str for a CharField, an aware
    datetime, a UUID) that is the value itself, so the field is not asked."""
    params = []
    for field, plain_type in fields:
        value = getattr(log, field.attname)
        if value is not None and (
            type(value) is not plain_type
            or (plain_type is datetime and isinstance(value, datetime) and value.tzinfo is None)
        ):
            value = field.get_db_prep_save(value, connection)
        params.append(value)
    return params


def insert_logs(logs: Sequence[Any], using: str) -> None:
    """Write new ``MailLog`` rows, ``BATCH_SIZE`` rows per INSERT statement.

    As ``insert_log``: when anything watches the model's saves, each row is saved by the ORM.
    """
    from django.db import connections
    from django.db.models.signals import post_save, pre_save

    if not logs:
        return
    model: type[Model] = type(logs[0])
    if pre_save.has_listeners(model) or post_save.has_listeners(model):
        for log in logs:
            log.save(force_insert=True, using=using)
        return
    connection = connections[using]
    query, fields = _insert_statement(model, using)
    head, row = query.split(" VALUES ", 1)
    size = max(int(mail_settings.BATCH_SIZE), 1)
    with connection.cursor() as cursor:
        for start in range(0, len(logs), size):
            chunk = logs[start : start + size]
            params: list[Any] = []
            for log in chunk:
                params += _row_params(log, fields, connection)
            cursor.execute(f"{head} VALUES {', '.join([row] * len(chunk))}", params)
    for log in logs:
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
            delivery.deliver_many(in_process)


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
    pending: _Pending | None = None
    # The callback registered earlier in this transaction, if it is still registered (a
    # rollback drops it, and then a new one is needed).
    for entry in reversed(getattr(conn, "run_on_commit", ())):
        callback = entry[1] if isinstance(entry, tuple) and len(entry) > 1 else None
        if isinstance(callback, _Pending) and not callback.ran:
            pending = callback
            break
    fresh = pending is None
    if pending is None:
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
        delivery.deliver(log_id)


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
                # Celery takes any sequence of arguments; celery-types asks for a tuple.
                tasks.send_mail.apply_async(args=chunk, **options)  # type: ignore[arg-type]
            else:
                tasks.send_many.apply_async(args=[chunk], **options)  # type: ignore[arg-type]
        except Exception:
            logger.exception(
                "better_mail: could not publish mail(s) %s to Celery; they stay queued until "
                "send_due() (manage.py better_mail send-due) sends them.",
                ", ".join(chunk),
            )


# Cancelling -----------------------------------------------------------------------------------


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
