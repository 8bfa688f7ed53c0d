"""Which tables are audited, and how a model instance becomes the JSON PostgreSQL's to_jsonb gives.

Row images come from PostgreSQL (``to_jsonb(t.*)``) wherever a statement can return them. The
single-row save path builds the after-image from the saved instance instead of reading the row
back, so the converters here reproduce ``to_jsonb`` exactly for the column types Django maps: keys
are column names, timestamps are ISO 8601 in the session time zone with trailing zeros of the
fraction dropped, numerics are JSON numbers, UUIDs are strings, bytea is ``\\x``-hex, intervals use
PostgreSQL's default output style. A column whose value cannot be reproduced (a generated column,
an unsupported type, an expression assigned to the field, a deferred field) makes the caller read
the row from the database instead, so the stored image is always the stored truth.

Everything is computed once per configuration (``configure()``, run by ``AppConfig.ready`` and
again when ``BETTER_AUDIT`` changes) into plain dicts the capture paths look up by model class.
"""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import json
import uuid
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connections
from django.db.models import Field, Model
from django.db.models.fields.related import RelatedField

from better_audit import sql
from better_audit.conf import audit_settings
from better_tenant.shortcuts import tenancy_installed

UNKNOWN = object()
Converter = Callable[[Any, datetime.tzinfo], Any]


# --- configuration snapshot -------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """The settings the write path reads on every change, parsed once."""

    async_write: bool = False
    on_missing_record_id: str = "warn"
    primary_key: str = "id"
    max_before_state_rows: int = 1000
    batch_size: int = 500


@dataclass(eq=False)
class AuditedTable:
    """One audited table as seen through one concrete model."""

    table: str
    model: type[Model]
    pk_column: str
    pk_attname: str
    pk_field: Field
    columns: tuple[tuple[str, str, Converter], ...]
    by_name: dict[str, tuple[str, str, Converter]]
    tenant_column: str | None
    skip_before: bool
    qtable: str = field(init=False)
    qpk: str = field(init=False)
    image_sql: str = field(init=False)
    select_one_sql: str = field(init=False)
    select_many_sql: str = field(init=False)

    def __post_init__(self) -> None:
        self.qtable = sql.qn(self.table)
        self.qpk = sql.qn(self.pk_column)
        self.image_sql = f"to_jsonb({self.qtable}.*)"
        self.select_one_sql = (
            f"SELECT {self.image_sql} FROM {self.qtable} "
            f"WHERE {self.qtable}.{self.qpk} = %s FOR UPDATE"
        )
        self.select_many_sql = (
            f"SELECT {self.image_sql} FROM {self.qtable} WHERE {self.qtable}.{self.qpk} = ANY(%s)"
        )

    def instance_row(
        self, instance: Model, using: str, names: Iterable[str] | None = None
    ) -> dict[str, Any] | None:
        """The row image of ``instance`` (only the fields ``names``), or None if not knowable."""
        tz = session_timezone(using)
        values = instance.__dict__
        columns = self.columns if names is None else [self.by_name[n] for n in names]
        row = {}
        for column, attname, convert in columns:
            try:
                value = values[attname]
            except KeyError:
                return None  # deferred: reading it would cost a query per field
            value = convert(value, tz)
            if value is UNKNOWN:
                return None
            row[column] = value
        return row

    def update_field_names(self, update_fields: Iterable[str]) -> list[str]:
        """The fields of ``update_fields`` that are columns of this table."""
        return [name for name in update_fields if name in self.by_name]

    def record_id(self, row: dict[str, Any] | None) -> str | None:
        if not row:
            return None
        value = row.get(self.pk_column)
        return None if value is None else str(value)

    def tenant_of(self, row: dict[str, Any] | None) -> Any:
        if self.tenant_column is None or not row:
            return None
        return row.get(self.tenant_column)

    def tenant_sql(self, source: str) -> str:
        """The tenant column of a row of ``source`` in SQL (a NULL uuid for untenanted tables)."""
        if self.tenant_column is None:
            return "NULL::uuid"
        return f"{source}.{sql.qn(self.tenant_column)}"

    def prep_pk(self, value: Any, using: str) -> Any:
        return self.pk_field.get_db_prep_value(value, connections[using], prepared=False)


