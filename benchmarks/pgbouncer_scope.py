"""Benchmark: a tenant-scoped statement in autocommit, straight to PostgreSQL and through PgBouncer.

PgBouncer in transaction mode gives each transaction whichever server connection is free, so the
signed context cannot be bound to a backend the client knows: ``better_tenant_enter()`` binds it
on the server, to the backend and transaction it runs in, and the client sends it in the same
pipeline as the statement. This measures what that costs, on ``rls_policy.py``'s data (built
there if missing), per statement in autocommit (Django's default), as the application role:

- ``plain``: the point lookup on the table without RLS, ``WHERE id = $1 AND tenant_id = $2``;
- ``unsigned``: the opt-out's statement, one simple-query string with the settings in front;
- ``signed``: ``better_tenant_enter($1)`` and the statement in one pipeline, one Sync, as
  ``better_tenant.statements`` sends them (libpq's pipeline driven under the cursor);
- ``psycopg``: the same two statements through psycopg's ``Pipeline`` object, the path taken
  where psycopg lacks what the direct one uses.

Each runs straight to the server and through a PgBouncer (transaction mode, pool of two) started
here; variants interleave, medians are compared. Needs Debian's ``pgbouncer``. The last line
printed is the result. Run: ``.venv/bin/python benchmarks/pgbouncer_scope.py [--rounds 3000]``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from _common import bench_database, median_ms
from psycopg import ClientCursor
from rls_policy import DATABASE, KEY, PLAIN, TABLES, UNSIGNED, build, data_is_current, layout_marker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from better_tenant import keys, pipeline
from better_tenant.sql import ENTER_FUNCTION, scope_settings_sql
from tests.support.pgbouncer import running_pgbouncer

SYSTEM_ROLE = "better_tenant_system"


def statements(conn: psycopg.Connection) -> dict[str, Callable[[str, int], list]]:
    """The three ways to run the point lookup for (tenant, row id) on ``conn``."""
    plain = f"SELECT * FROM {TABLES[PLAIN]} WHERE id = %s AND tenant_id = %s"
    unsigned = f"SELECT {scope_settings_sql('%s')}; SELECT * FROM {TABLES[UNSIGNED]} WHERE id = %s"
    signed = f"SELECT * FROM {TABLES['ours']} WHERE id = %s"
    enter = f"SELECT {ENTER_FUNCTION}(%s)"
    entering = f"SELECT {ENTER_FUNCTION}($1)".encode()

    def run_plain(tenant: str, row_id: int) -> list:
        return ClientCursor(conn).execute(plain, [row_id, tenant]).fetchall()

    def run_unsigned(tenant: str, row_id: int) -> list:
        cursor = ClientCursor(conn).execute(unsigned, [tenant, row_id])
        cursor.nextset()
        return cursor.fetchall()

    def run_signed(tenant: str, row_id: int) -> list:
        cursor = ClientCursor(conn)
        # The proof bound on the server; the statement as Django sends it.
        pipeline.execute(cursor, entering, keys.proof(tenant, KEY), signed, [row_id])
        return cursor.fetchall()

    def run_psycopg(tenant: str, row_id: int) -> list:
        with conn.pipeline():
            # The proof bound on the server; the statement as Django sends it.
            psycopg.Cursor(conn).execute(enter, [keys.proof(tenant, KEY)])
            cursor = ClientCursor(conn).execute(signed, [row_id])
        return cursor.fetchall()

    return {
        "plain": run_plain,
        "unsigned": run_unsigned,
        "signed": run_signed,
        "psycopg": run_psycopg,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000, help="statements per variant and path")
    args = parser.parse_args()

    db = bench_database(DATABASE)
    marker = layout_marker(SYSTEM_ROLE)
    with db.connect_owner() as conn:
        current = data_is_current(conn, marker)
    if not current:
        build(db, SYSTEM_ROLE, marker)
    with db.connect_owner() as conn:
        pairs = [
            (str(tenant), row_id)
            for tenant, row_id in conn.execute(
                f"SELECT tenant_id, id FROM {TABLES[PLAIN]} TABLESAMPLE SYSTEM (1) LIMIT 2000"
            )
        ]
    direct = psycopg.connect(db.app_conninfo, autocommit=True)
    info = direct.info
    host = info.host if info.host.startswith("/") else info.hostaddr or info.host
    user = info.user
    with running_pgbouncer(host, info.port, [user]) as listen:
        pooled = psycopg.connect(
            host="127.0.0.1", port=listen, user=user, dbname=info.dbname, autocommit=True
        )
        paths = {"direct": statements(direct), "pgbouncer": statements(pooled)}
        samples: dict[tuple[str, str], list[float]] = {
            (path, variant): [] for path in paths for variant in paths[path]
        }
        rng = random.Random(7)
        for round_no in range(-100, args.rounds):
            tenant, row_id = rng.choice(pairs)
            order = list(samples)
            rng.shuffle(order)
            results = {}
            for path, variant in order:
                started = time.perf_counter()
                results[(path, variant)] = paths[path][variant](tenant, row_id)
                if round_no >= 0:
                    samples[(path, variant)].append(time.perf_counter() - started)
            if len({repr(rows) for rows in results.values()}) != 1:
                raise SystemExit(f"the variants returned different rows for {tenant} {row_id}")
        pooled.close()
    direct.close()

    print(f"{args.rounds} point lookups per variant and path, autocommit, as {user}")
    medians = {key: median_ms(values) for key, values in samples.items()}
    for path in paths:
        base = medians[(path, "plain")]
        row = ", ".join(
            f"{variant} {medians[(path, variant)]:.3f} ms ({medians[(path, variant)] / base:.2f}x)"
            for variant in ("plain", "unsigned", "signed", "psycopg")
        )
        print(f"  {path:<9} {row}")
    added = {path: medians[(path, "signed")] - medians[(path, "plain")] for path in paths}
    print(
        "pgbouncer_scope: signed statement through PgBouncer "
        f"{medians[('pgbouncer', 'signed')] / medians[('pgbouncer', 'plain')]:.2f}x its plain "
        f"statement (+{added['pgbouncer'] * 1000:.0f} us), straight to the server "
        f"{medians[('direct', 'signed')] / medians[('direct', 'plain')]:.2f}x "
        f"(+{added['direct'] * 1000:.0f} us); no extra round trip on either path; through "
        f"psycopg's Pipeline {medians[('direct', 'psycopg')] / medians[('direct', 'plain')]:.2f}x"
    )


if __name__ == "__main__":
    main()
