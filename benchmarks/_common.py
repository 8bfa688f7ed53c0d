"""Shared helpers for benchmark scripts: a throwaway database reached as owner and as app role."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BenchDatabase:
    """A benchmark database and how to reach it as the owner role and as the application role."""

    name: str
    owner_conninfo: str
    app_conninfo: str
    owner_role: str
    app_role: str
    source: str  # "embedded" or "DATABASE_URL", for the printed header

    def connect_owner(self, **kwargs: object) -> psycopg.Connection:
        return psycopg.connect(self.owner_conninfo, **kwargs)

    def connect_app(self, **kwargs: object) -> psycopg.Connection:
        return psycopg.connect(self.app_conninfo, **kwargs)


def bench_database(name: str) -> BenchDatabase:
    """Create the database ``name`` (owned by the owner role) if it is missing and describe it.

    With DATABASE_URL set, the application role is its user and the owner is DATABASE_OWNER_URL's
    user (or the same role when that is unset); the owner needs CREATEDB, or the database must
    exist already. Without DATABASE_URL the embedded PostgreSQL in ``.data/pg<major>`` is used,
    with its better_owner and better_app roles. Nothing is ever dropped here.
    """
    url = os.environ.get("DATABASE_URL", "")
    if url:
        owner_url = os.environ.get("DATABASE_OWNER_URL", "") or url
        base_owner, base_app, source = _to_conninfo(owner_url), _to_conninfo(url), "DATABASE_URL"
    else:
        from better_core.embedded import embedded_pgdata, start_postgres

        server = start_postgres(embedded_pgdata(ROOT))
        where = {"host": server.socket_dir, "dbname": server.database}
        base_owner = make_conninfo(**where, user=server.owner)
        base_app = make_conninfo(**where, user=server.app)
        source = "embedded"

    with psycopg.connect(base_owner, autocommit=True) as conn:
        owner_role = conn.execute("SELECT current_user").fetchone()[0]
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            try:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(name), sql.Identifier(owner_role)
                    )
                )
            except psycopg.errors.InsufficientPrivilege as exc:
                raise SystemExit(
                    f"The role {owner_role} may not create the benchmark database {name!r}. "
                    f"Create it once as a superuser (CREATE DATABASE {name} OWNER {owner_role}) "
                    "or set DATABASE_OWNER_URL to a role with CREATEDB."
                ) from exc
    owner = make_conninfo(base_owner, dbname=name)
    app = make_conninfo(base_app, dbname=name)
    with psycopg.connect(app) as conn:
        app_role = conn.execute("SELECT current_user").fetchone()[0]
    return BenchDatabase(name, owner, app, owner_role, app_role, source)


def _to_conninfo(url: str) -> str:
    # libpq parses URLs itself; Django-style schemes such as postgis:// or pgsql:// are renamed.
    scheme, sep, rest = url.partition("://")
    if sep and scheme not in ("postgres", "postgresql"):
        url = "postgresql://" + rest
    return make_conninfo(**conninfo_to_dict(url))


def median_ms(samples: list[float]) -> float:
    """Median of samples given in seconds, in milliseconds."""
    return statistics.median(samples) * 1000.0


def geometric_mean(values: list[float]) -> float:
    return statistics.geometric_mean(values)


# --- Django benchmarks (the database of the ``default`` alias) -----------------------------------


def grant_app_privileges(connection: Any, app: str) -> None:
    """As the owner on ``connection``: DML for ``app`` and the system role, on tables now and later.

    ``app`` is read from the settings before ``connected_as_owner()``, which replaces the user.
    Retried a few times: when another database of the same server is being set up at the same
    moment, granting to the same roles fails with "tuple concurrently updated".
    """
    from django.conf import settings
    from django.db import InternalError

    from better_tenant.conf import tenant_settings
    from better_tenant.sql import grant_privileges_sql

    owner = settings.DATABASES["default"]["TEST"]["OWNER"]["USER"]
    for attempt in range(5):
        try:
            with connection.cursor() as cursor:
                cursor.execute(grant_privileges_sql(owner, app, tenant_settings.SYSTEM_ROLE))
            return
        except InternalError:
            if attempt == 4:
                raise
            time.sleep(0.5)


def round_trip(connection: Any, count: int = 2000) -> float:
    """Median seconds of one ``SELECT 1`` on ``connection`` (a Django connection)."""
    samples = []
    with connection.cursor() as cursor:
        for _ in range(count):
            start = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)
