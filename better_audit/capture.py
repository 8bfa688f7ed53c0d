"""Automatic capture from the ORM: what each write path carries to the database, or writes.

The database records every change of an audited table (``better_audit.trail``): a statement
trigger per operation writes one entry per row, whoever made the change. What the ORM adds is what
the database cannot know. Where nothing in Python needs to see the entries (no BEFORE_LOG or
AFTER_LOG hook, no ASYNC_WRITE, no enrichment description function to run:
``writer.fold_blocked``), each statement Django issues carries that context to the trigger in the
statement itself (``trail.CARRIER``): the actor and the fields of the audit context, and the
enrichment rules' label, severity, compliance, notify and redaction, computed by the code
``writer.record()`` uses (``writer.fold_plan``). The trigger computes the rest from the rows: time,
tenant, images, changed fields, record id. The statement is atomic by itself, so a save needs no
transaction around it.

Otherwise each change takes the path through ``writer.record()``: Python builds the entries,
runs the hooks and writes them through ``better_audit_write()``, in a transaction that claims the
table (``_claimed``) so that its trigger does not write them twice; a save is then wrapped in
that transaction. The paths are those of the ORM's writes:

- single rows (``Model.save``): ``Model._do_insert`` runs ``INSERT .. RETURNING <what Django
  asked for>, <carrier>``, ``Model._do_update`` Django's UPDATE with the carrier in its WHERE
  (Django 6.0+ also has it return the columns it asks for). On the
  other path a ``post_save`` receiver writes the entry, the after-image built from the saved
  instance (``tables`` renders it exactly as ``to_jsonb`` would), the before-image returned by the
  UPDATE, which reads the row as it was in the same statement (or, were ``_do_update`` not
  wrapped, by a ``pre_save`` receiver's ``SELECT .. FOR UPDATE``).
- ``QuerySet.update()`` (and so ``bulk_update()``, the SET_NULL/SET_DEFAULT updates of a cascade
  and related-manager ``remove()``/``clear()``): the UPDATE Django compiles, carried; on the other
  path (and for updates of multi-table parents) the rows are locked and read in one ``SELECT ..
  LIMIT MAX_BEFORE_STATE_ROWS + 1 FOR UPDATE``, then updated with ``RETURNING to_jsonb(t.*)``.
- deletes (``Model.delete()``, ``QuerySet.delete()``, cascades): Django's fast path is kept. Both
  statements Django issues, ``DeleteQuery.delete_batch`` for collected rows and
  ``QuerySet._raw_delete`` for fast-deleted querysets, are carried, or on the other path run as
  ``DELETE .. RETURNING`` so the before-images come from the delete itself. No delete signal
  receiver is connected: one would make Django fetch every row before deleting it.
- ``bulk_create()``: each INSERT Django issues (``QuerySet._insert``) is carried, its ON CONFLICT
  clause included (the database then records each row as the INSERT or UPDATE it turned out to
  be). On the other path the after-images come from the created objects; with
  ``ignore_conflicts`` only rows that were really inserted are logged, with ``update_conflicts``
  each row as the INSERT or UPDATE it was.

Raw SQL (``cursor.execute``, ``Manager.raw``, ``COPY``), other connections and other programs
carry nothing: the trigger records their changes with the database's view of who made them.
Before-images above ``MAX_BEFORE_STATE_ROWS`` rows of one statement are left out on both paths.

Unaudited models pay one dict lookup per call of each wrapped method.

Every method above is a Django internal. ``better_audit.seams`` lists, per Django release capture
was verified on, the parameters of each one it wraps or calls; ``install()`` wraps only methods
that match, and the system check ``better_audit.E012`` fails on any other release or method.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterable, Iterator
from typing import Any, cast

from django.core.exceptions import EmptyResultSet
from django.db import connections, models, router, transaction
from django.db.models import Q, QuerySet, TextField
from django.db.models.expressions import RawSQL
from django.db.models.fields.related import RelatedField
from django.db.models.signals import post_save, pre_save
from django.db.models.sql import DeleteQuery, InsertQuery, UpdateQuery
from django.db.models.sql.constants import GET_ITERATOR_CHUNK_SIZE, NO_RESULTS
from django.db.models.sql.where import AND, ExtraWhere

from better_audit import seams, sql, tables, trail, writer
from better_audit.writer import Change, record

logger = logging.getLogger("better_audit")
STASH_KEY = "_better_audit_images"
# The claims open on a connection (``_claimed``).
CLAIMS_KEY = "_better_audit_claims"
# Set on an instance while each statement of its save() carries its context to the trigger.
FOLD_KEY = "_better_audit_fold"
# Marks a table of the stash whose audit row the trigger of the statement itself wrote.
FOLDED = object()
# (spec, plan) while a bulk_create() folds its audit rows into its INSERTs.
_BULK_FOLD: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar(
    "better_audit_bulk_fold", default=None
)
# Primary keys per ``= ANY(%s)`` array parameter.
CHUNK = 5000

_originals: dict[str, Any] = {}
_connected: list[type[models.Model]] = []
# True once Model._do_update is wrapped, i.e. the before-state is read by the UPDATE itself.
_FOLDED_UPDATE = False
# True once Model._do_insert is wrapped, so an INSERT can carry its audit row.
_FOLDED_INSERT = False
# --- single rows: save signals ----------------------------------------------------------------


def pre_save_receiver(
    sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any
) -> None:
    """Read the before-state of an update, unless ``_do_update`` reads it with the UPDATE."""
    if _FOLDED_UPDATE:
        return
    specs = tables.SAVE_SPECS.get(sender)
    if not specs or instance._state.adding:
        return
    stash = instance.__dict__.setdefault(STASH_KEY, {})
    for spec in specs:
        if not spec.skip_before:
            stash[spec.table] = (
                _read_before(spec, instance.__dict__.get(spec.pk_attname), using),
                None,
            )


def _read_before(spec: tables.AuditedTable, pk: Any, using: str) -> dict[str, Any] | None:
    if pk is None:
        return None
    with connections[using].cursor() as cursor:
        cursor.execute(spec.select_one_sql, [spec.prep_pk(pk, using)])
        row = cursor.fetchone()
    return tables.load_image(row[0]) if row else None


def _do_update(
    self: models.Model,
    base_qs: QuerySet,
    using: str,
    pk_val: Any,
    values: list[tuple],
    update_fields: Iterable[str] | None,
    forced_update: bool,
    *returning: Any,
) -> Any:
    """Django's UPDATE of one row, run together with the read of its before-state.

    ``WITH b AS (SELECT .. FOR UPDATE) UPDATE t SET .. FROM b WHERE t.pk = b.pk RETURNING
    b.image, to_jsonb(t.*)``: one statement locks the row, returns it as it was and as it is.
    ``returning`` is Django 6.0+'s ``returning_fields`` (``seams.Seams.update_returns_rows``): the
    columns the UPDATE must also return, answered as rows instead of a bool.
    """
    original = _originals["_do_update"]
    specs = tables.SAVE_SPECS.get(self.__class__)
    spec = tables.QUERY_SPECS.get(base_qs.model) if specs else None
    if not specs or spec is None or spec not in specs or not _FOLDED_UPDATE:
        return original(
            self, base_qs, using, pk_val, values, update_fields, forced_update, *returning
        )
    values = list(values)
    args = (self, base_qs, using, pk_val, values, update_fields, forced_update, *returning)
    stash = self.__dict__.setdefault(STASH_KEY, {})
    if not values:
        return original(*args)  # no UPDATE statement at all
    wanted = list(returning[0] or ()) if returning else []
    folding = FOLD_KEY in self.__dict__ and not base_qs.query.where
    plan = _plan(spec, "UPDATE") if folding else None
    if plan is not None:
        statement, params = _update_sql(base_qs.model, values, using)
        rows = _folded_update(spec, statement, params, pk_val, using, plan, stash, wanted)
        return _update_result(base_qs.model, wanted, rows, using, returning)
    if spec.skip_before:
        return original(*args)  # no before-state wanted
    if base_qs.query.where or (self._meta.select_on_save and not forced_update):
        # A filtered base manager, or Django's own existence checks first: read, then update.
        stash[spec.table] = (_read_before(spec, pk_val, using), None)
        return original(*args)
    statement, params = _update_sql(base_qs.model, values, using)
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"WITH b AS (SELECT {spec.qtable}.{spec.qpk} AS k, {spec.image_sql} AS image "
            f"FROM {spec.qtable} WHERE {spec.qtable}.{spec.qpk} = %s FOR UPDATE) "
            f"{statement} FROM b WHERE {spec.qtable}.{spec.qpk} = b.k "
            f"RETURNING b.image, {spec.image_sql}{_returned_columns(spec, wanted)}",
            [spec.prep_pk(pk_val, using), *params],
        )
        row = cursor.fetchone()
    if row is not None:
        stash[spec.table] = (tables.load_image(row[0]), tables.load_image(row[1]))
    rows = [] if row is None else [tuple(row[2:])]
    return _update_result(base_qs.model, wanted, rows, using, returning)


def _returned_columns(spec: tables.AuditedTable, fields: list[Any]) -> str:
    """``, t.col AS r0, ..``: the columns Django asked an UPDATE to return, under aliases."""
    return "".join(f", {spec.qtable}.{sql.qn(f.column)} AS r{n}" for n, f in enumerate(fields))


def _update_result(
    model: type[models.Model], fields: list[Any], rows: list[tuple], using: str, returning: tuple
) -> Any:
    """What ``_do_update`` answers: a bool before Django 6.0, then the rows it returned.

    The returned values go through the fields' converters, as Django's own
    ``execute_returning_sql`` does; a row updated with nothing to return is ``()``.
    """
    if not returning:
        return bool(rows)
    if fields and rows:
        compiler = UpdateQuery(model).get_compiler(using)
        converters = compiler.get_converters([f.get_col(model._meta.db_table) for f in fields])
        if converters:
            rows = compiler.apply_converters(rows, converters)
    return [tuple(row) for row in rows]


def _plan(spec: tables.AuditedTable, *operations: str) -> writer.FoldPlan | None:
    """What a statement on ``spec``'s table carries to its triggers (None: Python writes)."""
    if not _foldable_key(spec):
        return None
    return writer.fold_plan(spec.table, operations, with_before=not spec.skip_before)


