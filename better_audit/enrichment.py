"""Enrichment rules: labels, severity, compliance tags, notify flags, descriptions and redaction.

Rules are registered with ``audit.enrich(table, operation, ...)`` or declared in
``BETTER_AUDIT["ENRICHMENT"]``. An event (table, operation) collects the rules of four tiers, least
specific first: ``("*", "*")``, ``("*", op)``, ``(table, "*")``, ``(table, op)``; within a tier,
settings rules come first, then runtime rules in registration order. Scalars (label, severity,
notify, description) are last-write-wins, so the most specific rule decides; arrays (compliance,
redact, include) are concatenated and de-duplicated. ``redact`` and ``include`` exclude each other:
a rule with both is refused when registered, and an event whose rules bring both is refused each
time it is resolved.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from better_audit.conf import audit_settings
from better_audit.exceptions import AuditConfigurationError, EnrichmentConflict, InvalidOperation
from better_audit.models import OPERATIONS, SEVERITIES
from better_core.settings import SettingsError, check_callable

logger = logging.getLogger(__name__)

WILDCARD = "*"
_OPTIONS = ("label", "description", "severity", "compliance", "notify", "redact", "include")


@dataclass(frozen=True)
class Rule:
    """The options of one ``enrich()`` call, validated."""

    label: str | None = None
    description: Callable[[DescriptionContext], Any] | None = None
    severity: str | None = None
    compliance: tuple[str, ...] = ()
    notify: bool | None = None
    redact: tuple[str, ...] = ()
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resolved(Rule):
    """The merged rules of one event."""

    conflict: str | None = None
    redact_set: frozenset[str] = frozenset()
    include_set: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DescriptionContext:
    """What a ``description`` function receives: post-redaction copies of the entry's data."""

    before: dict[str, Any] | None
    after: dict[str, Any] | None
    diff: dict[str, Any] | None
    actor_id: str | None
    metadata: dict[str, Any]
    table_name: str
    operation: str
    record_id: str


NOTHING = Resolved()
_CONFLICT = (
    "redact and include are mutually exclusive: redact removes the listed fields, include keeps "
    "only the listed fields. Use one of them"
)


def normalize_operation(operation: Any, *, wildcard: bool) -> str:
    allowed = (*OPERATIONS, WILDCARD) if wildcard else OPERATIONS
    value = operation.upper() if isinstance(operation, str) else operation
    if value not in allowed:
        raise InvalidOperation(f"operation must be one of {', '.join(allowed)}; got {operation!r}.")
    return value


def _tags(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Iterable) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{name} must be a list of strings; got {value!r}.")
    return tuple(dict.fromkeys(value))


def make_rule(
    *,
    label: str | None = None,
    description: Callable[[DescriptionContext], Any] | str | None = None,
    severity: str | None = None,
    compliance: Iterable[str] | None = None,
    notify: bool | None = None,
    redact: Iterable[str] | None = None,
    include: Iterable[str] | None = None,
) -> Rule:
    """Validate enrichment options into a Rule (``description`` may be a dotted path)."""
    if severity is not None and severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}; got {severity!r}.")
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label must be a string; got {label!r}.")
    if notify is not None and not isinstance(notify, bool):
        raise TypeError(f"notify must be True or False; got {notify!r}.")
    if isinstance(description, str):
        description = check_callable(description, "enrichment description")
    if description is not None and not callable(description):
        raise TypeError("description must be a function of the description context.")
    redact_t, include_t = _tags("redact", redact), _tags("include", include)
    if redact_t and include_t:
        raise EnrichmentConflict(f"{_CONFLICT} per rule.")
    return Rule(
        label=label,
        description=description,
        severity=severity,
        compliance=_tags("compliance", compliance),
        notify=notify,
        redact=redact_t,
        include=include_t,
    )