CONFIG = Config()
# Every listed table name (capture_log accepts tables without a model, e.g. written by raw SQL).
AUDITED: frozenset[str] = frozenset()
TABLES: dict[str, list[AuditedTable]] = {}
# Model class (proxies included) -> the spec of its own concrete table, for the query paths.
QUERY_SPECS: dict[type[Model], AuditedTable] = {}
# Model class -> the specs a save() writes (its own table and audited multi-table parents).
SAVE_SPECS: dict[type[Model], tuple[AuditedTable, ...]] = {}
# Problems found while resolving the settings, reported by the system check.
PROBLEMS: list[tuple[str, str, str]] = []


def configure() -> None:
    """Resolve ``BETTER_AUDIT`` into the lookups above (idempotent)."""
    global CONFIG, AUDITED, TABLES, QUERY_SPECS, SAVE_SPECS, PROBLEMS
    problems: list[tuple[str, str, str]] = []
    config = _read_config(problems)
    by_table = _models_by_table()
    audited = _resolve_names(audit_settings.raw("TABLES") or [], by_table, "TABLES", problems)
    skip = _resolve_names(
        audit_settings.raw("SKIP_BEFORE_STATE") or [], by_table, "SKIP_BEFORE_STATE", problems
    )
    tables: dict[str, list[AuditedTable]] = {}
    for table in audited:
        for model in by_table.get(table, []):
            spec = _build_spec(table, model, table in skip, problems)
            if spec is not None:
                tables.setdefault(table, []).append(spec)
    query_specs: dict[type[Model], AuditedTable] = {}
    save_specs: dict[type[Model], tuple[AuditedTable, ...]] = {}
    own = {spec.model: spec for specs in tables.values() for spec in specs}
    for model in apps.get_models(include_auto_created=True):
        concrete = model._meta.concrete_model
        assert concrete is not None  # None only for abstract models, which are not registered
        if concrete in own:
            query_specs[model] = own[concrete]
        chain = [concrete, *concrete._meta.get_parent_list()]
        written = tuple(own[m] for m in chain if m in own)
        if written:
            save_specs[model] = written
    CONFIG, AUDITED, TABLES, QUERY_SPECS, SAVE_SPECS, PROBLEMS = (
        config,
        frozenset(audited),
        tables,
        query_specs,
        save_specs,
        problems,
    )


def resolve_table_name(name: str) -> str:
    """``"app_label.Model"`` -> its table name; any other string is taken as a table name."""
    if name.count(".") == 1 and apps.models_ready:
        try:
            return apps.get_model(name)._meta.db_table
        except (LookupError, ValueError):
            pass
    return name


def is_audited(table: str) -> bool:
    return table in AUDITED


