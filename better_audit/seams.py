"""The Django internals automatic capture relies on, keyed by the releases it was verified on."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import django


@dataclass(frozen=True)
class Seams:
    """How the write internals of one Django feature release look to capture."""

    # The parameters of each method capture wraps or calls, by "Owner.method".
    signatures: dict[str, tuple[str, ...]]
    # Django 6.0+: Model._do_update takes the fields the UPDATE must return and answers the returned
    # rows ([()] for a row updated with nothing to return, [] for none); before, it answers a bool.
    update_returns_rows: bool


def _methods() -> dict[str, Callable[..., Any] | None]:
    """Each method capture wraps or calls, by "Owner.method" (None where this Django lacks it)."""
    from django.db import models
    from django.db.models import QuerySet
    from django.db.models.sql import DeleteQuery, InsertQuery, UpdateQuery
    from django.db.models.sql.compiler import SQLCompiler, SQLInsertCompiler, SQLUpdateCompiler

    owners: dict[str, type] = {
        "Model": models.Model,
        "QuerySet": QuerySet,
        "DeleteQuery": DeleteQuery,
        "InsertQuery": InsertQuery,
        "UpdateQuery": UpdateQuery,
        "SQLCompiler": SQLCompiler,
        "SQLInsertCompiler": SQLInsertCompiler,
        "SQLUpdateCompiler": SQLUpdateCompiler,
    }
    found = {}
    for name in _SHARED:
        owner, method = name.split(".")
        found[name] = getattr(owners[owner], method, None)
    return found


# The same in every verified release.
_SHARED: dict[str, tuple[str, ...]] = {
    # Wrapped.
    "Model.save_base": ("self", "raw", "force_insert", "force_update", "using", "update_fields"),
    "Model._do_insert": ("self", "manager", "using", "fields", "returning_fields", "raw"),
    "Model._do_update": (),  # per release, below
    "DeleteQuery.delete_batch": ("self", "pk_list", "using"),
    "QuerySet._raw_delete": ("self", "using"),
    "QuerySet.update": ("self", "kwargs"),
    "UpdateQuery.update_batch": ("self", "pk_list", "values", "using"),
    "QuerySet.bulk_create": (
        "self",
        "objs",
        "batch_size",
        "ignore_conflicts",
        "update_conflicts",
        "update_fields",
        "unique_fields",
    ),
    "QuerySet._insert": (
        "self",
        "objs",
        "fields",
        "returning_fields",
        "raw",
        "using",
        "on_conflict",
        "update_fields",
        "unique_fields",
    ),
    # Called.
    "QuerySet._prepare_for_bulk_create": ("self", "objs"),
    "UpdateQuery.add_update_fields": ("self", "values_seq"),
    "UpdateQuery.add_update_values": ("self", "values"),
    "UpdateQuery.get_related_updates": ("self",),
    "InsertQuery.insert_values": ("self", "fields", "objs", "raw"),
    "SQLInsertCompiler.as_sql": ("self",),
    "SQLInsertCompiler.execute_sql": ("self", "returning_fields"),
    "SQLUpdateCompiler.as_sql": ("self",),
    "SQLCompiler.get_converters": ("self", "expressions"),
    "SQLCompiler.apply_converters": ("self", "rows", "converters"),
}
_DO_UPDATE = ("self", "base_qs", "using", "pk_val", "values", "update_fields", "forced_update")

_RETURNING = Seams(
    signatures={**_SHARED, "Model._do_update": (*_DO_UPDATE, "returning_fields")},
    update_returns_rows=True,
)
VERIFIED: dict[tuple[int, int], Seams] = {
    (5, 2): Seams(
        signatures={**_SHARED, "Model._do_update": _DO_UPDATE}, update_returns_rows=False
    ),
    (6, 0): _RETURNING,
    (6, 1): _RETURNING,
}


def running() -> tuple[int, int]:
    """The running Django's feature release, e.g. (6, 1)."""
    return (django.VERSION[0], django.VERSION[1])


def current() -> Seams:
    """The seams of the running Django, or of the newest verified release when it is not one."""
    return VERIFIED.get(running()) or VERIFIED[max(VERIFIED)]


def mismatches() -> list[str]:
    """Each wrapped or called method whose parameters are not the ones ``current()`` expects."""
    expected = current().signatures
    found = []
    for name, method in _methods().items():
        if method is None:
            found.append(f"{name} does not exist")
            continue
        parameters = tuple(inspect.signature(method).parameters)
        if parameters != expected[name]:
            found.append(f"{name}{_show(parameters)} is not {name}{_show(expected[name])}")
    return found


def matches(name: str) -> bool:
    """Whether ``name`` ("Owner.method") has the parameters its wrapper was written for."""
    method = _methods().get(name)
    return (
        method is not None
        and tuple(inspect.signature(method).parameters) == (current().signatures[name])
    )


def problems() -> list[str]:
    """Why capture cannot vouch for the running Django: an unverified release, changed methods."""
    found = []
    if running() not in VERIFIED:
        verified = ", ".join(f"{major}.{minor}" for major, minor in sorted(VERIFIED))
        found.append(
            f"Django {django.get_version()} is not a release better_audit's capture was verified "
            f"on (verified: {verified})."
        )
    found.extend(mismatches())
    return found


def _show(parameters: tuple[str, ...]) -> str:
    return f"({', '.join(parameters)})"
