"""Automatic capture: save signals for single rows, and the bulk paths that signals never see.

Single rows (``Model.save``), one extra statement per change:

- INSERT: a ``post_save`` receiver writes the entry; the after-image is built from the saved
  instance (``tables`` renders it exactly as ``to_jsonb`` would), so nothing is read back.
- UPDATE: ``Model._do_update`` is wrapped so that Django's UPDATE of the row also locks and returns
  it as it was: ``WITH b AS (SELECT .. FOR UPDATE) UPDATE .. FROM b RETURNING b.image,
  to_jsonb(t.*)``; ``post_save`` then writes the entry. Where that method has another signature
  (other Django versions), a ``pre_save`` receiver reads the before-state with its own
  ``SELECT .. FOR UPDATE`` instead.
- DELETE: see below; the row's image comes back from the DELETE itself.

``Model.save_base`` is wrapped so that the save and its audit row share one transaction (in
autocommit mode Django would commit the row before ``post_save`` runs).

Bulk paths, each one set-wise with the audit rows written in batched INSERTs:

- ``QuerySet.update()`` (and so ``bulk_update()``, the SET_NULL/SET_DEFAULT updates of a cascade
  and related-manager ``remove()``/``clear()``): the matching rows are locked and their images read
  in one ``SELECT .. LIMIT MAX_BEFORE_STATE_ROWS + 1 FOR UPDATE``, then the UPDATE Django compiles
  runs with ``RETURNING to_jsonb(t.*)`` for the after-images.
- deletes (``Model.delete()``, ``QuerySet.delete()``, cascades): Django's fast path is kept. Both
  statements Django issues, ``DeleteQuery.delete_batch`` for collected rows and
  ``QuerySet._raw_delete`` for fast-deleted querysets, run as ``DELETE .. RETURNING``, so the
  before-images come from the delete itself. No delete signal receiver is connected: one would
  make Django fetch every row before deleting it.
- ``bulk_create()``: after-images from the created objects (PostgreSQL returns their keys); with
  ``ignore_conflicts`` only rows that were really inserted are logged, with ``update_conflicts``
  each row is logged as the INSERT or UPDATE it turned out to be.

Not captured: raw SQL (``cursor.execute``, ``Manager.raw``), ``QuerySet._insert`` and other
private query APIs, and the parent-table part of an update made through a multi-table-inheritance
child's queryset. Record such changes with ``audit.capture_log()``.

Unaudited models pay one dict lookup per call of each wrapped method.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connections, models, router, transaction
from django.db.models import Q, QuerySet, TextField
from django.db.models.expressions import RawSQL
from django.db.models.signals import post_save, pre_save
from django.db.models.sql import DeleteQuery, UpdateQuery
from django.db.models.sql.constants import GET_ITERATOR_CHUNK_SIZE, NO_RESULTS

from better_audit import sql, tables
from better_audit.writer import Change, record

logger = logging.getLogger("better_audit")
STASH_KEY = "_better_audit_images"
# Primary keys per ``= ANY(%s)`` array parameter.
CHUNK = 5000

_originals: dict[str, Any] = {}
_connected: list[type[models.Model]] = []
# True once Model._do_update is wrapped, i.e. the before-state is read by the UPDATE itself.
_FOLDED_UPDATE = False
# The signature the wrapper of Model._do_update was written for.
_DO_UPDATE_PARAMETERS = [
    "self",
    "base_qs",
    "using",
    "pk_val",
    "values",
    "update_fields",
    "forced_update",
]


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
) -> bool:
    """Django's UPDATE of one row, run together with the read of its before-state.

    ``WITH b AS (SELECT .. FOR UPDATE) UPDATE t SET .. FROM b WHERE t.pk = b.pk RETURNING
    b.image, to_jsonb(t.*)``: one statement locks the row, returns it as it was and as it is.
    """
    original = _originals["_do_update"]
    specs = tables.SAVE_SPECS.get(self.__class__)
    spec = tables.QUERY_SPECS.get(base_qs.model) if specs else None
    if spec is None or spec not in specs or not _FOLDED_UPDATE:
        return original(self, base_qs, using, pk_val, values, update_fields, forced_update)
    values = list(values)
    args = (self, base_qs, using, pk_val, values, update_fields, forced_update)
    if spec.skip_before or not values:
        return original(*args)  # no before-state wanted, or no UPDATE statement at all
    stash = self.__dict__.setdefault(STASH_KEY, {})
    if base_qs.query.where or (self._meta.select_on_save and not forced_update):
        # A filtered base manager, or Django's own existence checks first: read, then update.
        stash[spec.table] = (_read_before(spec, pk_val, using), None)
        return original(*args)
    query = UpdateQuery(base_qs.model)
    query.add_update_fields(values)
    statement, params = query.get_compiler(using).as_sql()
    if not statement:
        return original(*args)
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"WITH b AS (SELECT {spec.qtable}.{spec.qpk} AS k, {spec.image_sql} AS image "
            f"FROM {spec.qtable} WHERE {spec.qtable}.{spec.qpk} = %s FOR UPDATE) "
            f"{statement} FROM b WHERE {spec.qtable}.{spec.qpk} = b.k "
            f"RETURNING b.image, {spec.image_sql}",
            [spec.prep_pk(pk_val, using), *params],
        )
        row = cursor.fetchone()
    if row is None:
        return False
    stash[spec.table] = (tables.load_image(row[0]), tables.load_image(row[1]))
    return True


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
        # savepoint=False: inside a transaction this is free; outside it makes save + audit atomic.
        with transaction.atomic(using=using, savepoint=False):
            return original(self, raw, force_insert, force_update, using, update_fields)
    finally:
        self.__dict__.pop(STASH_KEY, None)


# --- shared SQL helpers ---------------------------------------------------------------------------


def _keys(spec: tables.AuditedTable, source: str) -> str:
    """``pk, tenant`` of a row of ``source`` (NULL for tables without a tenant)."""
    tenant = f"{source}.{sql.qn(spec.tenant_column)}" if spec.tenant_column else "NULL"
    return f"{source}.{spec.qpk}, {tenant}"


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


def _read_images(spec: tables.AuditedTable, pks: list[Any], using: str) -> dict[str, dict]:
    images: dict[str, dict] = {}
    with connections[using].cursor() as cursor:
        for chunk in _chunks([spec.prep_pk(pk, using) for pk in pks]):
            cursor.execute(spec.select_many_sql, [chunk])
            for (text,) in cursor.fetchall():
                image = tables.load_image(text)
                images[spec.record_id(image)] = image
    return images


# --- deletes --------------------------------------------------------------------------------------


def _delete_batch(self: DeleteQuery, pk_list: list[Any], using: str) -> int:
    spec = tables.QUERY_SPECS.get(self.model)
    if spec is None:
        return _originals["delete_batch"](self, pk_list, using)
    images = not spec.skip_before and len(pk_list) <= tables.CONFIG.max_before_state_rows
    statement = (
        f"DELETE FROM {spec.qtable} WHERE {spec.qtable}.{spec.qpk} = ANY(%s) "
        f"RETURNING {_returning(spec, images)}"
    )
    rows: list[tuple] = []
    with transaction.atomic(using=using, savepoint=False):
        with connections[using].cursor() as cursor:
            for chunk in _chunks([spec.prep_pk(pk, using) for pk in pk_list]):
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
    with transaction.atomic(using=using, savepoint=False):
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
    self._for_write = True
    using = self.db
    with transaction.atomic(using=using, savepoint=False):
        befores = {} if spec.skip_before else _lock_before_images(self, spec, using)
        query = self.query.chain(UpdateQuery)
        query.add_update_values(kwargs)
        query.clear_select_clause()
        rows = _run_update(query, spec, using)
        self._result_cache = None
        changes = [
            Change(change.record_id, befores.get(change.record_id), change.after, change.tenant_id)
            for change in _changes(rows, as_before=False)
        ]
        record(spec.table, "UPDATE", changes, using=using)
    return len(rows)


def _lock_before_images(qs: QuerySet, spec: tables.AuditedTable, using: str) -> dict[str, dict]:
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
    spec = tables.QUERY_SPECS.get(self.model)
    if spec is None:
        return _originals["update_batch"](self, pk_list, values, using)
    manager = self.model._base_manager.using(using)
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
    self._for_write = True
    using = self.db
    with transaction.atomic(using=using, savepoint=False):
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


def _bulk_insert_ignoring(
    qs: QuerySet, spec: tables.AuditedTable, objs: list[models.Model], create: Any, using: str
) -> list[models.Model]:
    """Log only the rows ON CONFLICT DO NOTHING really inserted.

    Every object needs a known key for that: keys from a sequence are drawn up front. Keys that
    exist before the insert belong to rows the insert skipped.
    """
    qs._prepare_for_bulk_create(objs)
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
    existing = set()
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
    qs._prepare_for_bulk_create(objs)
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
    befores: dict[str, dict] = {}
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
    """Wrap Django's write methods once (idempotent)."""
    global _FOLDED_UPDATE
    if _originals:
        return
    targets = [
        (models.Model, "save_base", _save_base),
        (DeleteQuery, "delete_batch", _delete_batch),
        (QuerySet, "_raw_delete", _raw_delete),
        (QuerySet, "update", _update),
        (UpdateQuery, "update_batch", _update_batch),
        (QuerySet, "bulk_create", _bulk_create),
    ]
    # A private method: folded only when its signature is the one this wrapper knows; otherwise
    # the pre_save receiver reads the before-state with a SELECT of its own.
    do_update = models.Model.__dict__["_do_update"]
    if list(inspect.signature(do_update).parameters) == _DO_UPDATE_PARAMETERS:
        targets.append((models.Model, "_do_update", _do_update))
        _FOLDED_UPDATE = True
    for owner, name, wrapper in targets:
        original = owner.__dict__[name]
        _originals[name] = original
        wrapper.__wrapped__ = original
        wrapper.__doc__ = original.__doc__
        for attribute in ("alters_data", "queryset_only"):
            if hasattr(original, attribute):
                setattr(wrapper, attribute, getattr(original, attribute))
        setattr(owner, name, wrapper)


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