def _update_sql(model: type[models.Model], values: list[tuple], using: str) -> tuple[str, Any]:
    """``UPDATE t SET ..`` of ``values`` (field, model, value triples), without a WHERE."""
    query = UpdateQuery(model)
    query.add_update_fields(values)
    return query.get_compiler(using).as_sql()


def _folded_update(
    spec: tables.AuditedTable,
    statement: str,
    params: Any,
    pk_val: Any,
    using: str,
    plan: writer.FoldPlan,
    stash: dict[str, Any],
    wanted: list[Any],
) -> list[tuple]:
    """Django's UPDATE of one row, carrying its context to the capture trigger; the row's
    ``wanted`` columns: one row (empty when nothing is wanted), or none if the row is gone."""
    pk = f"{spec.qtable}.{spec.qpk}"
    folded = f"{statement} WHERE {pk} = %s AND {trail.CARRIER}"
    if wanted:
        folded += " RETURNING " + _returned_columns(spec, wanted)[2:]
    with connections[using].cursor() as cursor:
        cursor.execute(folded, [*params, spec.prep_pk(pk_val, using), plan.value])
        rows = [tuple(row) for row in cursor.fetchall()] if wanted else [()] * cursor.rowcount
    if rows:
        stash[spec.table] = FOLDED
    return rows