def _read_config(problems: list[tuple[str, str, str]]) -> Config:
    on_missing = audit_settings.raw("ON_MISSING_RECORD_ID")
    if on_missing not in ("warn", "skip", "throw"):
        problems.append(
            (
                "E002",
                f"BETTER_AUDIT['ON_MISSING_RECORD_ID'] is {on_missing!r}.",
                'Use "warn", "skip" or "throw".',
            )
        )
        on_missing = "warn"
    limits = {}
    for key, default in (("MAX_BEFORE_STATE_ROWS", 1000), ("BATCH_SIZE", 500)):
        value = audit_settings.raw(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < (key == "BATCH_SIZE"):
            problems.append(
                (
                    "E003",
                    f"BETTER_AUDIT[{key!r}] is {value!r}.",
                    "Use a whole number (BATCH_SIZE at least 1, MAX_BEFORE_STATE_ROWS at least 0).",
                )
            )
            value = default
        limits[key] = value
    # PostgreSQL accepts at most 65535 bind parameters in one statement.
    batch = min(limits["BATCH_SIZE"], 65535 // len(sql.COLUMNS))
    return Config(
        async_write=bool(audit_settings.raw("ASYNC_WRITE")),
        on_missing_record_id=on_missing,
        primary_key=str(audit_settings.raw("PRIMARY_KEY") or "id"),
        max_before_state_rows=limits["MAX_BEFORE_STATE_ROWS"],
        batch_size=batch,
    )


def _models_by_table() -> dict[str, list[type[Model]]]:
    by_table: dict[str, list[type[Model]]] = {}
    for model in apps.get_models(include_auto_created=True):
        meta = model._meta
        if meta.proxy or meta.swapped:
            continue
        by_table.setdefault(meta.db_table, []).append(model)
    return by_table


def _resolve_names(
    names: Any,
    by_table: dict[str, list[type[Model]]],
    key: str,
    problems: list[tuple[str, str, str]],
) -> set[str]:
    if isinstance(names, str) or not isinstance(names, list | tuple | set | frozenset):
        problems.append(
            (
                "E001",
                f"BETTER_AUDIT[{key!r}] must be a list of table names, got {names!r}.",
                'e.g. ["projects", "billing.Invoice"].',
            )
        )
        return set()
    resolved = set()
    for name in names:
        table = resolve_table_name(str(name))
        if table not in by_table:
            problems.append(
                (
                    "W001",
                    f"BETTER_AUDIT[{key!r}] lists {name!r}, which is no table of an installed "
                    "model, so its changes are not captured automatically.",
                    "Use the SQL table name (Model._meta.db_table) or 'app_label.Model'. A table "
                    "without a model can still be recorded with audit.capture_log().",
                )
            )
        resolved.add(table)
    return resolved


def _build_spec(
    table: str, model: type[Model], skip_before: bool, problems: list[tuple[str, str, str]]
) -> AuditedTable | None:
    meta = model._meta
    pk = meta.pk
    # A concrete key always has a column; the stubs type column as optional.
    if (
        pk is None
        or getattr(meta, "is_composite_pk", False)
        or not pk.concrete
        or pk.column is None
    ):
        problems.append(
            (
                "E004",
                f"{meta.label} (table {table!r}) has no single-column primary key, so its rows "
                "cannot be audited automatically.",
                "Give the model a single-column primary key, or record its changes with "
                "audit.capture_log().",
            )
        )
        return None
    columns = tuple(
        (f.column, f.attname, converter_for(f)) for f in meta.local_concrete_fields if f.column
    )
    by_name: dict[str, tuple[str, str, Converter]] = {}
    for f, entry in zip([f for f in meta.local_concrete_fields if f.column], columns, strict=True):
        by_name[f.name] = entry
        by_name[f.attname] = entry
    return AuditedTable(
        table=table,
        model=model,
        pk_column=pk.column,
        pk_attname=pk.attname,
        pk_field=pk,
        columns=columns,
        by_name=by_name,
        tenant_column=_tenant_column(model),
        skip_before=skip_before,
    )


def _tenant_column(model: type[Model]) -> str | None:
    if not tenancy_installed():
        return None
    from better_tenant.constraints import is_tenant_model

    if not is_tenant_model(model):
        return None
    field = model._meta.get_field("tenant")
    assert isinstance(field, Field)  # the TenantField that is_tenant_model found
    return field.column


# --- values as to_jsonb renders them ----------------------------------------------------------

_timezones: dict[str, datetime.tzinfo] = {}


def session_timezone(using: str) -> datetime.tzinfo:
    """The time zone Django sets on the connection, in which PostgreSQL renders timestamps."""
    name = connections[using].timezone_name
    tz = _timezones.get(name)
    if tz is None:
        tz = datetime.UTC if name == "UTC" else zoneinfo.ZoneInfo(name)
        _timezones[name] = tz
    return tz


def _is_expression(value: Any) -> bool:
    return hasattr(value, "resolve_expression")


def _fraction(text: str) -> str:
    """Drop trailing zeros of the seconds fraction, as PostgreSQL's output does."""
    head, dot, rest = text.partition(".")
    if not dot:
        return text
    digits = rest[:6].rstrip("0")
    tail = rest[6:]
    return head + ("." + digits if digits else "") + tail


def _datetime(value: Any, tz: datetime.tzinfo) -> Any:
    if not isinstance(value, datetime.datetime):
        if isinstance(value, datetime.date):
            value = datetime.datetime(value.year, value.month, value.day)
        else:
            return UNKNOWN
    if value.tzinfo is None:
        # Django makes naive values aware in the current time zone (USE_TZ) or sends them as
        # local time of the session (no USE_TZ); either way PostgreSQL reads them in that zone.
        if settings.USE_TZ:
            from django.utils import timezone

            value = timezone.make_aware(value, timezone.get_default_timezone())
        else:
            value = value.replace(tzinfo=tz)
    return _fraction(value.astimezone(tz).isoformat())


def _time(value: Any, tz: datetime.tzinfo) -> Any:
    if isinstance(value, datetime.time) and value.tzinfo is None:
        return _fraction(value.isoformat())
    return UNKNOWN


def interval_text(value: datetime.timedelta) -> str:
    """A timedelta as PostgreSQL prints the interval psycopg stores for it."""
    days, seconds, micros = value.days, value.seconds, value.microseconds
    parts = []
    if days:
        parts.append(f"{days} day" + ("" if days == 1 else "s"))
    if seconds or micros or not days:
        hours, rest = divmod(seconds, 3600)
        minutes, secs = divmod(rest, 60)
        clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
        if micros:
            clock += f".{micros:06d}".rstrip("0")
        parts.append(("+" if days < 0 else "") + clock)
    return " ".join(parts)


def _duration(value: Any, tz: datetime.tzinfo) -> Any:
    return interval_text(value) if isinstance(value, datetime.timedelta) else UNKNOWN


def _float(value: float) -> Any:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _uuid(value: Any, tz: datetime.tzinfo) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return UNKNOWN


def _binary(value: Any, tz: datetime.tzinfo) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    return UNKNOWN


def _inet(value: Any, tz: datetime.tzinfo) -> Any:
    text = str(value)
    if text.lower().startswith("::ffff:"):
        return UNKNOWN
    try:
        return (
            str(ipaddress.ip_interface(text).ip) if "/" in text else str(ipaddress.ip_address(text))
        )
    except ValueError:
        return UNKNOWN


def _guard(convert: Callable[[Any, datetime.tzinfo], Any]) -> Converter:
    def guarded(value: Any, tz: datetime.tzinfo) -> Any:
        if value is None:
            return None
        if _is_expression(value):
            return UNKNOWN
        return convert(value, tz)

    return guarded


def _unknown(value: Any, tz: datetime.tzinfo) -> Any:
    return UNKNOWN


INTEGER_TYPES = {
    "AutoField",
    "BigAutoField",
    "SmallAutoField",
    "IntegerField",
    "BigIntegerField",
    "SmallIntegerField",
    "PositiveIntegerField",
    "PositiveBigIntegerField",
    "PositiveSmallIntegerField",
}
_TEXT_TYPES = {
    "CharField",
    "TextField",
    "SlugField",
    "EmailField",
    "URLField",
    "FilePathField",
    "CICharField",
    "CITextField",
    "CIEmailField",
}


def converter_for(f: Field) -> Converter:
    """A function rendering a value of ``f`` as ``to_jsonb`` does (UNKNOWN when it cannot)."""
    if getattr(f, "generated", False):
        return _unknown
    # Every concrete many-to-one or one-to-one field is a RelatedField.
    if isinstance(f, RelatedField) and (f.many_to_one or f.one_to_one):
        target = f.target_field
        return converter_for(target)
    kind = f.get_internal_type()
    if kind in INTEGER_TYPES:

        def integer(value: Any, tz: datetime.tzinfo) -> Any:
            if type(value) is int or value is None:
                return value
            if _is_expression(value):
                return UNKNOWN
            return int(f.to_python(value))

        return integer
    if kind in _TEXT_TYPES:

        def text(value: Any, tz: datetime.tzinfo) -> Any:
            if type(value) is str or value is None:
                return value
            if _is_expression(value):
                return UNKNOWN
            return str(f.to_python(value))

        return text
    if kind == "BooleanField":

        def boolean(value: Any, tz: datetime.tzinfo) -> Any:
            if type(value) is bool or value is None:
                return value
            if _is_expression(value):
                return UNKNOWN
            return f.to_python(value)

        return boolean
    if kind == "FloatField":
        return _guard(lambda value, tz: _float(float(value)))
    if kind == "DecimalField":
        # Chosen by internal type, so a DecimalField or a field standing in for one.
        places = f.decimal_places  # type: ignore[attr-defined]

        def number(value: Any, tz: datetime.tzinfo) -> Any:
            value = f.to_python(value)
            if not value.is_finite():
                return "NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity")
            if places is not None:
                # numeric(p, s) rounds half away from zero on input.
                value = value.quantize(decimal.Decimal(1).scaleb(-places), decimal.ROUND_HALF_UP)
            return float(value)

        return _guard(number)
    if kind == "DateTimeField":
        return _guard(_datetime)
    if kind == "DateField":

        def day(value: Any, tz: datetime.tzinfo) -> Any:
            if type(value) is not datetime.date:
                value = f.to_python(value)
            return value.isoformat()

        return _guard(day)
    if kind == "TimeField":
        return _guard(_time)
    if kind == "DurationField":
        return _guard(_duration)
    if kind == "UUIDField":
        return _guard(_uuid)
    if kind == "BinaryField":
        return _guard(_binary)
    if kind in ("GenericIPAddressField", "IPAddressField"):
        return _guard(_inet)
    if kind in ("FileField", "ImageField"):
        return _guard(lambda value, tz: getattr(value, "name", value))
    if kind == "JSONField":
        encoder = getattr(f, "encoder", None)
        return _guard(lambda value, tz: json.loads(json.dumps(value, cls=encoder)))
    if kind == "ArrayField":
        # Chosen by internal type: PostgreSQL's ArrayField (or a field standing in for one).
        inner = converter_for(f.base_field)  # type: ignore[attr-defined]

        def array(value: Any, tz: datetime.tzinfo) -> Any:
            items = [inner(item, tz) for item in value]
            return UNKNOWN if any(item is UNKNOWN for item in items) else items

        return _guard(array)
    return _unknown


# --- JSON helpers used by every path ----------------------------------------------------------


def load_image(value: Any) -> dict[str, Any] | None:
    """A ``to_jsonb`` column as Python (Django's psycopg setup returns jsonb as text)."""
    if value is None:
        return None
    if isinstance(value, str | bytes | bytearray):
        return json.loads(value)
    return value


def json_value(value: Any) -> Any:
    """Any Python value made JSON-safe the way the captured images are (for capture_log)."""
    if value is None or type(value) in (str, int, bool):
        return value
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_value(v) for v in value]
    tz = datetime.UTC if settings.USE_TZ else zoneinfo.ZoneInfo(settings.TIME_ZONE)
    if isinstance(value, datetime.datetime):
        return _datetime(value, tz)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, datetime.time):
        return _fraction(value.isoformat())
    if isinstance(value, datetime.timedelta):
        return interval_text(value)
    if isinstance(value, decimal.Decimal):
        return float(value) if value.is_finite() else str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, Model):
        return json_value(value.pk)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    return str(value)


def same_value(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0 but 1 != true, objects compared by key, arrays by position."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Keys whose value differs, or that only one image has (before's key order, then after's)."""
    changed = [k for k in before if k not in after or not same_value(before[k], after[k])]
    changed += [k for k in after if k not in before]
    return changed
