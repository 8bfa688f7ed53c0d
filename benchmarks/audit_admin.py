"""The audit log at 1,000,000 rows: admin pages, query().list(), export and verify timings.

Fills ``audit_logs`` in a database of its own (``bench_audit_admin``, created and migrated as the
owner role, kept for the next run) with 1,000,000 rows by ``generate_series`` in SQL: one year of
entries, 1,000 tenants, 20 tables, 5,000 actors, JSON snapshots and compliance tags. Then, as the
application role through Django's test client logged in as a superuser (``DEBUG = False``):

* ``changelist``: the admin's first page (no COUNT over the table: the planner's estimate);
* ``filter``: the first page filtered on operation, and on table;
* ``search actor`` / ``search record``: the exact search box lookups;
* ``dashboard``: ``audit.stats(days=30)`` and the SVG chart;
* ``list()``: ``audit.query().list()`` (100 newest) and with filters, in system mode;
* ``export``: every row as NDJSON to a null sink: rows/s, and the peak of Python allocations
  (tracemalloc, a separate run) which stays flat because rows are streamed;
* ``verify``: ``integrity.verify()`` over the sealed chains, rows/s (the first run seals the rows).

Each page is timed as the median of ``--rounds`` requests after a warm-up; the goal is at most
100 ms for the admin pages and ``list()``. The last line prints the figures. Usage:
``python benchmarks/audit_admin.py [--rows 1000000] [--rounds 15] [--skip-export]
[--skip-verify]``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from _common import bench_database  # noqa: E402

DATABASE = "bench_audit_admin"
LAYOUT_VERSION = "1"
GOAL_MS = 100.0


class NullSink(io.TextIOBase):
    """Counts what an export writes and keeps none of it."""

    def __init__(self) -> None:
        self.chars = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        return len(text)


def fill_sql(rows: int) -> str:
    # One row every (year / rows); newest first. Tenants are md5-derived uuids, 1 in 50 rows has
    # none; a third of the rows lack a before image (inserts), a third an after image (deletes).
    step = 365 * 86400 / rows
    return f"""
    INSERT INTO audit_logs (id, timestamp, table_name, operation, record_id, actor_id,
        before_data, after_data, diff, label, description, severity, compliance, notify,
        reason, metadata, redacted_fields, correlation_id, tenant_id)
    SELECT gen_random_uuid(),
        now() - (i * interval '{step} seconds'),
        'table_' || (i % 20),
        (ARRAY['INSERT', 'UPDATE', 'DELETE'])[1 + i % 3],
        (i % 200000)::text,
        CASE WHEN i % 10 = 0 THEN NULL ELSE 'user-' || (i % 5000) END,
        CASE WHEN i % 3 = 0 THEN NULL
             ELSE jsonb_build_object('id', i, 'name', 'name ' || i, 'n', i % 97) END,
        CASE WHEN i % 3 = 2 THEN NULL
             ELSE jsonb_build_object('id', i, 'name', 'new ' || i, 'n', i % 89) END,
        CASE WHEN i % 3 = 1 THEN '{{"changed_fields": ["name", "n"]}}'::jsonb END,
        'Label ' || (i % 50),
        NULL,
        (ARRAY[NULL, 'low', 'medium', 'high', 'critical'])[1 + i % 5],
        CASE i % 4 WHEN 0 THEN ARRAY['gdpr'] WHEN 1 THEN ARRAY['gdpr', 'soc2']
             ELSE ARRAY[]::text[] END,
        NULL, NULL, NULL, ARRAY[]::text[], NULL,
        CASE WHEN i % 50 = 0 THEN NULL ELSE md5('tenant' || (i % 1000))::uuid END
    FROM generate_series(1, {rows}) AS i
    """


def prepare(rows: int) -> str:
    """Create/migrate the database as the owner and fill it once; returns what was done."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection, transaction

    from better_audit.integrity import admin_role
    from better_tenant.conf import tenant_settings
    from better_tenant.sql import grant_privileges_sql, membership_sql
    from better_tenant.testing import connected_as_owner

    bench = bench_database(DATABASE)
    settings.DATABASES["default"]["NAME"] = DATABASE
    connection.settings_dict["NAME"] = DATABASE
    layout = f"{LAYOUT_VERSION}:{rows}"
    with connected_as_owner():
        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute(
                grant_privileges_sql(bench.owner_role, bench.app_role, tenant_settings.SYSTEM_ROLE)
            )
            try:
                cursor.execute(membership_sql(bench.app_role, admin_role()))
            except Exception as exc:  # the membership may already exist with other options
                print(f"note: {exc}".strip())
            cursor.execute("CREATE TABLE IF NOT EXISTS bench_audit_admin_meta (layout text)")
            cursor.execute("SELECT layout FROM bench_audit_admin_meta")
            row = cursor.fetchone()
            if row and row[0] == layout:
                return "reused"
            start = time.perf_counter()
            # The owner is subject to FORCE row-level security too; lift it for the fill only.
            with transaction.atomic():
                cursor.execute("ALTER TABLE audit_logs NO FORCE ROW LEVEL SECURITY")
                cursor.execute("TRUNCATE audit_logs, audit_log_seals, audit_purges")
                cursor.execute(fill_sql(rows))
                cursor.execute("ALTER TABLE audit_logs FORCE ROW LEVEL SECURITY")
                cursor.execute("DELETE FROM bench_audit_admin_meta")
                cursor.execute("INSERT INTO bench_audit_admin_meta VALUES (%s)", [layout])
            cursor.execute("VACUUM ANALYZE audit_logs")
            return f"filled {rows:,} rows in {time.perf_counter() - start:.1f} s"


