"""A real Celery worker sends the mails queued by send(), tenant mails included."""

from __future__ import annotations

import time

import pytest

import better_mail
from better_mail.models import MailLog, MailStatus
from better_tenant import run_as, run_as_system
from tests.mail.test_async import Ping
from tests.support.celery_worker import TIMEOUT, worker_fixture

worker = worker_fixture(
    queue_prefix="better-mail-test",
    doc="A solo-pool worker on a queue of its own, on the test database as the app role.",
)

pytestmark = pytest.mark.django_db(transaction=True)


def wait_until_settled(ids: list, timeout: float = TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        with run_as_system():
            rows = {row.pk: row for row in MailLog.objects.filter(pk__in=ids)}
        if all(row.status not in (MailStatus.QUEUED, MailStatus.SENDING) for row in rows.values()):
            return rows
        if time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_the_worker_sends_queued_mails_after_commit(worker, settings, tenant):
    settings.BETTER_MAIL = {"ASYNC": True, "QUEUE": worker.queue}
    with run_as(tenant):
        in_tenant = better_mail.send(Ping, to="tenant@example.com", n=1)
    outside = better_mail.send(Ping, to="ops@example.com", n=2)
    rows = wait_until_settled([in_tenant.pk, outside.pk])
    log = worker.log.read_text()
    for mail in (in_tenant, outside):
        row = rows[mail.pk]
        assert row.status == MailStatus.SENT, log[-3000:]
        assert row.attempts == 1 and row.sent_at is not None and row.payload is None
        assert row.provider == "django.core.mail.backends.locmem"
    assert rows[in_tenant.pk].tenant_id == tenant.pk and rows[outside.pk].tenant_id is None
