"""Leases: no attempt starts that could outlast its worker's lease, and none outlasts its limit."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

import better_webhooks as webhooks
from better_webhooks import delivery, ssrf, tasks
from better_webhooks.checks import check_configuration
from better_webhooks.client import Client, attempt_limit
from better_webhooks.db import system_scope
from better_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt
from better_webhooks.worker import Worker
from tests.support.webhooks import run_worker_until_idle

# One attempt may last 1.5 s, so an attempt starts only while 3.5 s of the lease are left: a
# 4.5 s lease starts attempts during its first second and releases the rest of the batch.
CONNECT_TIMEOUT = 0.5
TIMEOUT = 1.0
LEASE = 4.5
# Each answer takes this long, so a batch of a few deliveries on one thread outlasts that window.
ANSWER_DELAY = 0.3


@pytest.fixture
def short_lease(settings):
    settings.BETTER_WEBHOOKS = {
        **settings.BETTER_WEBHOOKS,
        "CONNECT_TIMEOUT": CONNECT_TIMEOUT,
        "TIMEOUT": TIMEOUT,
        "LEASE_SECONDS": LEASE,
    }
    assert delivery.lease_needed() == LEASE - 1


@pytest.fixture
def slow_receiver(receiver):
    def respond(request):
        time.sleep(ANSWER_DELAY)
        return 200, {}, b"ok"

    receiver.respond = respond
    return receiver


def send_many(receiver, count: int) -> list[WebhookDelivery]:
    webhooks.create_endpoint(receiver.url(), ["ping"])
    return [webhooks.send("ping", {"n": n})[0] for n in range(count)]


def rows() -> dict:
    with system_scope():
        return {row.id: row for row in WebhookDelivery.objects.all()}


def received_ids(receiver) -> Counter:
    return Counter(request.headers["webhook-id"] for request in receiver.requests)


def test_a_batch_releases_what_its_lease_cannot_cover_and_each_is_sent_once(
    db, slow_receiver, short_lease
):
    sent = send_many(slow_receiver, 8)
    earlier = timezone.now() - timedelta(minutes=1)
    with system_scope():
        # Due retries: one failed attempt each.
        WebhookDelivery.objects.update(
            attempts=1, last_error="HTTP 500", last_status_code=500, next_attempt_at=earlier
        )
    worker = Worker(concurrency=1, batch_size=8, worker_id="first")
    try:
        attempted = worker.run_once()
    finally:
        worker.close()
    # 8 answers of 0.3 s one after the other do not fit in the first second.
    assert 1 <= attempted < 8
    assert worker.released == 8 - attempted
    assert len(slow_receiver.requests) == attempted

    state = rows()
    released = [row for row in state.values() if row.status == "pending"]
    assert len(released) == worker.released
    for row in released:
        # Untouched but for the lease: same attempt count, error and due time.
        assert row.attempts == 1 and row.last_error == "HTTP 500" and row.last_status_code == 500
        assert row.lease_until is None and row.locked_by is None
        assert row.next_attempt_at == earlier
    with system_scope():
        assert not WebhookDeliveryAttempt.objects.filter(
            delivery_id__in=[row.id for row in released]
        ).exists()
    assert {row.status for row in state.values()} == {"pending", "delivered"}

    # Released deliveries are due: the next claim takes them, and each is sent once in all.
    run_worker_until_idle(worker_id="second")
    state = rows()
    assert {row.status for row in state.values()} == {"delivered"}
    assert {row.attempts for row in state.values()} == {2}
    counts = received_ids(slow_receiver)
    assert set(counts) == {d.message_id for d in sent}
    assert set(counts.values()) == {1}


def _run(worker: Worker, receiver, errors: list[BaseException]) -> None:
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            if any(count > 1 for count in received_ids(receiver).values()):
                return  # sent twice: the test fails on it
            if worker.run_once() == 0:
                with system_scope():
                    if not WebhookDelivery.objects.exclude(status="delivered").exists():
                        return
                time.sleep(0.02)
        raise AssertionError(f"worker {worker.worker_id} did not finish")
    except BaseException as exc:  # reported by the test's thread
        errors.append(exc)
    finally:
        worker.close()
        connections.close_all()


def test_two_workers_never_send_a_delivery_twice_when_batches_outlast_the_lease(
    transactional_db, slow_receiver, short_lease
):
    # One thread needs 20 x 0.3 s = 6 s for the batch: longer than the 4.5 s lease, after which
    # the other worker could claim what is still held.
    sent = send_many(slow_receiver, 20)
    first = Worker(concurrency=1, batch_size=20, worker_id="first", interval=0.01)
    second = Worker(concurrency=1, batch_size=20, worker_id="second", interval=0.01)
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_run, args=(w, slow_receiver, errors)) for w in (first, second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not errors, errors
    counts = received_ids(slow_receiver)
    assert set(counts.values()) == {1}
    assert set(counts) == {d.message_id for d in sent}
    assert first.released + second.released >= 1
    state = rows()
    assert {row.status for row in state.values()} == {"delivered"}
    assert {row.attempts for row in state.values()} == {1}
    with system_scope():
        assert WebhookDeliveryAttempt.objects.count() == 20


def test_the_celery_task_publishes_what_it_released_again(
    db, slow_receiver, short_lease, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "CELERY": True}
    published: list[tuple[list[str], dict]] = []
    monkeypatch.setattr(
        tasks.deliver, "apply_async", lambda args, **options: published.append((args[0], options))
    )
    sent = send_many(slow_receiver, 40)
    with django_capture_on_commit_callbacks() as callbacks:
        counts = tasks.deliver.apply(args=[[str(d.id) for d in sent]]).get()
    # Published only once the outcomes are committed.
    assert published == []
    for callback in callbacks:
        callback()
    # On the task's 8 threads, at most 4 x 8 answers of 0.3 s start in the first second.
    assert counts.get("delivered", 0) >= 1 and counts.get("released", 0) >= 1
    assert sum(counts.values()) == 40
    # An attempt cut by its time limit (only on a heavily loaded machine) becomes a retry,
    # published with a countdown; the released deliveries are published at once.
    retried = {i for ids, options in published if "countdown" in options for i in ids}
    assert len(retried) == counts.get("pending", 0)
    ((ids, _),) = [entry for entry in published if "countdown" not in entry[1]]
    with system_scope():
        pending = {
            str(i)
            for i in WebhookDelivery.objects.filter(status="pending").values_list("id", flat=True)
        }
    assert set(ids) == pending - retried and len(ids) == counts["released"]

    for _ in range(20):
        if not published:
            break
        ids, _ = published.pop()
        with system_scope():
            # Retries wait for their countdown; here they are run at once.
            WebhookDelivery.objects.filter(id__in=ids).update(next_attempt_at=timezone.now())
        with django_capture_on_commit_callbacks(execute=True):
            tasks.deliver.apply(args=[ids]).get()
    assert not published
    assert {row.status for row in rows().values()} == {"delivered"}
    received = received_ids(slow_receiver)
    assert set(received) == {d.message_id for d in sent}
    # Released deliveries were never sent before: each arrives exactly once.
    once = {d.message_id for d in sent if str(d.id) not in retried}
    assert {received[message_id] for message_id in once} == {1}


def test_a_lease_shorter_than_one_attempt_sends_nothing_and_is_a_check_warning(
    db, receiver, settings
):
    assert "better_webhooks.W003" not in {m.id for m in check_configuration()}
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "LEASE_SECONDS": 20}
    (warning,) = [m for m in check_configuration() if m.id == "better_webhooks.W003"]
    assert "22" in warning.hint  # 5 s + 15 s + the margin to record
    assert "262" in warning.hint  # a whole batch: ceil(100 / 8) x 20 s + the margin

    sent = send_many(receiver, 3)
    worker = Worker(worker_id="short")
    try:
        assert worker.run_once() == 0
    finally:
        worker.close()
    assert worker.released == 3
    assert receiver.requests == []
    for row in rows().values():
        assert row.status == "pending" and row.attempts == 0 and row.locked_by is None
    assert {row.id for row in rows().values()} == {d.id for d in sent}


# -- the attempt's total deadline ---------------------------------------------------------------


@dataclass
class Drip:
    """A receiver that answers ``prefix``, then one more byte every ``every`` seconds."""

    listener: socket.socket
    prefix: bytes
    count: int
    scheme: str = "http"
    every: float = 0.05
    hung_up: threading.Event = field(default_factory=threading.Event)
    dripped_out: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.listener.getsockname()[1]}/hook"

    def serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            request = conn.recv(65536)  # a TLS client hello comes in one piece
            while self.scheme == "http" and b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            try:
                conn.sendall(self.prefix)
                for _ in range(self.count):
                    time.sleep(self.every)
                    conn.sendall(b"x")
            except OSError:
                self.hung_up.set()
                return
            self.dripped_out.set()


@pytest.fixture
def drip() -> Iterator:
    started: list[Drip] = []

    def start(prefix: bytes, count: int = 400, scheme: str = "http") -> Drip:
        server = Drip(socket.create_server(("127.0.0.1", 0)), prefix, count, scheme)
        threading.Thread(target=server.serve, daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.listener.close()


@pytest.fixture
def short_attempts(settings):
    settings.BETTER_WEBHOOKS = {
        **settings.BETTER_WEBHOOKS,
        "CONNECT_TIMEOUT": CONNECT_TIMEOUT,
        "TIMEOUT": TIMEOUT,
    }
    # Each byte comes well within the read timeout: only a total deadline ends the attempt.
    assert attempt_limit() == CONNECT_TIMEOUT + TIMEOUT


def test_a_receiver_dripping_its_headers_is_cut_off_at_the_attempt_limit(drip, short_attempts):
    server = drip(b"HTTP/1.1 200 OK\r\nX-Drip: ")  # 400 bytes, 20 s if nothing cut it short
    client = Client()
    try:
        response = client.post(server.url, b"{}", {"Content-Type": "application/json"})
    finally:
        client.close()
    assert response.status is None
    assert "cut off at its limit of 1.5 s" in response.error
    assert server.hung_up.wait(10)
    assert not server.dripped_out.is_set()


def test_a_receiver_dripping_its_tls_handshake_is_cut_off(drip, short_attempts):
    # A handshake record announcing 16 KiB, then one byte at a time.
    server = drip(b"\x16\x03\x03\x40\x00", scheme="https")
    client = Client()
    try:
        response = client.post(server.url, b"{}", {"Content-Type": "application/json"})
    finally:
        client.close()
    assert response.status is None and response.error
    assert server.hung_up.wait(10)
    assert not server.dripped_out.is_set()


def test_a_slow_name_lookup_ends_within_the_connect_timeout(short_attempts, monkeypatch):
    release = threading.Event()
    looked_up: list[str] = []

    def stuck_resolve(url: str):
        looked_up.append(url)
        release.wait(30)
        raise AssertionError("the lookup should have been given up")

    monkeypatch.setattr(ssrf, "resolve", stuck_resolve)
    client = Client()
    try:
        response = client.post("https://hooks.example.com/in", b"{}", {})
    finally:
        release.set()
        client.close()
    assert looked_up == ["https://hooks.example.com/in"]
    assert response.status is None
    assert response.error == "resolving hooks.example.com took longer than 0.5 s (CONNECT_TIMEOUT)"


def test_a_receiver_dripping_its_body_is_cut_off_and_its_status_stands(drip, short_attempts):
    server = drip(b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n")
    client = Client()
    try:
        response = client.post(server.url, b"{}", {"Content-Type": "application/json"})
    finally:
        client.close()
    assert response.status == 200
    assert "cut off" in response.error
    assert server.hung_up.wait(10)
    assert not server.dripped_out.is_set()


def test_a_dripping_receiver_fails_the_attempt_and_the_delivery_is_retried(
    db, drip, short_attempts
):
    server = drip(b"HTTP/1.1 200 OK\r\nX-Drip: ")
    webhooks.create_endpoint(server.url, ["ping"])
    (sent,) = webhooks.send("ping", {"n": 1})
    worker = Worker(concurrency=1, worker_id="w")
    try:
        assert worker.run_once() == 1
    finally:
        worker.close()
    assert server.hung_up.wait(10)
    with system_scope():
        row = WebhookDelivery.objects.get(id=sent.id)
        (attempt,) = WebhookDeliveryAttempt.objects.filter(delivery_id=sent.id)
    assert row.status == "pending" and row.attempts == 1 and row.locked_by is None
    assert attempt.response_status is None and "cut off" in attempt.error


def test_a_finished_attempt_leaves_its_pooled_connection_alone(receiver, short_attempts):
    client = Client()
    try:
        first = client.post(receiver.url(), b"{}", {})
        # Past the first attempt's deadline: the reused connection must not be cut.
        time.sleep(attempt_limit() + 0.2)
        second = client.post(receiver.url(), b"{}", {})
    finally:
        client.close()
    assert (first.status, first.error) == (200, "")
    assert (second.status, second.error) == (200, "")
    assert len(receiver.requests) == 2
