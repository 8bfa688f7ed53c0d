"""Benchmark: tenant-scoped queries under our policy, the opt-out, the seed's and explicit WHERE.

Four tables hold the same 1,000,000 rows of 1,000 tenants and the same indexes; they differ only in
how rows are scoped:

- ``ours``: exactly ``better_tenant.sql.enable_table_sql``, the default signed context: the
  policy compares ``tenant_id`` with ``(SELECT better_tenant_current())``, which verifies the
  context's HMAC (bound to the backend and the transaction) once per query; plus the system
  policy;
- ``unsigned``: the opt-out (``SIGNED_CONTEXT = False``), the policy migration 0002 installed:
  the setting cast to uuid, honoured only beside the current transaction's stamp;
- ``seed``: the seed's single policy that casts the column to text and ORs a bypass flag;
- ``plain``: no RLS; the same queries carry an explicit ``WHERE tenant_id = $n``.

Every query runs as the application role (no superuser, no BYPASSRLS, not the owner) inside a
transaction that enters the tenant the way each variant's scope does (``better_tenant_enter`` with
a bound proof for ``ours``, ``set_config`` of the tenant and the stamp for the others), as
prepared statements with server-side parameters for every variant. Only the query is timed; the
entering statement is timed apart. The variants are interleaved in random order on one
connection and compared by their median latency (server time plus round trip). The last line
printed is the result.

Run: ``.venv/bin/python benchmarks/rls_policy.py`` (embedded PostgreSQL, or DATABASE_URL plus
DATABASE_OWNER_URL). The data is built once in the database ``bench_rls`` and reused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from _common import BenchDatabase, bench_database, geometric_mean, median_ms
from psycopg.types.numeric import Int8

from better_tenant import keys
from better_tenant.sql import (
    CURRENT_TENANT_V2,
    ENTER_FUNCTION,
    SYSTEM_TARGET,
    TableSpec,
    context_functions_sql,
    enable_table_sql,
    ensure_system_role_sql,
    key_sequences,
    qn,
    scope_settings_sql,
    tenant_key_name,
    trigger_function_sql,
)

DATABASE = "bench_rls"
ROWS = 1_000_000
TENANTS = 1_000
SYSTEM_ROLE = "better_tenant_system"
# Rows span one year before a fixed instant, so reused data and the range query stay comparable.
ANCHOR = datetime(2025, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=365)
RANGE_DAYS = 30
SAMPLE_PAIRS = 5_000
LAYOUT_VERSION = "3"
# The benchmark database's context key (the project's own key is never needed here).
KEY = hashlib.sha256(b"better benchmark rls_policy").digest()[: keys.KEY_BYTES]

OURS, UNSIGNED, SEED, PLAIN = "ours", "unsigned", "seed", "plain"
TABLES = {
    OURS: "bench_ours",
    UNSIGNED: "bench_unsigned",
    SEED: "bench_seed",
    PLAIN: "bench_plain",
}
UNSIGNED_POLICY_EXPR = f"tenant_id = {CURRENT_TENANT_V2}"

SEED_POLICY_EXPR = (
    "(tenant_id)::text = current_setting('app.current_tenant', true) "
    "OR current_setting('app.bypass_rls', true) = 'true'"
)
SET_TENANT = f"SELECT {scope_settings_sql('%s')}"
ENTER = f"SELECT {ENTER_FUNCTION}(%s)"


def enter(conn: psycopg.Connection, variant: str, target: str, prepare: bool = True) -> None:
    """Scope the open transaction to ``target`` as the variant's scope would."""
    if variant == OURS:
        conn.execute(ENTER, [keys.proof(target, KEY)], prepare=prepare)
    elif target != SYSTEM_TARGET:
        conn.execute(SET_TENANT, [target], prepare=prepare)


