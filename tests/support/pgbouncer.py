"""A throwaway PgBouncer in transaction mode before a PostgreSQL server (tests and benchmarks)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def pgbouncer_binary() -> str | None:
    """Debian's pgbouncer, on PATH or where the package puts it."""
    return shutil.which("pgbouncer") or next(
        (path for path in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.path.exists(path)),
        None,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_pgbouncer(
    host: str | None, port: int | str | None, users: Iterable[str | None], pool_size: int = 2
) -> Iterator[int]:
    """Run PgBouncer (transaction pooling, trust) before ``host``:``port`` (a socket directory or
    an address) for ``users``; yields the loopback port it listens on."""
    binary = pgbouncer_binary()
    if binary is None:
        raise RuntimeError("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    host = host or "127.0.0.1"
    listen = _free_port()
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        (work / "users.txt").write_text("".join(f'"{user}" ""\n' for user in set(users) if user))
        (work / "pgbouncer.ini").write_text(
            f"""[databases]
* = host={host} port={port or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {work / "users.txt"}
pool_mode = transaction
default_pool_size = {pool_size}
ignore_startup_parameters = extra_float_digits, options
logfile = {work / "pgbouncer.log"}
"""
        )
        command = [binary, str(work / "pgbouncer.ini")]
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root: run it as the owner of the server's socket
            # directory (who may reach the socket), or as nobody for a TCP server.
            owner = Path(host).owner() if host.startswith("/") else "nobody"
            command[1:1] = ["-u", owner]
            work.chmod(0o755)
            for name in ("users.txt", "pgbouncer.ini"):
                (work / name).chmod(0o644)
            (work / "pgbouncer.log").touch()
            (work / "pgbouncer.log").chmod(0o666)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", listen), timeout=0.2).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        output = process.stdout.read().decode() if process.stdout else ""
                        raise RuntimeError(f"pgbouncer did not start: {output}") from None
                    time.sleep(0.05)
            yield listen
        finally:
            process.terminate()
            process.wait(timeout=10)
