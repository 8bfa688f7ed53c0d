"""The demo launcher: migrate, load demo data, then run the web server and workers until Ctrl-C.

``python -m example_project.run_demo`` (what ``make demo`` runs). With no DATABASE_URL / REDIS_URL
the example settings start the embedded PostgreSQL and Redis in ``.data/``. Every child runs in a
process group of its own, so stopping the demo (Ctrl-C, SIGTERM, SIGHUP, or one child dying)
ends each child together with whatever it started (Celery's pool, for one).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
MANAGE = str(ROOT / "manage.py")
LOG_DIR = ROOT / ".data" / "demo"
STOP_TIMEOUT = 15.0
READY_TIMEOUT = 90.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and where its output is."""


def _in_own_group() -> None:
    # Runs in the child between fork and exec: a process group of its own (the terminal's Ctrl-C
    # reaches only the launcher, which stops the children in order), and on Linux a SIGTERM when
    # the launcher dies without cleaning up (e.g. SIGKILL), so no child outlives it.
    os.setsid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


@dataclass
class Child:
    """One supervised process and the process group it leads."""

    name: str
    command: list[str]
    log: Path | None = None
    # stderr apart from stdout (in ``log``), so that the stdout of a step can be shown as it is.
    err_log: Path | None = None
    process: subprocess.Popen | None = None
    _files: list[IO[bytes]] = field(default_factory=list, repr=False)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, env: dict[str, str]) -> None:
        stdout: Any = None
        stderr: Any = None
        if self.log is not None:
            stdout, stderr = self._open(self.log), subprocess.STDOUT
        if self.err_log is not None:
            stderr = self._open(self.err_log)
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            preexec_fn=_in_own_group,
        )

    def _open(self, path: Path) -> IO[bytes]:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("wb")
        self._files.append(handle)
        return handle

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def group_alive(self) -> bool:
        """Whether any process of the child's group is left (the leader is reaped first)."""
        if self.process is None:
            return False
        self.process.poll()
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def close_log(self) -> None:
        while self._files:
            self._files.pop().close()

    def tail(self, lines: int = 30) -> str:
        text = []
        for path in (self.log, self.err_log):
            if path is not None and path.exists():
                text += path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class Supervisor:
    """Start children, watch them, and stop all of them together."""

    def __init__(self, env: dict[str, str] | None = None, stop_timeout: float = STOP_TIMEOUT):
        self.env = dict(os.environ if env is None else env)
        self.stop_timeout = stop_timeout
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self.force = threading.Event()
        self.signal_received: int | None = None

    def install_signal_handlers(self) -> None:
        """The first Ctrl-C/SIGTERM/SIGHUP asks for a clean stop; the second one forces it."""

        def handler(signum: int, _frame: Any) -> None:
            if self.stopping.is_set():
                self.force.set()
            self.signal_received = signum
            self.stopping.set()

        for signum in STOP_SIGNALS:
            signal.signal(signum, handler)

    def start(self, child: Child) -> Child:
        child.start(self.env)
        self.children.append(child)
        return child

    def run_step(self, child: Child) -> int:
        """Run a finite child to its end (or until a stop is asked); returns its exit code."""
        self.start(child)
        try:
            while child.running():
                if self.stopping.wait(0.1):
                    self.stop()
                    break
            assert child.process is not None
            return child.process.wait()
        finally:
            child.close_log()
            self.children.remove(child)

    def wait(self, poll: float = 0.5) -> Child | None:
        """Block until a stop is asked (None) or a child exits on its own (that child)."""
        while not self.stopping.wait(poll):
            for child in self.children:
                if not child.running():
                    return child
        return None

    def stop(self) -> None:
        """SIGTERM every child's group (last started first); SIGKILL what is left at the end."""
        for child in reversed(self.children):
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while any(child.group_alive() for child in self.children):
            if self.force.is_set() or time.monotonic() > deadline:
                for child in self.children:
                    child.signal_group(signal.SIGKILL)
                # SIGKILL cannot be refused: wait for the leaders, and a moment for the rest of
                # their groups, which the init process reaps.
                for child in self.children:
                    if child.process is not None:
                        child.process.wait()
                settle = time.monotonic() + 2
                while any(c.group_alive() for c in self.children) and time.monotonic() < settle:
                    time.sleep(0.05)
                break
            time.sleep(0.05)
        for child in self.children:
            child.close_log()


# --- the demo ----------------------------------------------------------------------------------


def _django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    import django

    django.setup()