def timed(fn, rounds: int) -> float:
    fn()  # warm-up (plans, caches, template loading)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--skip-verify", action="store_true")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    import better_audit as audit
    from better_audit import integrity
    from better_tenant import run_as_system

    settings.DEBUG = False  # DEBUG records every query, which would dominate the timings
    settings.ALLOWED_HOSTS = ["*"]
    print(f"{DATABASE}: {prepare(args.rows)}")

    user_model = get_user_model()
    admin, _ = user_model.objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(admin)
    changelist = reverse("admin:better_audit_auditlog_changelist")
    dashboard = reverse("admin:better_audit_auditlog_dashboard")

    def page(url: str, params: dict | None = None):
        def go() -> None:
            response = client.get(url, params or {})
            assert response.status_code == 200, response.status_code
            response.content  # noqa: B018 - rendered fully

        return go

    def listing(q):
        def go() -> None:
            with run_as_system():
                assert q.list().entries

        return go

    results: dict[str, float] = {}
    results["changelist"] = timed(page(changelist), args.rounds)
    results["filter operation"] = timed(
        page(changelist, {"operation__exact": "DELETE"}), args.rounds
    )
    results["filter table"] = timed(page(changelist, {"table_name": "table_7"}), args.rounds)
    results["search actor"] = timed(page(changelist, {"q": "user-1234"}), args.rounds)
    results["search record"] = timed(page(changelist, {"q": "45678"}), args.rounds)
    results["dashboard"] = timed(page(dashboard), max(3, args.rounds // 3))
    results["list()"] = timed(listing(audit.query()), args.rounds)
    results["list() filtered"] = timed(
        listing(audit.query().resource("table_3").actor("user-3").since("90d")), args.rounds
    )
    for name, ms in results.items():
        flag = "" if name == "dashboard" or ms <= GOAL_MS else f"  (over the {GOAL_MS:.0f} ms goal)"
        print(f"{name:>18}: {ms:8.1f} ms{flag}")

    figures = [f"{name} {ms:.1f} ms" for name, ms in results.items()]
    if not args.skip_export:
        sink = NullSink()
        start = time.perf_counter()
        with run_as_system():
            summary = audit.export(format="json", json_style="ndjson", output=sink)
        seconds = time.perf_counter() - start
        rate = summary.rows / seconds
        tracemalloc.start()
        with run_as_system():
            audit.export(format="csv", output=NullSink(), chain_head=False)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"{'export':>18}: {summary.rows:,} rows in {seconds:.1f} s = {rate:,.0f} rows/s, "
            f"{sink.chars / 1e6:,.0f} MB NDJSON; peak Python allocations {peak / 1e6:.1f} MB (CSV)"
        )
        figures.append(f"export {rate:,.0f} rows/s peak {peak / 1e6:.1f} MB")
    if args.skip_verify:
        figures.append("verify skipped")
    else:
        start = time.perf_counter()
        sealed = integrity.seal()
        if sealed:
            print(
                f"{'seal':>18}: {sealed:,} rows in {time.perf_counter() - start:.1f} s "
                f"(first run only)"
            )
        start = time.perf_counter()
        report = integrity.verify(seal=False)
        seconds = time.perf_counter() - start
        rate = report.checked / seconds if seconds else 0.0
        print(f"{'verify':>18}: {report.checked:,} rows in {seconds:.1f} s = {rate:,.0f} rows/s")
        print(f"{'':>18}  {report.message}")
        figures.append(f"verify {rate:,.0f} rows/s")
    worst = max(ms for name, ms in results.items() if name != "dashboard")
    print(
        f"audit_admin: worst page {worst:.1f} ms (goal {GOAL_MS:.0f} ms, {args.rows:,} rows): "
        + ", ".join(figures)
    )


if __name__ == "__main__":
    main()
