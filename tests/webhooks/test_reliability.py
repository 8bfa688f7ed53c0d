"""Reliability: a killed worker loses nothing, SIGTERM finishes the batch, retries succeed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

import better_webhooks as webhooks
from better_webhooks.db import system_scope
from better_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from tests.support.webhooks import run_worker_until_idle, start_receiver

ROOT = Path(__file__).resolve().parents[2]


def start_worker(*args: str) -> subprocess.Popen:
    from django.db import connection

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "tests.settings"),
        "BETTER_DB_NAME": connection.settings_dict["NAME"],
    }
    command = [sys.executable, "manage.py", "better_webhooks", "worker", "--interval", "0.05"]
    return subprocess.Popen(
        [*command, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def wait_for(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def statuses() -> dict[str, int]:
    with system_scope():
        rows = WebhookDelivery.objects.values_list("status", flat=True)
        counts: dict[str, int] = {}
        for status in rows:
            counts[status] = counts.get(status, 0) + 1
    return counts


def slow_then_fast(receiver, delay: float):
    state = {"slow": True}

    def respond(request):
        if state["slow"]:
            time.sleep(delay)
        return 200, {}, b"ok"

    receiver.respond = respond
    return state


def test_worker_killed_mid_batch_loses_no_delivery(transactional_db, receiver):
    state = slow_then_fast(receiver, 3.0)
    webhooks.create_endpoint(receiver.url(), ["ping"])
    sent = [webhooks.send("ping", {"n": n})[0].message_id for n in range(12)]
    worker = start_worker("--concurrency", "4", "--batch-size", "6")
    try:
        wait_for(lambda: len(receiver.requests) >= 1)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert statuses().get("delivering", 0) >= 1
    state["slow"] = False
    with system_scope():  # the dead worker's lease runs out
        WebhookDelivery.objects.filter(status="delivering").update(
            lease_until=timezone.now() - timedelta(seconds=1)
        )
    run_worker_until_idle()
    assert statuses() == {"delivered": 12}
    received = {request.headers["webhook-id"] for request in receiver.requests}
    assert received == set(sent)


def test_a_killed_worker_duplicates_only_the_requests_in_flight(transactional_db, receiver):
    # One delivery hangs; the rest of the batch is answered at once. The worker is killed while
    # the hung request is still open: every answered delivery must already be recorded.
    state = {"hang": True}

    def respond(request):
        if state["hang"] and b'"n":0' in request.body:
            time.sleep(10)
        return 200, {}, b"ok"

    receiver.respond = respond
    webhooks.create_endpoint(receiver.url(), ["ping"])
    for n in range(40):
        webhooks.send("ping", {"n": n})
    worker = start_worker("--concurrency", "4", "--batch-size", "40")
    try:
        wait_for(lambda: len(receiver.requests) >= 40)
        with contextlib.suppress(AssertionError):  # (a worker recording per batch never gets there)
            wait_for(lambda: statuses().get("delivered", 0) >= 39, timeout=4)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    state["hang"] = False
    with system_scope():  # the dead worker's lease runs out
        WebhookDelivery.objects.filter(status="delivering").update(
            lease_until=timezone.now() - timedelta(seconds=1)
        )
    run_worker_until_idle()
    assert statuses() == {"delivered": 40}
    sent: dict[str, int] = {}
    for request in receiver.requests:
        sent[request.headers["webhook-id"]] = sent.get(request.headers["webhook-id"], 0) + 1
    duplicated = [message for message, count in sent.items() if count > 1]
    # The hung request was the only one in flight.
    assert len(sent) == 40 and len(duplicated) == 1


def test_sigterm_finishes_the_batch_in_flight(transactional_db, receiver):
    slow_then_fast(receiver, 1.0)
    webhooks.create_endpoint(receiver.url(), ["ping"])
    for n in range(3):
        webhooks.send("ping", {"n": n})
    worker = start_worker("--concurrency", "3", "--batch-size", "3")
    try:
        wait_for(lambda: len(receiver.requests) >= 1)
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=15)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, output
    assert statuses() == {"delivered": 3}
    assert b"stopped" in output


def test_receiver_down_then_up_gets_everything(db, fast_retries):
    receiver = start_receiver()
    port = receiver.port
    webhooks.create_endpoint(receiver.url(), ["ping"])
    receiver.server.shutdown()
    receiver.server.server_close()
    sent = {webhooks.send("ping", {"n": n})[0].message_id for n in range(5)}
    run_worker_until_idle_once()
    assert statuses() == {"pending": 5}
    back = start_receiver(port)
    try:
        run_worker_until_idle()
    finally:
        back.server.shutdown()
        back.server.server_close()
    assert statuses() == {"delivered": 5}
    assert {request.headers["webhook-id"] for request in back.requests} == sent
    with system_scope():
        assert WebhookDeliveryAttempt.objects.filter(response_status__isnull=True).count() == 5


def run_worker_until_idle_once() -> None:
    from better_webhooks.worker import Worker

    worker = Worker()
    try:
        worker.run_once()
    finally:
        worker.close()


def test_always_failing_receiver_ends_failed_and_disabled(db, receiver, settings, fast_retries):
    settings.BETTER_WEBHOOKS = {
        **settings.BETTER_WEBHOOKS,
        "DISABLE_AFTER_FAILED_DELIVERIES": 2,
    }
    receiver.answer(500)
    endpoint, _ = webhooks.create_endpoint(receiver.url(), ["ping"])
    webhooks.send("ping", {"n": 1})
    run_worker_until_idle()
    assert statuses() == {"failed": 1}
    with system_scope():
        row = WebhookEndpoint.objects.get(id=endpoint.id)
        assert row.status == "active" and row.consecutive_failures == 1
    webhooks.send("ping", {"n": 2})
    run_worker_until_idle()
    assert statuses() == {"failed": 2}
    assert len(receiver.requests) == 6  # 3 attempts each
    with system_scope():
        row = WebhookEndpoint.objects.get(id=endpoint.id)
        delivery = WebhookDelivery.objects.filter(status="failed").first()
    assert row.status == "disabled" and "2 deliveries in a row" in row.disabled_reason
    assert delivery.attempts == 3 and delivery.last_error == "HTTP 500"


def test_a_success_resets_the_failure_count(db, receiver, settings, fast_retries):
    receiver.answer(500)
    endpoint, _ = webhooks.create_endpoint(receiver.url(), ["ping"])
    webhooks.send("ping", {"n": 1})
    run_worker_until_idle()
    receiver.answer(200)
    webhooks.send("ping", {"n": 2})
    run_worker_until_idle()
    with system_scope():
        row = WebhookEndpoint.objects.get(id=endpoint.id)
    assert row.consecutive_failures == 0 and row.failing_since is None


@pytest.fixture(autouse=True)
def _quiet_worker_logs(caplog):
    caplog.set_level("ERROR", logger="better_webhooks")