def merge(rules: Iterable[Rule]) -> Resolved:
    """Merge rules given least specific first (see the module docstring)."""
    scalars: dict[str, Any] = {}
    arrays: dict[str, dict[str, None]] = {"compliance": {}, "redact": {}, "include": {}}
    for rule in rules:
        for name in ("label", "description", "severity", "notify"):
            value = getattr(rule, name)
            if value is not None:
                scalars[name] = value
        for name, seen in arrays.items():
            seen.update(dict.fromkeys(getattr(rule, name)))
    redact, include = tuple(arrays["redact"]), tuple(arrays["include"])
    return Resolved(
        **scalars,
        compliance=tuple(arrays["compliance"]),
        redact=redact,
        include=include,
        conflict=_CONFLICT if redact and include else None,
        redact_set=frozenset(redact),
        include_set=frozenset(include),
    )


class Registry:
    """Rules from settings and from ``enrich()``, resolved per event and cached."""

    def __init__(self) -> None:
        self._runtime: list[tuple[str, str, Rule]] = []
        self._settings: list[tuple[str, str, Rule]] | None = None
        self._index: dict[tuple[str, str], list[Rule]] | None = None
        self._cache: dict[tuple[str, str], Resolved] = {}

    def register(self, table: str, operation: str, rule: Rule) -> Callable[[], None]:
        if not isinstance(table, str) or not table:
            raise TypeError(f"table must be a table name or '*'; got {table!r}.")
        entry = (table, normalize_operation(operation, wildcard=True), rule)
        self._runtime.append(entry)
        self._invalidate()

        def dispose() -> None:
            if entry in self._runtime:
                self._runtime.remove(entry)
                self._invalidate()

        return dispose

    def resolve(self, table: str, operation: str) -> Resolved:
        """The merged rules for one event; EnrichmentConflict when they bring redact and include."""
        key = (table, operation)
        resolved = self._cache.get(key)
        if resolved is None:
            index = self._index if self._index is not None else self._build_index()
            tiers = ((WILDCARD, WILDCARD), (WILDCARD, operation), (table, WILDCARD), key)
            matched = [rule for tier in tiers for rule in index.get(tier, ())]
            resolved = merge(matched) if matched else NOTHING
            self._cache[key] = resolved
        if resolved.conflict:
            raise EnrichmentConflict(
                f"{resolved.conflict}; the rules matching {operation} on {table!r} set both."
            )
        return resolved

    def rules(self) -> list[tuple[str, str, Rule]]:
        """Every rule as ``(table, operation, rule)``, tables as SQL names: grouped by table and
        operation in the order each pair first appeared (settings first), each group in the
        order its rules were given."""
        groups = self._index if self._index is not None else self._build_index()
        return [(table, op, rule) for (table, op), rules in groups.items() for rule in rules]

    def reload_settings(self) -> None:
        self._settings = None
        self._invalidate()

    def clear(self) -> None:
        """Forget the runtime rules (tests)."""
        self._runtime.clear()
        self._invalidate()

    def _invalidate(self) -> None:
        self._index = None
        self._cache = {}

    def _build_index(self) -> dict[tuple[str, str], list[Rule]]:
        """The rules by (SQL table name, operation), in the order each pair first appeared."""
        from better_audit.tables import resolve_table_name

        if self._settings is None:
            self._settings = settings_rules()
        index: dict[tuple[str, str], list[Rule]] = {}
        for table, operation, rule in [*self._settings, *self._runtime]:
            name = table if table == WILDCARD else resolve_table_name(table)
            index.setdefault((name, operation), []).append(rule)
        self._index = index
        return index


