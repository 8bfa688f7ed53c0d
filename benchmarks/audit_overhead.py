"""What auditing costs a write: better_audit, django-pghistory, django-auditlog and
django-simple-history vs none.

Five tables with the same columns (``benchmarks/benchapp``): ``plain`` (not audited, the
baseline), ``better_audit`` (listed in ``BETTER_AUDIT["TABLES"]``: statement triggers that
``migrate`` installs write every entry, with before and after images and the changed fields, and
the ORM's statements carry the context), ``django-pghistory`` (``pghistory.track()`` of inserts,
updates and deletes: row triggers writing the row's columns), ``django-auditlog``
(registered with its registry) and ``django-simple-history`` (``HistoricalRecords``). All run in
one process on one database (``bench_audit``, created and migrated as the owner role), as the
application role, over one persistent connection, ``DEBUG = False``.

* single rows: ``Model.objects.create()``, ``save()`` of a changed row, ``delete()``; each timed
  on its own, the variants interleaved in batches in random order; the figure is the median over
  every operation of a variant. Twice: in autocommit mode (every operation its own transaction)
  and inside ``transaction.atomic()`` (the operations of a batch share one transaction, as under
  ATOMIC_REQUESTS). Then the plain/better_audit pair of tenant tables inside ``run_as(tenant)``,
  where the audit rows pass the row-level security of the audit table.
* set-wise: ``QuerySet.update()`` of 1,000 rows and ``bulk_create()`` of 5,000 rows, in
  autocommit mode: the median time per call and how many rows each variant captured
  (django-auditlog and django-simple-history work from model signals, which neither call sends;
  django-pghistory's triggers see every row).

The ratio is the variant's median over plain's median. The last line sums it up. Usage:
``python benchmarks/audit_overhead.py [--rounds 40] [--batch 25] [--bulk-rounds 7]``; with
``BENCH_SERVER_SIDE_BINDING=1`` the connection uses Django's server-side parameter binding.
The three peers are not dependencies of the project: ``pip install -r benchmarks/requirements.txt``
installs them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_MISSING = [
    name
    for name in ("auditlog", "simple_history", "pghistory")
    if importlib.util.find_spec(name) is None
]
if _MISSING:
    raise SystemExit(
        "audit_overhead compares better_audit with django-pghistory, django-auditlog and "
        f"django-simple-history, and {', '.join(_MISSING)} is not installed. Run: "
        f"{Path(sys.executable).name} -m pip install -r benchmarks/requirements.txt"
    )

os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.benchapp.settings"

import django  # noqa: E402
from _common import grant_app_privileges, round_trip  # noqa: E402

django.setup()

from auditlog.models import LogEntry  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.contenttypes.models import ContentType  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import F, Model  # noqa: E402

from benchmarks.benchapp.models import (  # noqa: E402
    AuditedRow,
    AuditlogRow,
    HistoryRow,
    PghistoryRow,
    PlainRow,
    TenantAuditedRow,
    TenantPlainRow,
)
from better_audit.models import AuditLog  # noqa: E402
from better_tenant import run_as, run_as_system  # noqa: E402
from better_tenant.api import create_tenant, get_tenant_by_slug  # noqa: E402
from better_tenant.models import Tenant  # noqa: E402
from better_tenant.testing import connected_as_owner  # noqa: E402

VARIANTS: dict[str, type[Model]] = {
    "plain": PlainRow,
    "better_audit": AuditedRow,
    "django-pghistory": PghistoryRow,
    "django-auditlog": AuditlogRow,
    "django-simple-history": HistoryRow,
}
TENANT_VARIANTS: dict[str, type[Model]] = {
    "plain": TenantPlainRow,
    "better_audit": TenantAuditedRow,
}
OPERATIONS = ("create", "save", "delete")
UPDATE_ROWS = 1_000
BULK_ROWS = 5_000
UPDATE_BATCH, BULK_BATCH = 1, 2  # the ``batch`` column marks the set-wise rows
BENCH_TABLES = [
    "bench_plain",
    "bench_audited",
    "bench_auditlog",
    "bench_history",
    "bench_history_log",
    "bench_pghistory",
    PghistoryRow.pgh_event_model._meta.db_table,
    "bench_tenant_plain",
    "bench_tenant_audited",
    "auditlog_logentry",
    "audit_logs",
]


# --- database ------------------------------------------------------------------------------------


def prepare_database() -> Tenant:
    """Migrate as the owner, grant the app role its DML, empty the tables, find the tenant."""
    app = settings.DATABASES["default"]["USER"]
    with connected_as_owner():
        call_command("migrate", verbosity=0)
        grant_app_privileges(connection, app)
        with connection.cursor() as cursor:
            # The owner may TRUNCATE the append-only audit table; every run starts empty.
            cursor.execute(f"TRUNCATE {', '.join(BENCH_TABLES)} RESTART IDENTITY")
    tenant = get_tenant_by_slug("bench")  # in system mode: no scope sees other tenants
    return tenant or create_tenant("Bench", "bench")


# --- single rows ---------------------------------------------------------------------------------


def one_batch(model: type[Model], size: int, scope: Callable[[], Any]) -> dict[str, list[float]]:
    """Create, then save, then delete ``size`` rows, timing each operation on its own."""
    timings: dict[str, list[float]] = {op: [] for op in OPERATIONS}
    clock = time.perf_counter
    rows = []
    with scope():
        for n in range(size):
            start = clock()
            row = model.objects.create(name=f"row {n}", amount="12.50", qty=n, note="x" * 40)
            timings["create"].append(clock() - start)
            rows.append(row)
        for row in rows:
            row.qty += 1
            row.flag = not row.flag
            start = clock()
            row.save()
            timings["save"].append(clock() - start)
        for row in rows:
            start = clock()
            row.delete()
            timings["delete"].append(clock() - start)
    return timings


def measure_single(
    variants: dict[str, type[Model]],
    rounds: int,
    size: int,
    scope: Callable[[], Any],
    rng: random.Random,
) -> dict[str, dict[str, float]]:
    """Median seconds per operation of each variant, the variants interleaved batch by batch."""
    samples = {name: {op: [] for op in OPERATIONS} for name in variants}
    for model in variants.values():
        one_batch(model, size, scope)  # warm-up: code paths, plans, caches
    order = list(variants)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            for op, values in one_batch(variants[name], size, scope).items():
                samples[name][op].extend(values)
    return {
        name: {op: statistics.median(values) for op, values in ops.items()}
        for name, ops in samples.items()
    }


# --- set-wise ------------------------------------------------------------------------------------


def captured(name: str, model: type[Model]) -> int:
    """How many change records the variant holds for ``model``'s table."""
    if name == "better_audit":
        with run_as_system():
            return AuditLog.objects.filter(table_name=model._meta.db_table).count()
    if name == "django-auditlog":
        return LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(model)
        ).count()
    if name == "django-simple-history":
        return model.history.count()
    if name == "django-pghistory":
        return model.pgh_event_model.objects.count()
    return 0