def _services() -> tuple[str, str]:
    """Where PostgreSQL and Redis are, as told to the user."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if os.environ.get("DATABASE_URL"):
        host = database.get("HOST") or "localhost"
        port = database.get("PORT") or 5432
        postgres = f"DATABASE_URL ({host}:{port}/{database['NAME']}, as {database['USER']})"
    else:
        from better_core.embedded import embedded_pgdata

        folder = embedded_pgdata(ROOT).relative_to(ROOT)
        postgres = f"embedded, data in {folder} (database {database['NAME']})"
    redis = "REDIS_URL" if os.environ.get("REDIS_URL") else "embedded, data in .data/redis"
    return postgres, redis


def _queues() -> list[str]:
    """The default Celery queue and those better_webhooks and better_mail are set to use."""
    from better_mail.conf import mail_settings
    from better_webhooks.conf import webhook_settings
    from example_project.celery import app

    queues = [app.conf.task_default_queue or "celery"]
    for queue in (webhook_settings.CELERY_QUEUE, mail_settings.QUEUE):
        if queue and queue not in queues:
            queues.append(queue)
    return queues


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_until(ready: Callable[[], bool], child: Child, supervisor: Supervisor, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready():
        if supervisor.stopping.is_set():
            return
        if not child.running():
            raise DemoError(f"{child.name} exited before {what}.{_where(child)}")
        if time.monotonic() > deadline:
            raise DemoError(f"{child.name}: no {what} after {READY_TIMEOUT:.0f} s.{_where(child)}")
        time.sleep(0.25)


def _where(child: Child) -> str:
    logs = [str(p.relative_to(ROOT)) for p in (child.log, child.err_log) if p is not None]
    if not logs:
        return ""
    return f" Its output ({', '.join(logs)}):\n{child.tail()}"


def _say(text: str = "") -> None:
    print(text, flush=True)


def _step(supervisor: Supervisor, name: str, args: Sequence[str], note: str) -> str:
    """Run ``manage.py <args>`` with its output in a log; return that output."""
    child = Child(
        name,
        [sys.executable, MANAGE, *args],
        log=LOG_DIR / f"{name}.log",
        err_log=LOG_DIR / f"{name}.err.log",
    )
    _say(f"· {note}")
    code = supervisor.run_step(child)
    if supervisor.stopping.is_set():
        return ""
    if code != 0:
        raise DemoError(f"`manage.py {' '.join(args)}` failed (exit {code}).{_where(child)}")
    assert child.log is not None
    return child.log.read_text(errors="replace")


def _prepare(supervisor: Supervisor, base: str) -> str:
    """Migrate, give the app role its grants, load the demo data; return what to show the user."""
    from django.conf import settings
    from django.core.management import get_commands

    _step(supervisor, "migrate", ["migrate", "--noinput"], "migrate (as the owner role)")
    app_role = settings.DATABASES["default"]["USER"]
    if app_role and app_role != settings.DATABASE_OWNER["USER"]:
        _step(
            supervisor,
            "init",
            ["better_tenant", "init", "--app-role", app_role],
            f"better_tenant init --app-role {app_role} (system role, grants)",
        )
    else:
        _say(
            "! the application connects as the role that owns the tables; set DATABASE_OWNER_URL "
            "to a separate owner (see docs/deployment.md)"
        )
    if "demo_data" in get_commands():
        args = ["demo_data", "--url", base]
        return _step(supervisor, "demo_data", args, f"manage.py demo_data --url {base}")
    for name, slug in (("Acme", "acme"), ("Globex", "globex")):
        _step(
            supervisor,
            f"seed-{slug}",
            ["better_tenant", "seed", "--name", name, "--slug", slug, "--if-missing"],
            f"tenant {slug}",
        )
    return ""


def _fallback_tour(base: str) -> str:
    return "\n".join(
        [
            "Try:",
            f"  curl -s -X POST -H 'X-Tenant-ID: acme' -d '{{\"name\": \"Rocket\"}}' "
            f"{base}/projects",
            f"  curl -s -H 'X-Tenant-ID: acme' {base}/projects",
            f"  curl -s -H 'X-Tenant-ID: globex' {base}/projects",
            f"  open {base}/admin/ (create a user: python manage.py createsuperuser)",
        ]
    )


def _celery_ping(node: str) -> Callable[[], bool]:
    from example_project.celery import app

    def ready() -> bool:
        try:
            return bool(app.control.ping(destination=[node], timeout=1.0))
        except Exception:  # the broker may still be starting
            return False

    return ready


def _start_workers(supervisor: Supervisor) -> list[str]:
    """A Celery worker on the project's queues, and the webhook polling runner when webhooks do
    not go through Celery; returns the lines that describe them."""
    from better_webhooks.sending import celery_enabled

    queues = _queues()
    node = f"demo-{os.getpid()}@{socket.gethostname()}"
    celery = supervisor.start(
        Child(
            "celery",
            [
                sys.executable, "-m", "celery", "-A", "example_project", "worker",
                "--loglevel=INFO", "--concurrency=2", "-n", node, "-Q", ",".join(queues),
                "--without-gossip", "--without-mingle",
            ],
            LOG_DIR / "celery.log",
        )
    )  # fmt: skip
    lines = [f"  celery worker   queues {', '.join(queues)}   log .data/demo/celery.log"]
    if not celery_enabled():
        supervisor.start(
            Child(
                "webhooks",
                [sys.executable, MANAGE, "better_webhooks", "worker"],
                LOG_DIR / "webhooks.log",
            )
        )
        lines.append("  webhook worker  polling runner   log .data/demo/webhooks.log")
    _say(f"· celery worker ({', '.join(queues)})")
    _wait_until(_celery_ping(node), celery, supervisor, "answer to a ping")
    return lines


def run(host: str, port: int, *, worker: bool = True) -> int:
    """Bring the demo up and keep it running until stopped; returns the exit code."""
    if not _port_free(host, port):
        _say(
            f"✗ {host}:{port} is in use (another demo or server?). Stop it, or choose another "
            "port: make demo DEMO_PORT=8001"
        )
        return 1
    supervisor = Supervisor(env={**os.environ, "PYTHONUNBUFFERED": "1"})
    supervisor.env.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    supervisor.install_signal_handlers()
    base = f"http://{host}:{port}"
    try:
        _say("· settings (starts the embedded PostgreSQL and Redis when no URL is set)")
        _django_setup()
        postgres, redis = _services()
        _say(f"  PostgreSQL: {postgres}")
        _say(f"  Redis: {redis}")
        tour = _prepare(supervisor, base)
        if supervisor.stopping.is_set():
            return 0
        # The web server first: the worker may deliver webhooks to its /hooks/ right away.
        web = supervisor.start(
            Child(
                "runserver", [sys.executable, MANAGE, "runserver", f"{host}:{port}", "--noreload"]
            )
        )
        _say(f"· runserver {host}:{port}")
        _wait_until(lambda: _answers(f"{base}/health"), web, supervisor, "answer on /health")
        lines = _start_workers(supervisor) if worker and not supervisor.stopping.is_set() else []
        if supervisor.stopping.is_set():
            return 0
        _say()
        _say(f"✓ The demo is up: {base}/")
        _say(f"  web             {base}/   (runserver, request log below)")
        for line in lines:
            _say(line)
        _say()
        _say(tour.strip() or _fallback_tour(base))
        _say()
        _say("Ctrl-C stops the server and the workers.")
        _say()
        ended = supervisor.wait()
        if ended is not None:
            raise DemoError(
                f"{ended.name} exited (code {ended.process.returncode}).{_where(ended)}"
            )
        return 0
    except DemoError as exc:
        _say(f"✗ {exc}")
        return 1
    finally:
        if supervisor.children:
            _say("· stopping the server and the workers")
        supervisor.stop()


def _service_pid(pid_file: Path, name: str, *markers: str) -> int | None:
    """The pid in ``pid_file`` when that process is still the ``name`` server of this folder."""
    try:
        pid = int(pid_file.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError, IndexError):
        return None
    # A stale pid file may name an unrelated process that reused the pid: check what it runs.
    places = (str(pid_file.parent), *markers)
    return pid if name in cmdline and any(place in cmdline for place in places) else None


def stop_services(data_dir: Path = ROOT / ".data") -> int:
    """Stop the embedded PostgreSQL servers (fast shutdown) and Redis that run from ``data_dir``."""
    redis_dir = (data_dir / "redis").resolve()
    # The short socket name better_core.embedded.start_redis uses when the folder's path is long.
    short_socket = f"better-redis-{hashlib.sha256(str(redis_dir).encode()).hexdigest()[:12]}"
    # One folder per PostgreSQL major (.data/pg18, .data/pg16), and .data/pg of older checkouts.
    folders = sorted(data_dir.glob("pg*")) or [data_dir / "pg"]
    targets = [
        *(
            (
                f"PostgreSQL ({folder.name})",
                _service_pid(folder / "postmaster.pid", "postgres"),
                signal.SIGINT,
            )
            for folder in folders
        ),
        (
            "Redis",
            _service_pid(redis_dir / "redis.pid", "redis-server", short_socket),
            signal.SIGTERM,
        ),
    ]
    for name, pid, signum in targets:
        if pid is None:
            _say(f"· embedded {name} is not running")
            continue
        os.kill(pid, signum)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            _say(f"✗ embedded {name} (pid {pid}) did not stop within 30 s")
            return 1
        _say(f"✓ stopped the embedded {name} (pid {pid})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m example_project.run_demo",
        description="Migrate, load the demo data and run the example SaaS with its workers.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument("--port", type=int, default=8000, help="port to serve on (default 8000)")
    parser.add_argument(
        "--no-worker", action="store_true", help="start no Celery or webhook worker"
    )
    parser.add_argument(
        "--stop-services",
        action="store_true",
        help="stop the embedded PostgreSQL and Redis of .data/ and exit",
    )
    options = parser.parse_args(argv)
    if options.stop_services:
        return stop_services()
    return run(options.host, options.port, worker=not options.no_worker)


if __name__ == "__main__":
    sys.exit(main())