@dataclass(frozen=True)
class Query:
    """One tenant-scoped query: its RLS form and its explicit-WHERE form."""

    name: str
    label: str
    rls: str  # for the RLS tables; ``{t}`` is the table
    plain: str  # the same query with the tenant filter spelled out

    def sql(self, variant: str) -> str:
        text = self.plain if variant == PLAIN else self.rls
        # The tag lets pg_prepared_statements be matched back to a query and variant.
        return f"/* bench:{self.name}:{variant} */ " + text.format(t=qn(TABLES[variant]))

    def params(self, variant: str, tenant: uuid.UUID, row_id: int, since: datetime) -> list:
        # Int8 for every id: psycopg would otherwise pick int2/int4/int8 by value, and each type
        # makes a separate prepared statement.
        own = {"point": [Int8(row_id)], "range": [since], "count": [], "latest": []}[self.name]
        return [*own, tenant] if variant == PLAIN else own


QUERIES = [
    Query(
        "point",
        "point lookup by id",
        "SELECT * FROM {t} WHERE id = %s",
        "SELECT * FROM {t} WHERE id = %s AND tenant_id = %s",
    ),
    Query(
        "range",
        f"range: last {RANGE_DAYS} days",
        "SELECT id, created, amount FROM {t} WHERE created >= %s",
        "SELECT id, created, amount FROM {t} WHERE created >= %s AND tenant_id = %s",
    ),
    Query(
        "count",
        "count(*)",
        "SELECT count(*) FROM {t}",
        "SELECT count(*) FROM {t} WHERE tenant_id = %s",
    ),
    Query(
        "latest",
        "ORDER BY created DESC LIMIT 20",
        "SELECT * FROM {t} ORDER BY created DESC LIMIT 20",
        "SELECT * FROM {t} WHERE tenant_id = %s ORDER BY created DESC LIMIT 20",
    ),
]


# --- data ---------------------------------------------------------------------------------------


def layout_marker(system_role: str) -> str:
    """Identifies the data and policies; a table whose comment differs is rebuilt."""
    spec = TableSpec(TABLES[OURS], system_role)
    parts = [LAYOUT_VERSION, str(ROWS), str(TENANTS), ANCHOR.isoformat()]
    parts += [enable_table_sql(spec), context_functions_sql(True), UNSIGNED_POLICY_EXPR]
    parts += [SEED_POLICY_EXPR]
    digest = hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]
    return f"better benchmark rls_policy {digest}"


def data_is_current(conn: psycopg.Connection, marker: str) -> bool:
    """Whether the owner's tables carry this layout's marker and hold ``ROWS`` rows each.

    The owner is subject to FORCE ROW LEVEL SECURITY on the policy tables, so those are checked by
    the row count VACUUM recorded; the measuring loop compares every result with the plain table.
    """
    for table in TABLES.values():
        row = conn.execute(
            "SELECT obj_description(to_regclass(%s), 'pg_class'), "
            "(SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s))",
            [table, table],
        ).fetchone()
        if row[0] != marker or row[1] != ROWS:
            return False
    return conn.execute(f"SELECT count(*) FROM {qn(TABLES[PLAIN])}").fetchone()[0] == ROWS


