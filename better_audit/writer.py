"""The write pipeline: changes -> entries -> enrichment -> hooks -> better_audit_write() (or
Celery).

Every Python capture path and ``capture_log`` end in ``record()``, which for one table and
operation:

1. checks each record id (``ON_MISSING_RECORD_ID``) and keeps only the images the operation has
   (an INSERT has no before, a DELETE no after); an UPDATE with both gets its diff;
2. reads the audit context once (actor resolved now, at write time) and merges it under the
   per-call values: per-call wins over context, context over enrichment rules;
3. applies the enrichment rules (redaction, then description, then label/severity/compliance/
   notify filling the gaps) and runs the BEFORE_LOG hooks;
4. writes the entries in batches of ``BATCH_SIZE`` through the owner's ``better_audit_write()``
   on the connection of the change, so they commit or roll back with it; the function stamps
   their time from the database clock and refuses a tenant other than the one in scope. Then the
   AFTER_LOG hooks run. With ``ASYNC_WRITE`` the entries go to a Celery task once the
   transaction commits instead.

The capture paths whose entries the database writes (``capture``, ``better_audit.trail``) take
the fields of step 2 and the enrichment of step 3 from ``fold_plan()``, which runs the same code
on a template entry and gives the context each statement carries. ``fold_blocked()`` says when
Python must see each entry, and so the path through ``record()`` is taken.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any

from django.db import connections, router, transaction
from django.db.models import Model
from django.utils import timezone

from better_audit import enrichment, hooks, tables, trail
from better_audit.context import get_audit_context
from better_audit.exceptions import AuditConfigurationError, EnrichmentConflict, MissingRecordId
from better_tenant.shortcuts import current_tenant_id, tenancy_installed

logger = logging.getLogger("better_audit")


@dataclass(slots=True)
class AuditEntry:
    """One audit row before it is written; BEFORE_LOG hooks may change any field."""

    id: uuid.UUID
    timestamp: datetime.datetime
    table_name: str
    operation: str
    record_id: str
    actor_id: str | None = None
    before_data: dict[str, Any] | None = None
    after_data: dict[str, Any] | None = None
    diff: dict[str, Any] | None = None
    label: str | None = None
    description: str | None = None
    severity: str | None = None
    compliance: list[str] = field(default_factory=list)
    notify: bool | None = None
    reason: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    redacted_fields: list[str] = field(default_factory=list)
    correlation_id: str | None = None
    tenant_id: Any = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form (the Celery message of ``ASYNC_WRITE``)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["id"] = str(self.id)
        data["timestamp"] = self.timestamp.isoformat()
        data["tenant_id"] = None if self.tenant_id is None else str(self.tenant_id)
        return json.loads(_dumps(data))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEntry:
        values = dict(data)
        values["id"] = uuid.UUID(values["id"])
        values["timestamp"] = datetime.datetime.fromisoformat(values["timestamp"])
        return cls(**values)

    def snapshot(self) -> Any:
        """A read-only deep copy, as AFTER_LOG hooks receive it."""
        return AuditEntrySnapshot(
            **{f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}
        )


AuditEntrySnapshot = make_dataclass(
    "AuditEntrySnapshot",
    [(f.name, f.type) for f in fields(AuditEntry)],
    frozen=True,
)
AuditEntrySnapshot.__module__ = __name__
AuditEntrySnapshot.__doc__ = "A written audit entry, read-only (what AFTER_LOG hooks receive)."


@dataclass(frozen=True, slots=True)
class Change:
    """One changed row as a capture path saw it."""

    record_id: str | None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    tenant_id: Any = None


@dataclass(frozen=True)
class CallOptions:
    """Per-call values (``capture_log`` arguments); None means not given."""

    actor_id: str | None = None
    label: str | None = None
    description: str | None = None
    severity: str | None = None
    compliance: tuple[str, ...] | None = None
    notify: bool | None = None
    reason: str | None = None
    metadata: dict[str, Any] | None = None
    correlation_id: str | None = None


NO_OPTIONS = CallOptions()


def _default(value: Any) -> Any:
    return tables.json_value(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_default, separators=(",", ":"))


# --- the pipeline -------------------------------------------------------------------------------


def record(
    table: str,
    operation: str,
    changes: Iterable[Change],
    *,
    using: str,
    options: CallOptions = NO_OPTIONS,
    async_write: bool | None = None,
) -> list[AuditEntry]:
    """Build, enrich, hook and write the entries of ``changes`` (see the module docstring)."""
    changes = list(changes)
    if not changes:
        return []
    config = tables.CONFIG
    resolved, common, compliance, metadata = _common_fields(table, operation, options)
    default_tenant = _UNSET
    before_hooks = hooks.before_hooks()
    now = timezone.now()
    entries = []
    for change in changes:
        record_id = change.record_id
        if record_id is None or record_id == "":
            if not _missing_record_id(table, operation, config.on_missing_record_id):
                continue
            record_id = ""
        before = None if operation == "INSERT" else change.before
        after = None if operation == "DELETE" else change.after
        diff = None
        if operation == "UPDATE" and before is not None and after is not None:
            diff = {"changed_fields": tables.changed_fields(before, after)}
        tenant_id = change.tenant_id
        if isinstance(tenant_id, str):
            tenant_id = uuid.UUID(tenant_id)
        elif tenant_id is None:
            if default_tenant is _UNSET:
                default_tenant = current_tenant_id()
            tenant_id = default_tenant
        entry = AuditEntry(
            id=uuid.uuid4(),
            timestamp=now,
            table_name=table,
            operation=operation,
            record_id=str(record_id),
            before_data=before,
            after_data=after,
            diff=diff,
            tenant_id=tenant_id,
            compliance=list(compliance),
            metadata=dict(metadata),
            **common,
        )
        enrichment.apply(entry, resolved)
        if before_hooks and not _run_before_hooks(before_hooks, entry):
            continue
        entries.append(entry)
    if not entries:
        return entries
    if config.async_write if async_write is None else async_write:
        _send_after_commit(entries, using)
    else:
        insert(entries, using)
        run_after_hooks(entries)
    return entries


_UNSET = object()


def _common_fields(
    table: str, operation: str, options: CallOptions
) -> tuple[enrichment.Resolved, dict[str, Any], tuple[str, ...], dict[str, Any]]:
    """What every entry of one ``record()`` call shares: the matching rules, the scalar fields
    (per-call values over the context; the actor resolved now), the compliance tags and metadata.
    """
    resolved = enrichment.registry.resolve(table, operation)
    context = get_audit_context()
    actor_id = options.actor_id
    if actor_id is None and context is not None:
        actor_id = context.resolve_actor_id()
    if context is not None:
        label = _first(options.label, context.label)
        description = _first(options.description, context.description)
        reason = _first(options.reason, context.reason)
        correlation_id = _first(options.correlation_id, context.correlation_id)
        compliance = options.compliance if options.compliance is not None else context.compliance
        metadata = {**context.metadata, **(options.metadata or {})}
    else:
        label, description, reason = options.label, options.description, options.reason
        correlation_id, compliance = options.correlation_id, options.compliance or ()
        metadata = dict(options.metadata or {})
    common = {
        "actor_id": actor_id,
        "label": label,
        "description": description,
        "severity": options.severity,
        "notify": options.notify,
        "reason": reason,
        "correlation_id": correlation_id,
    }
    return resolved, common, tuple(compliance), metadata


@dataclass(frozen=True, slots=True)
class FoldPlan:
    """What an ORM statement carries to the capture triggers (``trail.CARRIER``): its value."""

    value: str


def fold_blocked(table: str, operation: str) -> bool:
    """True when Python must see the entries of this event, so it writes them itself.

    That is the case with BEFORE_LOG or AFTER_LOG hooks, with ASYNC_WRITE, and when a description
    function of the enrichment rules has to run on the entry.
    """
    if tables.CONFIG.async_write or hooks.before_hooks() or hooks.after_hooks():
        return True
    if enrichment.registry.resolve(table, operation).description is None:
        return False
    context = get_audit_context()
    return context is None or context.description is None


def fold_plan(
    table: str, operations: tuple[str, ...], *, with_before: bool = True
) -> FoldPlan | None:
    """The context an ORM statement on ``table`` carries to the capture triggers, or None when
    ``fold_blocked`` for one of ``operations``: then the caller takes the path through
    ``record()``.

    Per operation, the fields ``record()`` gives every entry, computed by the same code; what
    depends on the row (record id, images, diff, redaction, tenant, time) the trigger computes.
    ``with_before``: updates and deletes keep their before-images.
    """
    if any(fold_blocked(table, operation) for operation in operations):
        return None
    carried = {}
    for operation in operations:
        resolved, common, compliance, metadata = _common_fields(table, operation, NO_OPTIONS)
        carried[operation] = statement_fields(
            table, operation, resolved, common, compliance, metadata, with_before
        )
    return FoldPlan(trail.carried(table, carried))


def statement_fields(
    table: str,
    operation: str,
    resolved: enrichment.Resolved,
    common: Mapping[str, Any],
    compliance: Iterable[str],
    metadata: Mapping[str, Any],
    with_before: bool = True,
) -> dict[str, Any]:
    """The carried fields of one event (short keys; absent when empty), as ``record()`` would
    fill them, enrichment applied on a template entry."""
    template = AuditEntry(
        id=uuid.UUID(int=0),
        timestamp=_EPOCH,
        table_name=table,
        operation=operation,
        record_id="",
        compliance=list(compliance),
        metadata=dict(metadata),
        **common,
    )
    enrichment.apply(template, resolved)
    fields: dict[str, Any] = {
        "a": template.actor_id,
        "l": template.label,
        "d": template.description,
        "s": template.severity,
        "c": list(template.compliance) or None,
        "n": template.notify,
        "r": template.reason,
        "m": template.metadata or None,
        "k": template.correlation_id,
    }
    if resolved.redact:
        fields["x"] = list(resolved.redact)
    elif resolved.include:
        fields["i"] = list(resolved.include)
    if not with_before:
        fields["b"] = False
    elif operation != "INSERT":
        # Set-wise changes above the limit keep no before-images (nor, for updates, a diff).
        fields["lim"] = tables.CONFIG.max_before_state_rows
    return {key: value for key, value in fields.items() if value is not None}


def installed_fields(table: str) -> dict[str, dict[str, Any]]:
    """Per operation, what the enrichment rules alone give a change no statement described
    (raw SQL, another service): installed with the triggers, so redaction applies to it too."""
    fields: dict[str, dict[str, Any]] = {}
    for operation in trail.OPERATIONS:
        try:
            # A description function needs the entry in Python: it runs on the ORM's paths only.
            resolved = dataclasses.replace(
                enrichment.registry.resolve(table, operation), description=None
            )
        except EnrichmentConflict:
            fields[operation] = {}  # refused where it is used: record() and fold_plan() raise
            continue
        common = dict.fromkeys(_COMMON_FIELDS)
        fields[operation] = statement_fields(table, operation, resolved, common, (), {})
    return fields


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
# The scalar fields every entry of one event shares (``_common_fields``).
_COMMON_FIELDS = (
    "actor_id",
    "label",
    "description",
    "severity",
    "notify",
    "reason",
    "correlation_id",
)


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


def _missing_record_id(table: str, operation: str, policy: str) -> bool:
    """Apply ON_MISSING_RECORD_ID; True when the entry is still written (with an empty id)."""
    if policy == "throw":
        raise MissingRecordId(
            f"An audit entry for {operation} on {table!r} has no record id. Pass record_id, or "
            "include the primary key in the data (BETTER_AUDIT['PRIMARY_KEY'] names it), or set "
            "ON_MISSING_RECORD_ID to 'warn' or 'skip'."
        )
    if policy == "skip":
        return False
    logger.warning(
        "An audit entry for %s on %r has no record id and is written with an empty one. Set "
        "BETTER_AUDIT['PRIMARY_KEY'] to the key column, or ON_MISSING_RECORD_ID to 'skip'/'throw'.",
        operation,
        table,
    )
    return True


def _run_before_hooks(before_hooks: tuple[Any, ...], entry: AuditEntry) -> bool:
    for hook in before_hooks:
        try:
            hook(entry)
        except Exception as exc:
            hooks.report_error(exc, entry)
            return False
    return True


def run_after_hooks(entries: list[AuditEntry]) -> None:
    after_hooks = hooks.after_hooks()
    if not after_hooks:
        return
    for entry in entries:
        snapshot = entry.snapshot()
        for hook in after_hooks:
            try:
                hook(snapshot)
            except Exception as exc:
                hooks.report_error(exc, entry)


# --- writing ------------------------------------------------------------------------------------


def insert(entries: list[AuditEntry], using: str, *, idempotent: bool = False) -> int:
    """INSERT the entries in batches on ``using`` (atomically when there is more than one).

    Returns the number of rows written (with ``idempotent``, ids already present are skipped).
    """
    size = tables.CONFIG.batch_size
    batches = [entries[i : i + size] for i in range(0, len(entries), size)]
    if len(batches) > 1 and not connections[using].in_atomic_block:
        with transaction.atomic(using=using):
            return _insert_batches(batches, using, idempotent)
    return _insert_batches(batches, using, idempotent)


def _insert_batches(batches: list[list[AuditEntry]], using: str, idempotent: bool) -> int:
    """Write each batch through ``better_audit_write()``, which stamps the time of the entries."""
    written = 0
    with connections[using].cursor() as cursor:
        for batch in batches:
            payload = _dumps([_stored_form(entry) for entry in batch])
            cursor.execute(
                f"SELECT written, stamped FROM {trail.WRITE_FUNCTION}(%s::jsonb, %s)",
                [payload, idempotent],
            )
            count, stamped = cursor.fetchone()
            for entry in batch:
                entry.timestamp = stamped
            written += count
    return written


def _stored_form(entry: AuditEntry) -> dict[str, Any]:
    """The entry as ``better_audit_write()`` takes it (empty metadata is stored as NULL)."""
    data = entry.as_dict()
    data["metadata"] = data["metadata"] or None
    return data


def insert_as_system(entries: list[AuditEntry], using: str) -> int:
    """INSERT entries of any tenant: in system mode when better_tenant is installed (the worker)."""
    if tenancy_installed():
        from better_tenant.context import run_as_system

        with run_as_system(using=using):
            return insert(entries, using, idempotent=True)
    with transaction.atomic(using=using):
        return insert(entries, using, idempotent=True)


def _send_after_commit(entries: list[AuditEntry], using: str) -> None:
    payload = [entry.as_dict() for entry in entries]
    transaction.on_commit(functools.partial(_send, payload, entries, using), using=using)


def _send(payload: list[dict[str, Any]], entries: list[AuditEntry], using: str) -> None:
    try:
        from better_audit.tasks import write_entries
    except ImportError as exc:
        error: BaseException = AuditConfigurationError(
            f"BETTER_AUDIT['ASYNC_WRITE'] needs Celery ({exc}). Install better-django[celery] or "
            "turn ASYNC_WRITE off."
        )
    else:
        try:
            # Celery takes any sequence of arguments; celery-types asks for a tuple.
            write_entries.apply_async(args=[payload, using])  # type: ignore[arg-type]
            return
        except Exception as exc:
            error = exc
    for entry in entries:
        hooks.report_error(error, entry)


# --- manual entries -----------------------------------------------------------------------------


def capture_log(
    table_name: str,
    operation: str,
    record_id: Any = None,
    *,
    before: Mapping[str, Any] | Model | None = None,
    after: Mapping[str, Any] | Model | None = None,
    actor_id: Any = None,
    label: str | None = None,
    description: str | None = None,
    severity: str | None = None,
    compliance: Iterable[str] | str | None = None,
    notify: bool | None = None,
    reason: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    correlation_id: str | None = None,
    async_write: bool | None = None,
    using: str | None = None,
) -> AuditEntry | None:
    """Record one change by hand, e.g. one made with raw SQL, through the same pipeline.

    ``table_name`` is an SQL table name or ``"app_label.Model"``; tables not in
    ``BETTER_AUDIT["TABLES"]`` are skipped (None is returned), as automatic capture skips them.
    ``operation`` is INSERT, UPDATE or DELETE. ``record_id`` is required unless the data holds the
    primary key (``PRIMARY_KEY``) or ``ON_MISSING_RECORD_ID`` allows an entry without one.
    ``before``/``after`` are dicts (or model instances): an INSERT keeps only ``after``, a DELETE
    only ``before``, an UPDATE both, with the changed fields as its diff. Per-call values win over
    the audit context and the enrichment rules. ``async_write`` overrides ``ASYNC_WRITE``. Returns
    the entry, or None when it was skipped or a BEFORE_LOG hook aborted it.
    """
    if not isinstance(table_name, str) or not table_name:
        raise ValueError(f"table_name must be a non-empty table name; got {table_name!r}.")
    op = enrichment.normalize_operation(operation, wildcard=False)
    table = tables.resolve_table_name(table_name)
    if not tables.is_audited(table):
        return None
    if severity is not None and severity not in enrichment.SEVERITIES:
        raise ValueError(
            f"severity must be one of {', '.join(enrichment.SEVERITIES)}; got {severity!r}."
        )
    using = using or router.db_for_write(_audit_model()) or "default"
    before_data = _data(before, "before", using)
    after_data = _data(after, "after", using)
    if op == "INSERT":
        before_data = None
    elif op == "DELETE":
        after_data = None
    if record_id is None or record_id == "":
        key = tables.CONFIG.primary_key
        for data in (after_data, before_data):
            if data and data.get(key) not in (None, ""):
                record_id = data[key]
                break
    if isinstance(record_id, Model):
        record_id = record_id.pk
    specs = tables.TABLES.get(table)
    tenant_id = None
    if specs:
        tenant_id = specs[0].tenant_of(after_data) or specs[0].tenant_of(before_data)
    options = CallOptions(
        actor_id=None if actor_id is None else str(actor_id),
        label=label,
        description=description,
        severity=severity,
        compliance=None if compliance is None else enrichment._tags("compliance", compliance),
        notify=notify,
        reason=reason,
        metadata=None if metadata is None else dict(metadata),
        correlation_id=correlation_id,
    )
    change = Change(
        record_id=None if record_id in (None, "") else str(record_id),
        before=before_data,
        after=after_data,
        tenant_id=tenant_id,
    )
    entries = record(table, op, [change], using=using, options=options, async_write=async_write)
    return entries[0] if entries else None


def _audit_model() -> type[Model]:
    from better_audit.models import AuditLog

    return AuditLog


def _data(value: Any, name: str, using: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, Model):
        spec = tables.QUERY_SPECS.get(type(value))
        row = spec.instance_row(value, using) if spec is not None else None
        if row is None:
            row = {
                f.column: tables.json_value(getattr(value, f.attname))
                for f in value._meta.concrete_fields
                if f.column is not None  # always: a concrete field is one with a column
            }
        return row
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict of column values or a model instance.")
    return tables.json_value(dict(value))
