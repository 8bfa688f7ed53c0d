"""A real Celery worker in a subprocess, on a queue of its own and the test database."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.testapp.celery import app

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 20
START_TIMEOUT = 40


@dataclass
class Worker:
    """A running worker: send tasks to its queue; its output is in ``log``."""

    queue: str
    log: Path

    def send(self, task: Any, *args: Any, **options: Any) -> Any:
        return task.apply_async(args, queue=self.queue, **options)

    def run(self, task: Any, *args: Any, **options: Any) -> Any:
        return self.send(task, *args, **options).get(timeout=TIMEOUT)


def worker_fixture(
    *,
    queue_prefix: str = "better-test",
    include: Sequence[str] = (),
    database_env: str = "BETTER_DB_NAME",
    doc: str = "",
) -> Callable[..., Iterator[Worker]]:
    """A module-scoped fixture starting a solo-pool worker, as the app role.

    ``include`` names task modules the worker imports besides the installed apps' ``tasks``;
    ``queue_prefix`` begins the name of the worker's queue (a fresh queue per module); the name
    of the test database is passed to the worker in the environment variable ``database_env``,
    which its settings read.
    """

    @pytest.fixture(scope="module")
    def worker(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
        yield from _run_worker(queue_prefix, include, database_env, tmp_path_factory)

    worker.__doc__ = doc or "A solo-pool worker on a queue of its own."
    return worker


def _run_worker(
    queue_prefix: str,
    include: Sequence[str],
    database_env: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    from django.db import connection

    queue = f"{queue_prefix}-{uuid.uuid4().hex[:12]}"
    node = f"{queue}@localhost"
    log = tmp_path_factory.mktemp("celery") / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "tests.settings"),
        database_env: connection.settings_dict["NAME"],
    }
    command = [
        sys.executable, "-m", "celery", "-A", "tests.testapp.celery", "worker",
        "--pool=solo", "--concurrency=1", "-Q", queue, "-n", node, "--loglevel=INFO",
        *(f"--include={module}" for module in include),
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not app.control.ping(destination=[node], timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"The Celery worker did not start:\n{log.read_text()[-3000:]}")
        yield Worker(queue, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)


@contextlib.contextmanager
def eager_tasks(*, propagates: bool) -> Iterator[None]:
    """Run tasks in the caller (``task_always_eager``); ``propagates``: their errors are raised."""
    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, propagates
    try:
        yield
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = saved