def measure_setwise(
    rounds: int,
    rng: random.Random,
    call: Callable[[str, type[Model]], float],
    cleanup: Callable[[type[Model]], None] | None = None,
) -> tuple[dict[str, float], dict[str, int]]:
    """Median seconds of ``call(name, model)`` (it returns its timed seconds), rows captured.

    The first call of each variant is the warm-up, and counts what the variant captures;
    ``cleanup(model)`` runs after each call, once its captures are counted.
    """
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    counts: dict[str, int] = {}
    order = list(VARIANTS)
    for round_ in range(rounds + 1):
        rng.shuffle(order)
        for name in order:
            model = VARIANTS[name]
            before = captured(name, model) if round_ == 0 else 0
            elapsed = call(name, model)
            if round_ == 0:
                counts[name] = captured(name, model) - before
            else:
                samples[name].append(elapsed)
            if cleanup is not None:
                cleanup(model)
    return {name: statistics.median(values) for name, values in samples.items()}, counts


def measure_update(rounds: int, rng: random.Random) -> tuple[dict[str, float], dict[str, int]]:
    """``QuerySet.update()`` of UPDATE_ROWS rows: median seconds and rows captured per call."""
    for model in VARIANTS.values():
        model.objects.bulk_create(
            [model(name=f"u{n}", qty=n, batch=UPDATE_BATCH) for n in range(UPDATE_ROWS)]
        )

    def update(name: str, model: type[Model]) -> float:
        start = time.perf_counter()
        changed = model.objects.filter(batch=UPDATE_BATCH).update(qty=F("qty") + 1)
        elapsed = time.perf_counter() - start
        if changed != UPDATE_ROWS:
            raise RuntimeError(f"{name}: update changed {changed} rows, not {UPDATE_ROWS}")
        return elapsed

    return measure_setwise(rounds, rng, update)


def measure_bulk_create(rounds: int, rng: random.Random) -> tuple[dict[str, float], dict[str, int]]:
    """``bulk_create()`` of BULK_ROWS rows: median seconds per call, rows captured per call."""

    def bulk_create(name: str, model: type[Model]) -> float:
        objs = [model(name=f"b{n}", qty=n, batch=BULK_BATCH) for n in range(BULK_ROWS)]
        start = time.perf_counter()
        model.objects.bulk_create(objs)
        return time.perf_counter() - start

    def cleanup(model: type[Model]) -> None:
        # Untimed, by raw SQL, after the captures are counted (django-pghistory's trigger
        # records these deletes too; the others do not see them).
        with connection.cursor() as cursor:
            cursor.execute(f'DELETE FROM "{model._meta.db_table}" WHERE batch = %s', [BULK_BATCH])

    return measure_setwise(rounds, rng, bulk_create, cleanup)