def build(db: BenchDatabase, system_role: str, marker: str) -> None:
    """(Re)create the three benchmark tables with identical rows and indexes, as the owner."""
    started = time.perf_counter()
    with db.connect_owner(autocommit=True) as conn:
        conn.execute(ensure_system_role_sql(system_role))
        conn.execute(context_functions_sql(True))
        for name, value in zip(key_sequences(1), keys.halves(KEY), strict=True):
            conn.execute("SELECT setval(%s::regclass, %s, true)", [name, value])
        conn.execute(trigger_function_sql())
        for table in TABLES.values():
            conn.execute(f"DROP TABLE IF EXISTS {qn(table)}")
        for table in TABLES.values():
            conn.execute(
                f"""CREATE TABLE {qn(table)} (
                      id bigserial PRIMARY KEY,
                      tenant_id uuid NOT NULL,
                      created timestamptz NOT NULL,
                      amount int NOT NULL,
                      payload text NOT NULL)"""
            )
        print(f"building {ROWS:,} rows for {TENANTS:,} tenants ...", flush=True)
        with conn.transaction():
            # setseed makes random() repeatable, so a rebuild produces the same rows.
            conn.execute("SELECT setseed(0.42)")
            conn.execute(
                f"""INSERT INTO {qn(TABLES[PLAIN])} (tenant_id, created, amount, payload)
                    SELECT md5('tenant-' || floor(random() * %(tenants)s)::int)::uuid,
                           %(anchor)s::timestamptz - (%(rows)s - g) * %(step)s::interval,
                           floor(random() * 10000)::int,
                           md5(g::text)
                    FROM generate_series(1, %(rows)s) AS g
                    ORDER BY g""",
                {
                    "tenants": TENANTS,
                    "rows": ROWS,
                    "anchor": ANCHOR,
                    "step": SPAN / ROWS,
                },
            )
        for variant in (OURS, UNSIGNED, SEED):
            table = qn(TABLES[variant])
            conn.execute(f"INSERT INTO {table} SELECT * FROM {qn(TABLES[PLAIN])} ORDER BY id")
            conn.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, ROWS])
        for variant, table in TABLES.items():
            conn.execute(
                f"CREATE INDEX {qn(table + '_tenant_created')} ON {qn(table)} (tenant_id, created)"
            )
            if variant != OURS:
                # enable_table_sql adds this key to our table; the others get the same index.
                conn.execute(
                    f"ALTER TABLE {qn(table)} ADD CONSTRAINT {qn(tenant_key_name(table))} "
                    "UNIQUE (tenant_id, id)"
                )
        conn.execute(enable_table_sql(TableSpec(TABLES[OURS], system_role)))
        unsigned = qn(TABLES[UNSIGNED])
        conn.execute(
            f"""ALTER TABLE {unsigned} ENABLE ROW LEVEL SECURITY;
                ALTER TABLE {unsigned} FORCE ROW LEVEL SECURITY;
                CREATE POLICY {qn("rls_tenant_" + TABLES[UNSIGNED])} ON {unsigned} FOR ALL
                  USING ({UNSIGNED_POLICY_EXPR}) WITH CHECK ({UNSIGNED_POLICY_EXPR});
                CREATE POLICY {qn("rls_system_" + TABLES[UNSIGNED])} ON {unsigned} FOR ALL
                  TO {qn(system_role)} USING (true) WITH CHECK (true);"""
        )
        seed = qn(TABLES[SEED])
        conn.execute(
            f"""ALTER TABLE {seed} ENABLE ROW LEVEL SECURITY;
                ALTER TABLE {seed} FORCE ROW LEVEL SECURITY;
                CREATE POLICY {qn("rls_tenant_" + TABLES[SEED])} ON {seed} FOR ALL
                  USING ({SEED_POLICY_EXPR}) WITH CHECK ({SEED_POLICY_EXPR});"""
        )
        for table in TABLES.values():
            conn.execute(f"GRANT SELECT ON {qn(table)} TO {qn(db.app_role)}")
            # VACUUM sets the visibility map, so count(*) may use an index-only scan everywhere.
            conn.execute(f"VACUUM (ANALYZE) {qn(table)}")
            conn.execute(f"COMMENT ON TABLE {qn(table)} IS {_literal(marker)}")
    print(f"built in {time.perf_counter() - started:.0f} s", flush=True)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --- measuring ----------------------------------------------------------------------------------