def _folded_insert(
    query: InsertQuery,
    spec: tables.AuditedTable,
    plan: writer.FoldPlan,
    using: str,
    returning_fields: list[Any] | None,
) -> list[tuple]:
    """Run ``query`` (an INSERT of one or many rows) carrying its context to the triggers.

    ``INSERT .. RETURNING <the columns Django asked for>, <carrier>``: Django's compiler runs it
    and converts the returned values as for its own ``INSERT .. RETURNING``; the carrier's column
    is dropped from the rows it answers.
    """
    compiler = query.get_compiler(using=using)
    compile_insert = compiler.as_sql

    def as_sql() -> list[tuple[str, tuple]]:
        wanted = compiler.returning_fields
        compiler.returning_fields = None  # the plain INSERT; this statement returns the rows
        try:
            [(statement, params)] = compile_insert()
        finally:
            compiler.returning_fields = wanted
        t = spec.qtable
        returned = "".join(f"{t}.{sql.qn(f.column)}, " for f in wanted or ())
        folded = f"{statement} RETURNING {returned}{trail.CARRIED_VALUE}"
        return [(folded, (*params, plan.value))]

    compiler.as_sql = as_sql
    rows = compiler.execute_sql(returning_fields)
    return [tuple(row)[:-1] for row in rows] if rows else rows


def _do_insert(
    self: models.Model,
    manager: models.Manager,
    using: str,
    fields: list[Any],
    returning_fields: list[Any] | None,
    raw: bool,
) -> list[tuple]:
    """Django's INSERT of one row, with the audit row inserted by the same statement."""
    original = _originals["_do_insert"]
    spec = tables.QUERY_SPECS.get(manager.model) if FOLD_KEY in self.__dict__ else None
    plan = _plan(spec, "INSERT") if spec is not None else None
    if spec is None or plan is None:
        return original(self, manager, using, fields, returning_fields, raw)
    query = InsertQuery(manager.model)
    query.insert_values(fields, [self], raw=raw)
    rows = _folded_insert(query, spec, plan, using, returning_fields)
    self.__dict__.setdefault(STASH_KEY, {})[spec.table] = FOLDED
    return rows