# --- report --------------------------------------------------------------------------------------


def print_table(title: str, result: dict[str, dict[str, float]]) -> None:
    base = result["plain"]
    print(title)
    print(f"  {'variant':22s}" + "".join(f"{op:>18s}" for op in OPERATIONS))
    for name, ops in result.items():
        cells = "".join(f"{ops[op] * 1000:9.3f} ms {ops[op] / base[op]:5.2f}x" for op in OPERATIONS)
        print(f"  {name:22s}{cells}")


def ratios(result: dict[str, dict[str, float]], name: str) -> list[float]:
    return [result[name][op] / result["plain"][op] for op in OPERATIONS]


def joined(values: list[float]) -> str:
    return " / ".join(f"{v:.1f}x" for v in values)


@contextlib.contextmanager
def autocommit() -> Iterator[None]:
    if not connection.get_autocommit():
        raise RuntimeError("the connection is not in autocommit mode")
    yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="batches per variant and mode")
    parser.add_argument("--batch", type=int, default=25, help="rows per batch")
    parser.add_argument("--bulk-rounds", type=int, default=7, help="timed set-wise calls")
    args = parser.parse_args()
    rng = random.Random(17)

    tenant = prepare_database()
    connection.ensure_connection()
    single = measure_single(VARIANTS, args.rounds, args.batch, autocommit, rng)
    in_atomic = measure_single(VARIANTS, args.rounds, args.batch, transaction.atomic, rng)
    in_tenant = measure_single(
        TENANT_VARIANTS, args.rounds, args.batch, lambda: run_as(tenant), rng
    )
    per_op = {
        name: captured(name, model) // ((args.rounds + 1) * args.batch * 2)
        for name, model in VARIANTS.items()
    }
    update, update_counts = measure_update(args.bulk_rounds, rng)
    bulk, bulk_counts = measure_bulk_create(args.bulk_rounds, rng)
    trip = round_trip(connection)

    ops = args.rounds * args.batch
    print(
        f"{ops} timed operations of each kind per variant and mode, interleaved in batches of "
        f"{args.batch}; one database round trip (SELECT 1): {trip * 1e6:.0f} us"
    )
    print(
        "change records per create+save+delete of one row: "
        + ", ".join(f"{name} {count}" for name, count in per_op.items())
    )
    print_table("single rows, autocommit (median per operation):", single)
    print_table("single rows, inside transaction.atomic() (median per operation):", in_atomic)
    print_table("single rows of a tenant table, inside run_as(tenant):", in_tenant)
    print(f"QuerySet.update() of {UPDATE_ROWS:,} rows (median per call, rows captured):")
    for name, seconds in update.items():
        print(
            f"  {name:22s}{seconds * 1000:9.1f} ms {seconds / update['plain']:5.2f}x"
            f"  {update_counts[name]:>6,} captured"
        )
    print(f"bulk_create() of {BULK_ROWS:,} rows (median per call, rows captured):")
    for name, seconds in bulk.items():
        print(
            f"  {name:22s}{seconds * 1000:9.1f} ms {seconds / bulk['plain']:5.2f}x"
            f"  {bulk_counts[name]:>6,} captured"
        )
    ours = ratios(single, "better_audit")
    print(
        f"audit_overhead: better_audit {ours[0]:.1f}x create / {ours[1]:.1f}x save / "
        f"{ours[2]:.1f}x delete (autocommit), {joined(ratios(in_atomic, 'better_audit'))} "
        f"(in atomic); peers in atomic: django-pghistory "
        f"{joined(ratios(in_atomic, 'django-pghistory'))}, django-auditlog "
        f"{joined(ratios(in_atomic, 'django-auditlog'))}, django-simple-history "
        f"{joined(ratios(in_atomic, 'django-simple-history'))}; "
        f"update {UPDATE_ROWS:,} rows {update['better_audit'] / update['plain']:.1f}x "
        f"({update_counts['better_audit']:,} captured; django-pghistory "
        f"{update['django-pghistory'] / update['plain']:.1f}x); bulk_create {BULK_ROWS:,} rows "
        f"{bulk['better_audit'] / bulk['plain']:.1f}x ({bulk_counts['better_audit']:,} captured; "
        f"django-pghistory {bulk['django-pghistory'] / bulk['plain']:.1f}x)"
    )


if __name__ == "__main__":
    main()