def settings_rules() -> list[tuple[str, str, Rule]]:
    """``BETTER_AUDIT["ENRICHMENT"]`` as rules; AuditConfigurationError names a bad entry."""
    raw = audit_settings.raw("ENRICHMENT") or []
    if not isinstance(raw, list | tuple):
        raise AuditConfigurationError(
            "BETTER_AUDIT['ENRICHMENT'] must be a list of dicts with 'table', 'operation' and "
            "enrichment options."
        )
    rules = []
    for position, item in enumerate(raw):
        label = f"BETTER_AUDIT['ENRICHMENT'][{position}]"
        if not isinstance(item, Mapping):
            raise AuditConfigurationError(f"{label} must be a dict; got {item!r}.")
        options = dict(item)
        table = options.pop("table", None)
        operation = options.pop("operation", WILDCARD)
        unknown = set(options) - set(_OPTIONS)
        if not isinstance(table, str) or not table or unknown:
            raise AuditConfigurationError(
                f"{label} needs a 'table' (a table name or '*'), an 'operation' and only the "
                f"options {', '.join(_OPTIONS)}"
                + (f"; unknown: {', '.join(sorted(unknown))}." if unknown else ".")
            )
        try:
            rule = make_rule(**options)
            operation = normalize_operation(operation, wildcard=True)
        except (TypeError, ValueError, SettingsError) as exc:
            raise AuditConfigurationError(f"{label}: {exc}") from exc
        rules.append((table, operation, rule))
    return rules


registry = Registry()


def enrich(
    table: str,
    operation: str,
    *,
    label: str | None = None,
    description: Callable[[DescriptionContext], Any] | None = None,
    severity: str | None = None,
    compliance: Iterable[str] | None = None,
    notify: bool | None = None,
    redact: Iterable[str] | None = None,
    include: Iterable[str] | None = None,
) -> Callable[[], None]:
    """Register an enrichment rule for ``table`` (or ``"*"``) and ``operation`` (or ``"*"``).

    ``table`` is an SQL table name or ``"app_label.Model"``. Returns a function that removes the
    rule again. Raises EnrichmentConflict when both ``redact`` and ``include`` are given.
    """
    rule = make_rule(
        label=label,
        description=description,
        severity=severity,
        compliance=compliance,
        notify=notify,
        redact=redact,
        include=include,
    )
    return registry.register(table, operation, rule)


def apply(entry: Any, resolved: Resolved) -> None:
    """Apply merged rules to an entry: redaction, then description, then the scalar fields."""
    if resolved is NOTHING:
        return
    if resolved.redact_set or resolved.include_set:
        _redact(entry, resolved)
    if entry.description is None and resolved.description is not None:
        context = DescriptionContext(
            before=copy.deepcopy(entry.before_data),
            after=copy.deepcopy(entry.after_data),
            diff=copy.deepcopy(entry.diff),
            actor_id=entry.actor_id,
            metadata=copy.deepcopy(entry.metadata),
            table_name=entry.table_name,
            operation=entry.operation,
            record_id=entry.record_id,
        )
        try:
            text = resolved.description(context)
        except Exception as exc:
            logger.debug(
                "Enrichment description for %s on %s raised %s; the entry is written without it.",
                entry.operation,
                entry.table_name,
                type(exc).__name__,
            )
        else:
            if text is not None:
                entry.description = str(text)
    if entry.label is None:
        entry.label = resolved.label
    if entry.severity is None:
        entry.severity = resolved.severity
    if entry.notify is None:
        entry.notify = resolved.notify
    if resolved.compliance:
        entry.compliance = list(dict.fromkeys([*entry.compliance, *resolved.compliance]))


def _redact(entry: Any, resolved: Resolved) -> None:
    if resolved.redact_set:
        blocked = resolved.redact_set

        def removed(key: str) -> bool:
            return key in blocked
    else:
        kept = resolved.include_set

        def removed(key: str) -> bool:
            return key not in kept

    gone: set[str] = set()

    def strip(data: dict[str, Any] | None) -> dict[str, Any] | None:
        if not data:
            return data
        drop = [key for key in data if removed(key)]
        if not drop:
            return data
        gone.update(drop)
        return {key: value for key, value in data.items() if not removed(key)}

    entry.before_data = strip(entry.before_data)
    entry.after_data = strip(entry.after_data)
    if entry.diff and entry.diff.get("changed_fields"):
        fields = entry.diff["changed_fields"]
        gone.update(name for name in fields if removed(name))
        entry.diff = {**entry.diff, "changed_fields": [n for n in fields if not removed(n)]}
    entry.redacted_fields = sorted(gone)