def post_save_receiver(
    sender: type[models.Model],
    instance: models.Model,
    created: bool,
    using: str,
    update_fields: Iterable[str] | None = None,
    **kwargs: Any,
) -> None:
    specs = tables.SAVE_SPECS.get(sender)
    if not specs:
        return
    values = instance.__dict__
    stash = values.pop(STASH_KEY, None) or {}
    for spec in specs:
        if stash.get(spec.table) is FOLDED:
            continue  # written by the statement of the change itself
        pk = values.get(spec.pk_attname)
        if created:
            after = spec.instance_row(instance, using) or _read_row(spec, pk, using)
            change = Change(str(pk), None, after, spec.tenant_of(after))
            record(spec.table, "INSERT", [change], using=using)
            continue
        before, after = stash.get(spec.table, (None, None))
        names = None if update_fields is None else spec.update_field_names(update_fields)
        if names == []:
            continue  # Django ran no UPDATE on this table (a multi-table parent).
        if after is None:
            after = spec.instance_row(instance, using, names)
            if after is not None and before is not None:
                # Columns the model does not know, or that update_fields left out, kept their
                # values: Django's UPDATE did not name them.
                after = {**before, **after}
            elif names is not None:
                after = None  # a partial image alone is not the row
        if after is None:
            after = _read_row(spec, pk, using)
        change = Change(str(pk), before, after, spec.tenant_of(after or before))
        record(spec.table, "UPDATE", [change], using=using)


def _read_row(spec: tables.AuditedTable, pk: Any, using: str) -> dict[str, Any] | None:
    with connections[using].cursor() as cursor:
        cursor.execute(spec.select_many_sql, [[spec.prep_pk(pk, using)]])
        row = cursor.fetchone()
    return tables.load_image(row[0]) if row else None


def _save_base(
    self: models.Model,
    raw: bool = False,
    force_insert: Any = False,
    force_update: bool = False,
    using: str | None = None,
    update_fields: Iterable[str] | None = None,
) -> None:
    original = _originals["save_base"]
    if self.__class__ not in tables.SAVE_SPECS:
        return original(self, raw, force_insert, force_update, using, update_fields)
    using = using or router.db_for_write(self.__class__, instance=self)
    try:
        if _can_fold(self.__class__, tables.SAVE_SPECS[self.__class__]):
            # Each statement's trigger writes its entry, so each is atomic by itself (and Django
            # wraps the saves of multi-table inheritance in a transaction of its own).
            self.__dict__[FOLD_KEY] = True
            return original(self, raw, force_insert, force_update, using, update_fields)
        # Inside a transaction this is free; outside it makes save + audit atomic.
        with _claimed([spec.table for spec in tables.SAVE_SPECS[self.__class__]], using):
            return original(self, raw, force_insert, force_update, using, update_fields)
    finally:
        self.__dict__.pop(STASH_KEY, None)
        self.__dict__.pop(FOLD_KEY, None)


# Primary key types whose ``::text`` in PostgreSQL is ``str()`` of the value in Python.
_FOLDABLE_KEYS = tables.INTEGER_TYPES | {"UUIDField", "CharField", "TextField", "SlugField"}


def _foldable_key(spec: tables.AuditedTable) -> bool:
    """Whether the audit row's record id may be the key's ``::text`` (Python writes ``str()``)."""
    pk = spec.pk_field
    target = pk.target_field if isinstance(pk, RelatedField) else pk
    return target.get_internal_type() in _FOLDABLE_KEYS


def _can_fold(model: type[models.Model], specs: tuple[tables.AuditedTable, ...]) -> bool:
    """Whether every audit row of a save of ``model`` can ride in the statement of its change.

    Not when the save might reach a statement that is not folded: Django's existence checks
    (``select_on_save``), a base manager that filters, a key whose text Python and PostgreSQL
    write differently (``_foldable_key``); nor when Python must see the entries
    (``writer.fold_blocked``).
    """
    if not _FOLDED_INSERT or not _FOLDED_UPDATE or model._meta.select_on_save:
        return False
    for spec in specs:
        if type(spec.model._base_manager) is not models.Manager or not _foldable_key(spec):
            return False
        if writer.fold_blocked(spec.table, "INSERT") or writer.fold_blocked(spec.table, "UPDATE"):
            return False
    return True


# --- shared SQL helpers ---------------------------------------------------------------------------


def _keys(spec: tables.AuditedTable, source: str) -> str:
    """``pk, tenant`` of a row of ``source`` (NULL for tables without a tenant)."""
    return f"{source}.{spec.qpk}, {spec.tenant_sql(source)}"


def _returning(spec: tables.AuditedTable, image: bool) -> str:
    """``pk, tenant, image`` of the rows a statement touches (image NULL when not wanted)."""
    return f"{_keys(spec, spec.qtable)}, " + (spec.image_sql if image else "NULL")


def _changes(rows: list[tuple], *, as_before: bool) -> list[Change]:
    changes = []
    for pk, tenant, image in rows:
        data = tables.load_image(image)
        if as_before:
            changes.append(Change(str(pk), data, None, tenant))
        else:
            changes.append(Change(str(pk), None, data, tenant))
    return changes