def check_app_role(conn: psycopg.Connection, db: BenchDatabase) -> None:
    superuser, bypass = conn.execute(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if superuser or bypass:
        raise SystemExit(
            f"The application role {db.app_role} is a superuser or has BYPASSRLS, so RLS would "
            "not apply and the benchmark would measure nothing. Point DATABASE_URL at the "
            "role the application uses."
        )
    if db.app_role == db.owner_role:
        print(
            f"note: {db.app_role} also owns the tables; FORCE ROW LEVEL SECURITY still applies "
            "the policies to it. Set DATABASE_OWNER_URL to measure as a separate role."
        )


def warm_up(conn: psycopg.Connection, system_role: str) -> None:
    """Read every table in full once, so no variant starts with colder pages than another."""
    for variant, table in TABLES.items():
        try:
            with conn.transaction():
                if variant in (OURS, UNSIGNED):
                    # run_as_system's route to every row: the system policy of that role.
                    enter(conn, variant, SYSTEM_TARGET, prepare=False)
                    conn.execute(f"SET LOCAL ROLE {qn(system_role)}")
                elif variant == SEED:
                    conn.execute("SELECT set_config('app.bypass_rls', 'true', true)")
                conn.execute(f"SELECT sum(amount) FROM {qn(table)}").fetchone()
        except psycopg.errors.InsufficientPrivilege:
            print(f"note: {conn.info.user} may not SET ROLE {system_role}; {table} starts cold")


def run_once(
    conn: psycopg.Connection, query: Query, variant: str, tenant: uuid.UUID, row_id: int, since
) -> tuple[float, float, list]:
    """One measured execution inside a transaction scoped to ``tenant``: the time to enter the
    tenant, the time of the query alone, and its rows."""
    text = query.sql(variant)
    params = query.params(variant, tenant, row_id, since)
    with conn.transaction():
        started = time.perf_counter()
        enter(conn, variant, str(tenant))
        entered = time.perf_counter()
        rows = conn.execute(text, params, prepare=True).fetchall()
        done = time.perf_counter()
    return entered - started, done - entered, rows


def same_result(query: Query, a: list, b: list) -> bool:
    # The range query has no ORDER BY; the others return a defined order.
    return sorted(a) == sorted(b) if query.name == "range" else a == b


def explain_line(
    conn: psycopg.Connection, query: Query, variant: str, tenant: uuid.UUID, since, generic: bool
) -> str:
    """The plan's node chain for ``query``, e.g. ``Index Scan using .. (Index Cond: ..)``."""
    text = query.sql(variant)
    with conn.transaction():
        enter(conn, variant, str(tenant), prepare=False)
        if generic:
            # PostgreSQL 16+: the plan a prepared statement uses once it switches to generic.
            numbered = iter(range(1, text.count("%s") + 1))
            text = re.sub("%s", lambda _: f"${next(numbered)}", text)
            plan = conn.execute(f"EXPLAIN (FORMAT JSON, GENERIC_PLAN) {text}").fetchone()[0]
        else:
            params = query.params(variant, tenant, 0, since)
            plan = conn.execute(f"EXPLAIN (FORMAT JSON) {text}", params).fetchone()[0]
    return _describe((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])


def _describe(node: dict) -> str:
    parts = []
    while node:
        label = ("Parallel " if node.get("Parallel Aware") else "") + node["Node Type"]
        if "Index Name" in node:
            label += f" using {node['Index Name']}"
        conditions = [f"{key}: {node[key]}" for key in ("Index Cond", "Filter") if key in node]
        if conditions:
            label += " (" + "; ".join(conditions) + ")"
        parts.append(label)
        children = node.get("Plans") or []
        node = children[0] if children else None
    return " > ".join(parts)


def plan_cache_counts(conn: psycopg.Connection) -> dict[tuple[str, str], tuple[int, int]]:
    """``(query, variant) -> (generic plans, custom plans)`` of this session's statements."""
    counts = {}
    for statement, generic, custom in conn.execute(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
    ):
        if statement.startswith("/* bench:"):
            _, name, variant = statement.split(" ", 2)[1].split(":")
            before = counts.get((name, variant), (0, 0))
            counts[(name, variant)] = (before[0] + generic, before[1] + custom)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000, help="samples per query for ours/plain")
    parser.add_argument(
        "--seed-every",
        type=int,
        default=20,
        help="run the (full-scan) seed variant in one round out of this many",
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the data even if current")
    parser.add_argument("--system-role", default=SYSTEM_ROLE)
    args = parser.parse_args()

    db = bench_database(DATABASE)
    marker = layout_marker(args.system_role)
    with db.connect_owner() as conn:
        current = not args.rebuild and data_is_current(conn, marker)
    if current:
        print(f"reusing {ROWS:,} rows in {db.name} ({db.source})", flush=True)
    else:
        build(db, args.system_role, marker)

    with db.connect_owner() as conn:
        # Pairs (tenant, id of one of its rows): the point lookup finds a row, the others a tenant.
        rng = random.Random(7)
        ids = rng.sample(range(1, ROWS + 1), SAMPLE_PAIRS)
        pairs = conn.execute(
            f"SELECT tenant_id, id FROM {qn(TABLES[PLAIN])} WHERE id = ANY(%s) ORDER BY id", [ids]
        ).fetchall()
        server_version = conn.execute("SHOW server_version").fetchone()[0]
        version_num = int(conn.execute("SHOW server_version_num").fetchone()[0])
    since = ANCHOR - timedelta(days=RANGE_DAYS)

    samples: dict[tuple[str, str], list[float]] = {(q.name, v): [] for q in QUERIES for v in TABLES}
    entering: dict[str, list[float]] = {v: [] for v in TABLES}
    with db.connect_app(autocommit=True) as conn:
        check_app_role(conn, db)
        warm_up(conn, args.system_role)
        print(
            f"PostgreSQL {server_version}, app role {db.app_role}, {args.rounds} rounds "
            f"(seed variant every {args.seed_every}th)",
            flush=True,
        )
        warmup = 30
        started = time.perf_counter()
        for round_no in range(-warmup, args.rounds):
            order = list(QUERIES)
            rng.shuffle(order)
            for query in order:
                tenant, row_id = rng.choice(pairs)
                variants = [OURS, UNSIGNED, PLAIN]
                if round_no % args.seed_every == 0:
                    variants.append(SEED)
                rng.shuffle(variants)
                results = {}
                for variant in variants:
                    entered, elapsed, rows = run_once(conn, query, variant, tenant, row_id, since)
                    results[variant] = rows
                    if round_no >= 0:
                        samples[(query.name, variant)].append(elapsed)
                        entering[variant].append(entered)
                for variant, rows in results.items():
                    if not same_result(query, rows, results[PLAIN]):
                        raise SystemExit(
                            f"{query.label}: the {variant} table returned other rows than the "
                            f"explicit WHERE for tenant {tenant}; the benchmark is invalid."
                        )
        measured_s = time.perf_counter() - started
        cache = plan_cache_counts(conn)

        tenant = pairs[0][0]
        range_query = next(q for q in QUERIES if q.name == "range")
        print(f"\nEXPLAIN of the range query (tenant {tenant}, custom plan):")
        for variant in TABLES:
            line = explain_line(conn, range_query, variant, tenant, since, generic=False)
            print(f"  {variant:<8} {line}")
        if version_num >= 160000:
            print("EXPLAIN (GENERIC_PLAN) of the range query:")
            for variant in TABLES:
                line = explain_line(conn, range_query, variant, tenant, since, generic=True)
                print(f"  {variant:<8} {line}")

    print(f"\nmedian latency in ms ({measured_s:.0f} s of measuring):")
    print(
        f"  {'query':<32}{'ours':>8}{'unsigned':>10}{'seed':>10}{'WHERE':>8}{'ours/W':>8}"
        f"{'uns/W':>7}{'seed/W':>8}   plans generic/custom (ours, unsigned, seed, WHERE)"
    )
    medians: dict[str, list[float]] = {v: [] for v in TABLES}
    for query in QUERIES:
        row = {v: median_ms(samples[(query.name, v)]) for v in TABLES}
        for variant, value in row.items():
            medians[variant].append(value)
        p = row[PLAIN]
        plans = ", ".join("{}/{}".format(*cache.get((query.name, v), (0, 0))) for v in TABLES)
        print(
            f"  {query.label:<32}{row[OURS]:>8.3f}{row[UNSIGNED]:>10.3f}{row[SEED]:>10.3f}"
            f"{p:>8.3f}{row[OURS] / p:>8.2f}{row[UNSIGNED] / p:>7.2f}{row[SEED] / p:>8.1f}"
            f"   {plans}"
        )
    print(
        "entering the tenant, median per transaction: "
        f"better_tenant_enter {median_ms(entering[OURS]):.3f} ms, "
        f"set_config {median_ms(entering[UNSIGNED]):.3f} ms"
    )
    gm = {v: geometric_mean(medians[v]) for v in TABLES}
    worst = max(o / p for o, p in zip(medians[OURS], medians[PLAIN], strict=True))
    print(
        f"rls_policy: ratio {gm[OURS] / gm[PLAIN]:.2f} (signed {gm[OURS]:.3f} ms / explicit WHERE "
        f"{gm[PLAIN]:.3f} ms, geometric mean of {len(QUERIES)} queries, worst query "
        f"{worst:.2f}, {ROWS:,} rows, {TENANTS:,} tenants); unsigned ratio "
        f"{gm[UNSIGNED] / gm[PLAIN]:.2f}, seed policy ratio {gm[SEED] / gm[PLAIN]:.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
