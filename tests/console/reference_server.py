"""The published console reference server (tests/console/reference) run under Node for tests."""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import pytest

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
INSTALL_TIMEOUT = 600
START_TIMEOUT = 30
STOP_TIMEOUT = 10


def reference_unavailable(reason: str) -> None:
    """Skip, or fail when the run requires the reference (``BETTER_REQUIRE_REFERENCE=1``)."""
    if os.environ.get("BETTER_REQUIRE_REFERENCE") == "1":
        pytest.fail(
            f"{reason} (BETTER_REQUIRE_REFERENCE=1 requires the reference server)", pytrace=False
        )
    pytest.skip(reason)


def ensure_installed() -> str:
    """The ``node`` executable, after ``npm ci`` when the reference packages are missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        reference_unavailable("Node.js and npm are needed to run the console reference server")
    # npm writes this file last; without it a previous install was interrupted.
    if not (REFERENCE_DIR / "node_modules" / ".package-lock.json").exists():
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=REFERENCE_DIR,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            reference_unavailable(f"npm ci in {REFERENCE_DIR} failed: {exc}")
        if done.returncode != 0:
            reference_unavailable(
                f"npm ci in {REFERENCE_DIR} failed ({done.returncode}): {done.stderr[-2000:]}"
            )
    return node


def database_url(settings_dict: dict[str, Any]) -> str:
    """A libpq-style URL for node-postgres from a Django ``DATABASES`` entry."""
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else f"{user}@"
    name = quote(settings_dict["NAME"], safe="")
    host = settings_dict.get("HOST") or ""
    port = settings_dict.get("PORT") or ""
    if host.startswith("/"):
        # A Unix socket directory (the embedded server): node-postgres takes it as ?host=.
        query = f"?host={quote(host, safe='')}" + (f"&port={port}" if port else "")
        return f"postgresql://{auth}/{name}{query}"
    return f"postgresql://{auth}{host or 'localhost'}{f':{port}' if port else ''}/{name}"


@dataclass
class ReferenceServer:
    """One running ``node server.mjs``: its base URL and process."""

    url: str
    process: subprocess.Popen[str]
    log: IO[str]

    def output(self) -> str:
        """What the process wrote to stderr so far (its 500s are explained there)."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def start(node: str, env: dict[str, str]) -> ReferenceServer:
    """Start the reference with ``env`` and wait for its ``listening <port>`` line."""
    # Open as long as the process runs (closed by ReferenceServer.stop).
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115
    process = subprocess.Popen(
        [node, "server.mjs"],
        cwd=REFERENCE_DIR,
        env={"PATH": os.environ.get("PATH", ""), "NODE_ENV": "test", "TZ": "UTC", **env},
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    server = ReferenceServer(url="", process=process, log=log)
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = process.stdout.readline()
            if not line:
                break  # the process ended
            if line.startswith("listening "):
                server.url = f"http://127.0.0.1:{int(line.split()[1])}"
                return server
    output = server.output()
    server.stop()
    raise RuntimeError(f"The console reference server did not start:\n{output[-4000:]}")


@pytest.fixture(scope="session")
def reference_servers(
    django_db_setup: None, django_db_blocker: Any
) -> Iterator[Callable[..., ReferenceServer]]:
    """``reference_servers(**env)``: a reference server with these settings, started once each.

    It reads the suite's test database (created by ``django_db_setup``) as the application role,
    switched to the roles our own server uses for the same work: better_tenant's system role for
    the tenants and better_audit's admin role for the audit trail. The tables are under forced
    row-level security, which even their owner obeys, and only the admin role may delete audit
    entries.
    """
    from django.db import connection

    from better_audit.integrity import admin_role
    from better_tenant.conf import tenant_settings

    node = ensure_installed()
    base = {
        "DATABASE_URL": database_url(connection.settings_dict),
        "DB_ROLE": tenant_settings.SYSTEM_ROLE,
        "AUDIT_DB_ROLE": admin_role(),
        "PORT": "0",
    }
    running: dict[tuple[tuple[str, str], ...], ReferenceServer] = {}

    def get(**env: str) -> ReferenceServer:
        key = tuple(sorted(env.items()))
        if key not in running:
            try:
                running[key] = start(node, {**base, **env})
            except (OSError, RuntimeError) as exc:
                reference_unavailable(str(exc))
        return running[key]

    try:
        yield get
    finally:
        for server in running.values():
            server.stop()
