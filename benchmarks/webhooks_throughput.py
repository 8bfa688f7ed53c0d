"""End-to-end webhook throughput: ``send()`` to a 2xx at a receiver, polling worker and Celery.

One database of its own (``bench_webhooks``, migrated as the owner role, used as the application
role), ``--endpoints`` endpoints on one loopback receiver, ``--deliveries`` deliveries in all:
``deliveries / endpoints`` calls of ``send()``, each in its own transaction (each call fans out to
every endpoint, as an event does to the endpoints that subscribe to it).

* receiver: an asyncio HTTP/1.1 server with keep-alive in a process of its own; it answers every
  POST with 200 and notes when each (``webhook-id``, path) first arrived.
* producer: this process, sending as fast as it can while the runner delivers.
* ``polling``: ``--workers`` processes of ``manage.py better_webhooks worker`` (``--batch-size``,
  ``--concurrency`` threads, ``--interval`` between polls when idle).
* ``celery``: a Celery worker (``--celery-pool``, default ``prefork`` with one process per core
  as ``--celery-concurrency``) on the embedded Redis (``better_core.embedded.start_redis``, or
  ``REDIS_URL``); each ``send()`` publishes one task after commit carrying all its deliveries,
  and a task tops its batch up to ``WORKER_BATCH_SIZE`` with other due deliveries. The worker
  runs with ``CELERY_DB_REUSE_MAX`` (``--celery-db-reuse``, 1,000 tasks per connection), as
  docs/deployment.md recommends: Celery's Django fix-up closes the database connections around
  every task whatever ``CONN_MAX_AGE`` says, and a connection per task measured the connection
  set-up more than the library (the earlier 770-820/s were taken that way, on a threads pool).

Figures per runner: deliveries per second from the first ``send()`` to the last delivery's
arrival, and the p50 and p99 of the time from a delivery's commit to its first arrival at the
receiver. Each run also checks that every delivery is recorded as delivered. The last line sums
them up. Usage: ``python benchmarks/webhooks_throughput.py [--deliveries 10000] [--endpoints 10]
[--runners polling,celery]``. The machine's cores are shared by PostgreSQL, Redis, the receiver,
the producer and the runner.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE = "bench_webhooks"
EVENT = "bench.order_created"
TABLES = ("webhook_delivery_attempts", "webhook_deliveries", "webhook_endpoints")
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


# --- receiver (a process of its own) -------------------------------------------------------------


class _Receiver(asyncio.Protocol):
    """HTTP/1.1 with keep-alive: enough of the protocol for POSTs with a Content-Length."""

    arrivals: dict[bytes, float]

    def __init__(self, arrivals: dict[bytes, float], counter: Any) -> None:
        self.arrivals = arrivals
        self.counter = counter
        self.buffer = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            message_id = b""
            lines = head.split(b"\r\n")
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"webhook-id":
                    message_id = value.strip()
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            path = lines[0].split(b" ")[1] if b" " in lines[0] else b""
            key = message_id + b" " + path
            if key not in self.arrivals:
                self.arrivals[key] = time.time()
                self.counter.value = len(self.arrivals)
            self.transport.write(RESPONSE)


def receiver_main(port_pipe: Any, control: Any, counter: Any) -> None:
    """Serve until told to stop; answer ``dump`` with the arrivals and ``reset`` by forgetting."""
    arrivals: dict[bytes, float] = {}

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Receiver(arrivals, counter), "127.0.0.1", 0, backlog=1024
        )
        port_pipe.send(server.sockets[0].getsockname()[1])
        done = loop.create_future()

        def on_command() -> None:
            command = control.recv()
            if command == "dump":
                control.send({key.decode(): value for key, value in arrivals.items()})
            elif command == "reset":
                arrivals.clear()
                counter.value = 0
                control.send("ok")
            elif command == "stop" and not done.done():
                done.set_result(None)

        loop.add_reader(control.fileno(), on_command)
        await done
        server.close()

    asyncio.run(serve())


class Receiver:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        port_parent, port_child = context.Pipe()
        self.control, control_child = context.Pipe()
        self.counter = context.Value("i", 0, lock=False)
        self.process = context.Process(
            target=receiver_main, args=(port_child, control_child, self.counter), daemon=True
        )
        self.process.start()
        self.port = port_parent.recv()

    def count(self) -> int:
        return int(self.counter.value)

    def dump(self) -> dict[str, float]:
        self.control.send("dump")
        return self.control.recv()

    def reset(self) -> None:
        self.control.send("reset")
        self.control.recv()

    def stop(self) -> None:
        self.control.send("stop")
        self.process.join(5)


# --- runners (subprocesses) ----------------------------------------------------------------------


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "BETTER_DB_NAME": DATABASE,
        "PYTHONUNBUFFERED": "1",
        # Persistent connections, as a deployment has (or PgBouncer gives); the Celery worker
        # also needs CELERY_DB_REUSE_MAX for them (see celery_worker()).
        "CONN_MAX_AGE": os.environ.get("CONN_MAX_AGE", "300"),
        **(extra or {}),
    }


def _wait_for(process: subprocess.Popen, log: Path, marker: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"The runner did not start (no {marker!r}); its output:\n{log.read_text()}")


def start_polling(args: argparse.Namespace, logs: Path) -> list[tuple[subprocess.Popen, Any]]:
    started = []
    for index in range(args.workers):
        log = logs / f"polling-{index}.log"
        handle = log.open("w")
        command = [
            sys.executable,
            str(ROOT / "manage.py"),
            "better_webhooks",
            "worker",
            f"--batch-size={args.batch_size}",
            f"--concurrency={args.concurrency}",
            f"--interval={args.interval}",
        ]
        process = subprocess.Popen(
            command, cwd=ROOT, env=_env(), stdout=handle, stderr=subprocess.STDOUT
        )
        _wait_for(process, log, "webhook worker")
        started.append((process, handle))
    return started


# The worker is started through celery_worker() below, so that it gets the settings of a deployment.
CELERY_WORKER = (
    "import sys; from benchmarks.webhooks_throughput import celery_worker; "
    "celery_worker(int(sys.argv[1]), sys.argv[2:])"
)


def celery_worker(db_reuse: int, argv: list[str]) -> None:
    """Run the example project's Celery worker with ``CELERY_DB_REUSE_MAX`` = ``db_reuse``.

    Celery's Django fix-up closes every database connection before and after each task, whatever
    ``CONN_MAX_AGE`` says (Celery 5.6 and later); only ``CELERY_DB_REUSE_MAX`` keeps a connection
    for that many tasks. Without it each task pays a new PostgreSQL connection (a server process,
    its authentication and cold catalog caches), which cost more than the task's own work.
    """
    from example_project.celery import app

    if db_reuse > 0:
        app.conf.CELERY_DB_REUSE_MAX = db_reuse
    app.worker_main(["worker", *argv])


def start_celery(args: argparse.Namespace, logs: Path, queue: str) -> list[tuple[Any, Any]]:
    log = logs / "celery.log"
    handle = log.open("w")
    command = [
        sys.executable,
        "-c",
        CELERY_WORKER,
        str(args.celery_db_reuse),
        f"--pool={args.celery_pool}",
        f"--concurrency={args.celery_concurrency}",
        "-Q",
        queue,
        "-n",
        f"{queue}@localhost",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        # A log line per task would cost more than some of the tasks themselves.
        "--loglevel=WARNING",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=handle, stderr=handle)
    from example_project.celery import app

    deadline = time.monotonic() + 60
    while not app.control.ping(destination=[f"{queue}@localhost"], timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"The Celery worker did not start; its output:\n{log.read_text()}")
    return [(process, handle)]


def stop(started: list[tuple[subprocess.Popen, Any]]) -> None:
    for process, _ in started:
        process.send_signal(signal.SIGTERM)
    for process, handle in started:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        handle.close()


# --- database ------------------------------------------------------------------------------------


def prepare_database() -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from benchmarks._common import grant_app_privileges
    from better_tenant.testing import connected_as_owner

    app = settings.DATABASES["default"]["USER"]
    with connected_as_owner():
        call_command("migrate", verbosity=0)
        grant_app_privileges(connection, app)
    empty_tables()


def empty_tables(keep_endpoints: bool = False) -> None:
    from django.db import connection

    from better_tenant.testing import connected_as_owner

    tables = TABLES[:2] if keep_endpoints else TABLES
    with connected_as_owner(), connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)}")
        cursor.execute(f"VACUUM ANALYZE {', '.join(TABLES)}")


def create_endpoints(count: int, port: int) -> None:
    from better_webhooks.endpoints import create_endpoint

    for index in range(count):
        create_endpoint(f"http://127.0.0.1:{port}/hook/{index}", [EVENT])


def recorded() -> dict[str, int]:
    from django.db.models import Count

    from better_webhooks import db
    from better_webhooks.models import WebhookDelivery

    with db.system_scope():
        rows = WebhookDelivery.objects.values_list("status").annotate(n=Count("id"))
        return dict(rows)


# --- one run -------------------------------------------------------------------------------------


def produce(sends: int) -> tuple[float, dict[str, float]]:
    """``sends`` calls of send(), each committed on its own; the commit time per message id."""
    from django.db import transaction

    from better_webhooks.sending import send

    commits: dict[str, float] = {}
    started = time.time()
    for number in range(sends):
        with transaction.atomic():
            deliveries = send(EVENT, {"order": number, "total": 1999, "currency": "EUR"})
        commits[deliveries[0].message_id] = time.time()
    return started, commits


def _start(name: str, args: argparse.Namespace, logs: Path, queue: str) -> list[Any]:
    return start_celery(args, logs, queue) if name == "celery" else start_polling(args, logs)


def _collect(
    receiver: Receiver, expected: int, timeout: float
) -> tuple[dict[str, float], dict[str, int]]:
    """Wait for ``expected`` arrivals, then for the runner to record them as delivered."""
    deadline = time.monotonic() + timeout
    while receiver.count() < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    arrivals = receiver.dump()
    statuses: dict[str, int] = {}
    for _ in range(100):
        statuses = recorded()
        if statuses.get("delivered", 0) >= expected:
            break
        time.sleep(0.1)
    return arrivals, statuses


def run(name: str, args: argparse.Namespace, receiver: Receiver) -> dict[str, Any]:
    """Live (the runner delivers while send() runs), then drain (a backlog, runner after)."""
    from django.conf import settings

    from better_webhooks.conf import webhook_settings

    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    queue = f"bench-webhooks-{uuid.uuid4().hex[:8]}"
    settings.BETTER_WEBHOOKS = {
        **settings.BETTER_WEBHOOKS,
        "CELERY": name == "celery",
        "CELERY_QUEUE": queue,
    }
    webhook_settings.reload()
    if name == "celery":
        import example_project.celery  # noqa: F401  (binds the tasks to the Redis broker)
    sends = args.deliveries // args.endpoints
    result: dict[str, Any] = {"name": name}

    # Live: end-to-end rate and commit-to-arrival latency.
    empty_tables(keep_endpoints=True)
    receiver.reset()
    started = _start(name, args, logs, queue)
    try:
        begin, commits = produce(sends)
        expected = len(commits) * args.endpoints
        arrivals, statuses = _collect(receiver, expected, args.timeout)
    finally:
        stop(started)
    latencies = sorted(
        (at - commits[key.split(" ", 1)[0]]) * 1000.0
        for key, at in arrivals.items()
        if key.split(" ", 1)[0] in commits
    )
    last = max(arrivals.values()) if arrivals else begin
    result.update(
        expected=expected,
        arrived=len(arrivals),
        statuses=statuses,
        rate=len(arrivals) / (last - begin) if arrivals else 0.0,
        send_rate=expected / (max(commits.values()) - begin),
        p50=statistics.median(latencies) if latencies else float("nan"),
        p99=latencies[max(0, int(len(latencies) * 0.99) - 1)] if latencies else float("nan"),
    )

    # Drain: the same number of deliveries committed first, then the runner starts.
    empty_tables(keep_endpoints=True)
    receiver.reset()
    produce(sends)
    started = _start(name, args, logs, queue)
    try:
        arrivals, drained = _collect(receiver, expected, args.timeout)
    finally:
        stop(started)
    times = sorted(arrivals.values())
    result.update(
        drain_arrived=len(arrivals),
        drain_statuses=drained,
        drain_rate=(len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0,
    )
    return result


def describe(result: dict[str, Any]) -> str:
    return (
        f"{result['name']} {result['rate']:,.0f}/s "
        f"(p50 {result['p50']:,.0f} ms, p99 {result['p99']:,.0f} ms; "
        f"backlog drained at {result['drain_rate']:,.0f}/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--runners", default="polling,celery")
    parser.add_argument("--workers", type=int, default=2, help="polling worker processes")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16, help="threads per polling worker")
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--celery-pool", default="prefork")
    parser.add_argument(
        "--celery-concurrency",
        type=int,
        default=os.cpu_count() or 2,
        help="Celery worker processes (threads with --celery-pool threads); default: the cores",
    )
    parser.add_argument(
        "--celery-db-reuse",
        type=int,
        default=1000,
        help="CELERY_DB_REUSE_MAX of the Celery worker (tasks per database connection; 0: one "
        "connection per task, Celery's default)",
    )
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--logs", default=str(ROOT / ".data" / "bench_webhooks"))
    args = parser.parse_args()
    runners = [name.strip() for name in args.runners.split(",") if name.strip()]
    unknown = set(runners) - {"polling", "celery"}
    if unknown:
        parser.error(f"unknown runner(s) {', '.join(sorted(unknown))}: use polling and celery")
    if args.deliveries % args.endpoints:
        parser.error("--deliveries must be a multiple of --endpoints")

    from benchmarks._common import bench_database

    bench_database(DATABASE)
    receiver = Receiver()
    os.environ.update({k: v for k, v in _env().items() if k in ("DJANGO_SETTINGS_MODULE",)})
    os.environ["BETTER_DB_NAME"] = DATABASE
    import django

    django.setup()
    from django.conf import settings

    from better_webhooks.events import register_event

    settings.DEBUG = False
    register_event(EVENT, "An order was created (benchmark).", {"type": "object"})
    prepare_database()
    create_endpoints(args.endpoints, receiver.port)
    sends = args.deliveries // args.endpoints
    print(
        f"webhooks_throughput: {args.deliveries:,} deliveries = {sends:,}"
        f" send() x {args.endpoints} endpoints, receiver 127.0.0.1:{receiver.port}, "
        f"{os.cpu_count()} cores"
    )
    results = []
    try:
        for name in runners:
            result = run(name, args, receiver)
            results.append(result)
            print(
                f"  {result['name']} live: {result['rate']:,.0f} deliveries/s end to end "
                f"(send() committed {result['send_rate']:,.0f}/s), commit to first arrival "
                f"p50 {result['p50']:,.1f} ms, p99 {result['p99']:,.1f} ms; "
                f"{result['arrived']:,}/{result['expected']:,} arrived, recorded "
                f"{result['statuses']}"
            )
            print(
                f"  {result['name']} drain: {result['drain_rate']:,.0f} deliveries/s from a "
                f"committed backlog; {result['drain_arrived']:,} arrived, recorded "
                f"{result['drain_statuses']}"
            )
    finally:
        receiver.stop()
    print(
        "webhooks_throughput: "
        + ", ".join(describe(result) for result in results)
        + f", {args.deliveries:,} deliveries"
    )


if __name__ == "__main__":
    main()