def _chunks(items: list[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# Row images by record id.
_Images = dict[str | None, dict[str, Any] | None]


def _read_images(spec: tables.AuditedTable, pks: list[Any], using: str) -> _Images:
    images: _Images = {}
    with connections[using].cursor() as cursor:
        for chunk in _chunks([spec.prep_pk(pk, using) for pk in pks]):
            cursor.execute(spec.select_many_sql, [chunk])
            for (text,) in cursor.fetchall():
                image = tables.load_image(text)
                images[spec.record_id(image)] = image
    return images


def _run_carried(query: Any, plan: writer.FoldPlan, using: str) -> int:
    """Run an UPDATE or DELETE query, carrying its context in its WHERE; the number of rows it
    changed."""
    query.where.add(ExtraWhere([trail.CARRIER], [plan.value]), AND)
    try:
        statement, params = query.get_compiler(using).as_sql()
    except EmptyResultSet:
        return 0
    if not statement:
        return 0
    with connections[using].cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.rowcount


@contextlib.contextmanager
def _claimed(names: Iterable[str], using: str) -> Iterator[None]:
    """A transaction in which the triggers leave ``names`` to Python (``trail.CLAIM_SETTING``).

    The claim is the union of the claims open on the connection, and is given back on exit.
    """
    connection = connections[using]
    claims: list[frozenset[str]] = connection.__dict__.setdefault(CLAIMS_KEY, [])
    with transaction.atomic(using=using, savepoint=False):
        claims.append(frozenset(names))
        try:
            _set_claim(claims, using)
            yield
        finally:
            claims.pop()
        _set_claim(claims, using)


def _set_claim(claims: list[frozenset[str]], using: str) -> None:
    names = sorted(set().union(*claims)) if claims else []
    value = "|" + "|".join(names) + "|" if names else ""
    with connections[using].cursor() as cursor:
        cursor.execute(trail.claim_sql(), [value])


def _atomic_if(wanted: bool, using: str) -> Any:
    return transaction.atomic(using=using, savepoint=False) if wanted else contextlib.nullcontext()


# --- deletes --------------------------------------------------------------------------------------


def _delete_batch(self: DeleteQuery, pk_list: list[Any], using: str) -> int:
    spec = tables.QUERY_SPECS.get(self.model) if self.model is not None else None
    if spec is None:
        return _originals["delete_batch"](self, pk_list, using)
    images = not spec.skip_before and len(pk_list) <= tables.CONFIG.max_before_state_rows
    statement = f"DELETE FROM {spec.qtable} WHERE {spec.qtable}.{spec.qpk} = ANY(%s)"
    keys = [spec.prep_pk(pk, using) for pk in pk_list]
    plan = _plan(spec, "DELETE")
    if plan is not None:
        folded = f"{statement} AND {trail.CARRIER}"
        deleted = 0
        # One statement per chunk is atomic by itself; several share a transaction.
        chunks = list(_chunks(keys))
        with _atomic_if(len(chunks) > 1, using), connections[using].cursor() as cursor:
            for chunk in chunks:
                cursor.execute(folded, [chunk, plan.value])
                deleted += cursor.rowcount
        return deleted
    statement = f"{statement} RETURNING {_returning(spec, images)}"
    rows: list[tuple] = []
    with _claimed([spec.table], using):
        with connections[using].cursor() as cursor:
            for chunk in _chunks(keys):
                cursor.execute(statement, [chunk])
                rows.extend(cursor.fetchall())
        record(spec.table, "DELETE", _changes(rows, as_before=True), using=using)
    return len(rows)


def _raw_delete(self: QuerySet, using: str) -> int:
    spec = tables.QUERY_SPECS.get(self.model)
    if spec is None:
        return _originals["_raw_delete"](self, using)
    query = self.query.clone()
    query.__class__ = DeleteQuery
    plan = _plan(spec, "DELETE")
    if plan is not None:
        return _run_carried(query, plan, using)
    try:
        statement, params = query.get_compiler(using).as_sql()
    except EmptyResultSet:
        return 0
    params = list(params)
    if spec.skip_before:
        statement = f"{statement} RETURNING {_returning(spec, False)}"
    else:
        # The row count decides whether images are kept, and is only known once the rows are
        # deleted: count them in the same statement, so no image crosses the wire above the limit.
        statement = (
            f"WITH d AS ({statement} RETURNING {spec.qtable}.*) SELECT {_keys(spec, 'd')}, "
            "CASE WHEN count(*) OVER () <= %s THEN to_jsonb(d.*) END FROM d"
        )
        params.append(tables.CONFIG.max_before_state_rows)
    with _claimed([spec.table], using):
        with connections[using].cursor() as cursor:
            cursor.execute(statement, params)
            rows = cursor.fetchall()
        record(spec.table, "DELETE", _changes(rows, as_before=True), using=using)
    return len(rows)


# --- updates --------------------------------------------------------------------------------------


def _update(self: QuerySet, **kwargs: Any) -> int:
    spec = tables.QUERY_SPECS.get(self.model)
    if spec is None or not kwargs or self.query.is_sliced or self.query.combinator:
        # Unaudited, or a call Django refuses: let Django answer it.
        return _originals["update"](self, **kwargs)
    # _for_write is private QuerySet state, absent from the stubs.
    self._for_write = True  # type: ignore[attr-defined]
    using = self.db
    plan = _plan(spec, "UPDATE")
    if plan is not None:
        updated = _folded_update_many(self, spec, kwargs, using, plan)
        if updated is not None:
            self._result_cache = None
            return updated
    with _claimed([spec.table], using):
        befores = {} if spec.skip_before else _lock_before_images(self, spec, using)
        rows = _run_update(_update_query(self, kwargs), spec, using)
        self._result_cache = None
        changes = [
            Change(change.record_id, befores.get(change.record_id), change.after, change.tenant_id)
            for change in _changes(rows, as_before=False)
        ]
        record(spec.table, "UPDATE", changes, using=using)
    return len(rows)


def _update_query(qs: QuerySet, kwargs: dict[str, Any]) -> UpdateQuery:
    """The UpdateQuery ``qs.update(**kwargs)`` compiles."""
    # chain(klass) returns the clone as an instance of klass; the stubs say Query.
    query = cast(UpdateQuery, qs.query.chain(UpdateQuery))
    query.add_update_values(kwargs)
    query.clear_select_clause()
    return query


def _folded_update_many(
    qs: QuerySet, spec: tables.AuditedTable, kwargs: dict[str, Any], using: str, plan: Any
) -> int | None:
    """``qs.update(**kwargs)`` as Django compiles it, carrying its context to the triggers; None
    when it cannot be (updates that also write multi-table parents take the other path)."""
    query = _update_query(qs, kwargs)
    # Set by UpdateQuery itself; the stubs declare only its methods.
    if query.related_updates:  # type: ignore[attr-defined]
        return None
    return _run_carried(query, plan, using)


def _lock_before_images(qs: QuerySet, spec: tables.AuditedTable, using: str) -> _Images:
    """Lock the rows ``qs`` matches and read their images, unless there are too many."""
    limit = tables.CONFIG.max_before_state_rows
    if limit <= 0:
        return {}
    inner = qs.order_by().values("pk")
    inner.query.select_for_update = False
    try:
        sub, params = inner.query.get_compiler(using).as_sql()
    except EmptyResultSet:
        return {}
    statement = (
        f"SELECT {spec.image_sql} FROM {spec.qtable} "
        f"WHERE {spec.qtable}.{spec.qpk} IN ({sub}) LIMIT %s FOR UPDATE"
    )
    with connections[using].cursor() as cursor:
        cursor.execute(statement, [*params, limit + 1])
        found = cursor.fetchall()
    if len(found) > limit:
        return {}
    images = (tables.load_image(text) for (text,) in found)
    return {spec.record_id(image): image for image in images}


def _run_update(query: UpdateQuery, spec: tables.AuditedTable, using: str) -> list[tuple]:
    """Run the UPDATE Django compiled, returning the after-images, then any parent updates."""
    compiler = query.get_compiler(using)
    try:
        statement, params = compiler.as_sql()
    except EmptyResultSet:
        return []
    rows: list[tuple] = []
    if statement:
        with connections[using].cursor() as cursor:
            cursor.execute(f"{statement} RETURNING {_returning(spec, True)}", params)
            rows = cursor.fetchall()
    for related in query.get_related_updates():
        related.get_compiler(using).execute_sql(NO_RESULTS)
    return rows


def _update_batch(self: UpdateQuery, pk_list: list[Any], values: dict, using: str) -> None:
    model = self.model
    spec = tables.QUERY_SPECS.get(model) if model is not None else None
    if model is None or spec is None:
        return _originals["update_batch"](self, pk_list, values, using)
    manager = model._base_manager.using(using)
    for start in range(0, len(pk_list), GET_ITERATOR_CHUNK_SIZE):
        manager.filter(pk__in=pk_list[start : start + GET_ITERATOR_CHUNK_SIZE]).update(**values)
    return None


# --- bulk_create --------------------------------------------------------------------------------


def _bulk_create(
    self: QuerySet,
    objs: Iterable[models.Model],
    batch_size: int | None = None,
    ignore_conflicts: bool = False,
    update_conflicts: bool = False,
    update_fields: list[str] | None = None,
    unique_fields: list[str] | None = None,
) -> list[models.Model]:
    original = _originals["bulk_create"]
    spec = tables.QUERY_SPECS.get(self.model)
    if spec is None:
        return original(
            self, objs, batch_size, ignore_conflicts, update_conflicts, update_fields, unique_fields
        )
    objs = list(objs)

    def create() -> list[models.Model]:
        return original(
            self, objs, batch_size, ignore_conflicts, update_conflicts, update_fields, unique_fields
        )

    if not objs:
        return create()
    # _for_write is private QuerySet state, absent from the stubs.
    self._for_write = True  # type: ignore[attr-defined]
    using = self.db
    plan = _plan(spec, "INSERT", "UPDATE") if update_conflicts else _plan(spec, "INSERT")
    if plan is not None:
        # Each INSERT Django issues carries the audit rows of its objects (QuerySet._insert).
        token = _BULK_FOLD.set((spec, plan))
        try:
            return create()
        finally:
            _BULK_FOLD.reset(token)
    with _claimed([spec.table], using):
        if update_conflicts and unique_fields:
            return _bulk_upsert(self, spec, objs, unique_fields, create, using)
        if ignore_conflicts:
            return _bulk_insert_ignoring(self, spec, objs, create, using)
        created = create()
        rows = [spec.instance_row(obj, using) for obj in created]
        unknown = [obj.pk for obj, row in zip(created, rows, strict=True) if row is None]
        if unknown:
            read = _read_images(spec, unknown, using)
            rows = [
                row if row is not None else read.get(str(obj.pk))
                for obj, row in zip(created, rows, strict=True)
            ]
        changes = [
            Change(str(obj.pk), None, row, spec.tenant_of(row))
            for obj, row in zip(created, rows, strict=True)
        ]
        record(spec.table, "INSERT", changes, using=using)
    return created


def _insert(
    self: QuerySet,
    objs: list[models.Model],
    fields: list[Any],
    returning_fields: list[Any] | None = None,
    raw: bool = False,
    using: str | None = None,
    on_conflict: Any = None,
    update_fields: list[Any] | None = None,
    unique_fields: list[Any] | None = None,
) -> list[tuple]:
    """The INSERTs of a ``bulk_create()`` that carry their audit rows (see ``_bulk_create``)."""
    folding = _BULK_FOLD.get()
    if folding is None or folding[0].model is not self.model:
        return _originals["_insert"](
            self,
            objs,
            fields,
            returning_fields,
            raw,
            using,
            on_conflict,
            update_fields,
            unique_fields,
        )
    spec, plan = folding
    # _for_write is private QuerySet state, absent from the stubs.
    self._for_write = True  # type: ignore[attr-defined]
    query = InsertQuery(
        self.model,
        on_conflict=on_conflict,
        update_fields=update_fields,
        unique_fields=unique_fields,
    )
    query.insert_values(fields, objs, raw=raw)
    return _folded_insert(query, spec, plan, using or self.db, returning_fields)


def _bulk_insert_ignoring(
    qs: QuerySet, spec: tables.AuditedTable, objs: list[models.Model], create: Any, using: str
) -> list[models.Model]:
    """Log only the rows ON CONFLICT DO NOTHING really inserted.

    Every object needs a known key for that: keys from a sequence are drawn up front. Keys that
    exist before the insert belong to rows the insert skipped.
    """
    # _prepare_for_bulk_create is private QuerySet API, absent from the stubs.
    qs._prepare_for_bulk_create(objs)  # type: ignore[attr-defined]
    pending = [obj for obj in objs if obj.pk is None]
    if pending:
        with connections[using].cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [spec.qtable, spec.pk_column, len(pending)],
            )
            keys = [key for (key,) in cursor.fetchall()]
        if keys and keys[0] is not None:
            for obj, key in zip(pending, keys, strict=True):
                obj.pk = key
        else:
            logger.warning(
                "bulk_create(ignore_conflicts=True) on %r: %d rows have no key before the insert "
                "and no key sequence, so the rows it inserts cannot be told apart from those it "
                "skips; they are not audited. Give the objects their keys, or record them with "
                "audit.capture_log().",
                spec.table,
                len(pending),
            )
    keys = [obj.pk for obj in objs if obj.pk is not None]
    existing: set[str] = set()
    with connections[using].cursor() as cursor:
        for chunk in _chunks([spec.prep_pk(pk, using) for pk in keys]):
            cursor.execute(
                f"SELECT {spec.qtable}.{spec.qpk} FROM {spec.qtable} "
                f"WHERE {spec.qtable}.{spec.qpk} = ANY(%s)",
                [chunk],
            )
            existing.update(str(pk) for (pk,) in cursor.fetchall())
    created = create()
    fresh = [pk for pk in keys if str(pk) not in existing]
    images = _read_images(spec, fresh, using) if fresh else {}
    changes = [
        Change(str(pk), None, images[str(pk)], spec.tenant_of(images[str(pk)]))
        for pk in fresh
        if str(pk) in images
    ]
    record(spec.table, "INSERT", changes, using=using)
    return created


def _bulk_upsert(
    qs: QuerySet,
    spec: tables.AuditedTable,
    objs: list[models.Model],
    unique_fields: list[str],
    create: Any,
    using: str,
) -> list[models.Model]:
    """Log each row of an upsert as the INSERT or UPDATE it was, with before-images of updates."""
    meta = qs.model._meta
    # _prepare_for_bulk_create is private QuerySet API, absent from the stubs.
    qs._prepare_for_bulk_create(objs)  # type: ignore[attr-defined]
    fields = [meta.get_field(meta.pk.name if name == "pk" else name) for name in unique_fields]

    def key(values: Iterable[Any]) -> tuple:
        return tuple(f.to_python(v) for f, v in zip(fields, values, strict=True))

    wanted = []
    for obj in objs:
        values = [getattr(obj, f.attname) for f in fields]
        if all(v is not None for v in values):
            wanted.append(values)
    limit = tables.CONFIG.max_before_state_rows
    with_images = not spec.skip_before and len(wanted) <= limit
    existing: dict[tuple, str] = {}  # unique key -> primary key of the existing row
    befores: dict[str, dict[str, Any] | None] = {}
    manager = qs.model._base_manager.using(using)
    attnames = [f.attname for f in fields]
    for chunk in _chunks(wanted, 500):
        condition = Q()
        for values in chunk:
            condition |= Q(**dict(zip(attnames, values, strict=True)))
        locked = manager.filter(condition).order_by().select_for_update()
        if with_images:
            image = RawSQL(spec.image_sql, (), output_field=TextField())
            found = locked.annotate(_audit_image=image).values_list("pk", *attnames, "_audit_image")
            for pk, *values, text in found:
                existing[key(values)] = str(pk)
                befores[str(pk)] = tables.load_image(text)
        else:
            for pk, *values in locked.values_list("pk", *attnames):
                existing[key(values)] = str(pk)
    created = create()
    targets = []
    for obj in objs:
        values = [getattr(obj, f.attname) for f in fields]
        found_pk = existing.get(key(values)) if all(v is not None for v in values) else None
        targets.append(found_pk if found_pk is not None else obj.pk)
    images = _read_images(spec, [pk for pk in targets if pk is not None], using)
    inserts, updates = [], []
    updated = set(existing.values())
    for pk in dict.fromkeys(str(pk) for pk in targets if pk is not None):
        after = images.get(pk)
        if after is None:
            continue
        if pk in updated:
            updates.append(Change(pk, befores.get(pk), after, spec.tenant_of(after)))
        else:
            inserts.append(Change(pk, None, after, spec.tenant_of(after)))
    record(spec.table, "INSERT", inserts, using=using)
    record(spec.table, "UPDATE", updates, using=using)
    return created


# --- installation -------------------------------------------------------------------------------


def install() -> None:
    """Wrap Django's write methods once (idempotent).

    Each wrapper is written for the methods of the Django releases in ``seams.VERIFIED``; a method
    whose parameters differ is left alone (a system check, ``better_audit.E012``, then reports
    it), and the single-row saves fold their audit rows only when both save methods are wrapped.
    """
    global _FOLDED_INSERT, _FOLDED_UPDATE
    if _originals:
        return
    targets: list[tuple[type, str, Any]] = [
        (models.Model, "Model.save_base", _save_base),
        (models.Model, "Model._do_update", _do_update),
        (models.Model, "Model._do_insert", _do_insert),
        (DeleteQuery, "DeleteQuery.delete_batch", _delete_batch),
        (QuerySet, "QuerySet._raw_delete", _raw_delete),
        (QuerySet, "QuerySet.update", _update),
        (UpdateQuery, "UpdateQuery.update_batch", _update_batch),
        (QuerySet, "QuerySet.bulk_create", _bulk_create),
        (QuerySet, "QuerySet._insert", _insert),
    ]
    for owner, qualified, wrapper in targets:
        if not seams.matches(qualified):
            logger.error(
                "better_audit: %s is not the method capture wraps; not wrapped.", qualified
            )
            continue
        name = qualified.split(".")[1]
        original = owner.__dict__[name]
        _originals[name] = original
        wrapper.__wrapped__ = original
        wrapper.__doc__ = original.__doc__
        for attribute in ("alters_data", "queryset_only"):
            if hasattr(original, attribute):
                setattr(wrapper, attribute, getattr(original, attribute))
        setattr(owner, name, wrapper)
    _FOLDED_UPDATE = "_do_update" in _originals
    _FOLDED_INSERT = "_do_insert" in _originals


def connect_signals() -> None:
    """Connect the save receivers to exactly the models of the current configuration."""
    for model in _connected:
        pre_save.disconnect(sender=model, dispatch_uid=_uid("pre", model))
        post_save.disconnect(sender=model, dispatch_uid=_uid("post", model))
    _connected.clear()
    for model in tables.SAVE_SPECS:
        if model._meta.auto_created:
            continue  # Django sends no save signals for auto-created through models.
        pre_save.connect(pre_save_receiver, sender=model, dispatch_uid=_uid("pre", model))
        post_save.connect(post_save_receiver, sender=model, dispatch_uid=_uid("post", model))
        _connected.append(model)


def _uid(kind: str, model: type[models.Model]) -> str:
    return f"better_audit.{kind}_save.{model._meta.label}"
