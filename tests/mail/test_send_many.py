"""send_many(): one template, many mails, one INSERT and one hand-over per batch."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connection
from django.test.utils import CaptureQueriesContext

import better_mail
from better_mail import tasks
from better_mail.exceptions import InvalidRecipient, TemplateVariableError
from better_mail.models import MailLog, MailStatus
from better_mail.templates import MailTemplate
from better_tenant import run_as, run_as_system
from tests.mail.backends import use_backend

pytestmark = pytest.mark.django_db


class Digest(MailTemplate):
    name = "test_digest"
    user: str
    count: int = 0
    subject = "Digest for {{ user }}"
    preview_data = {"user": "Ada"}  # better_mail check renders every registered template
    mjml = """<mjml><mj-body><mj-section><mj-column><mj-text>{{ user }}: {{ count }} new
</mj-text></mj-column></mj-section></mj-body></mjml>"""


class ConnectionCountingBackend(BaseEmailBackend):
    """Counts the connections opened and the messages sent over them."""

    opened = 0
    sent: list[Any] = []

    def open(self) -> bool:
        ConnectionCountingBackend.opened += 1
        return True

    def send_messages(self, email_messages: list[Any]) -> int:
        ConnectionCountingBackend.sent += email_messages
        return len(email_messages)


def mails(n: int) -> list[dict[str, Any]]:
    return [
        {"to": f"user{i}@example.com", "context": {"user": f"User {i}", "count": i}}
        for i in range(n)
    ]


def stored() -> list[MailLog]:
    with run_as_system():
        return list(MailLog.objects.order_by("to"))


def test_one_insert_and_one_task_per_batch(settings, django_capture_on_commit_callbacks):
    settings.BETTER_MAIL = {"ASYNC": True, "BATCH_SIZE": 100}
    with (
        mock.patch.object(tasks.send_many, "apply_async") as publish,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        CaptureQueriesContext(connection) as queries,
    ):
        logs = better_mail.send_many(Digest, mails(250), tags=["digest"])
    assert len(callbacks) == 1  # one hand-over for the whole call
    inserts = [q for q in queries if q["sql"].startswith('INSERT INTO "mail_logs"')]
    assert len(inserts) == 3
    assert [len(call.kwargs["args"][0]) for call in publish.call_args_list] == [100, 100, 50]
    assert len(logs) == 250 and {log.status for log in logs} == {MailStatus.QUEUED}
    rows = {log.to[0]: log for log in stored()}
    assert len(rows) == 250
    assert rows["user7@example.com"].subject == "Digest for User 7"
    assert rows["user7@example.com"].tags == ["digest"]


def test_a_bad_mail_writes_nothing_and_says_which(settings):
    items = mails(6)
    items[4] = {"to": "user4@example.com", "context": {"count": 4}}  # no user
    with pytest.raises(TemplateVariableError) as error:
        better_mail.send_many(Digest, items)
    assert "(send_many(): mail 4)" in error.value.__notes__
    with pytest.raises(TypeError, match="mail 1 has subject"):
        better_mail.send_many(Digest, [mails(1)[0], {"to": "a@example.com", "subject": "x"}])
    with pytest.raises(InvalidRecipient, match="mail 0 has no 'to'"):
        better_mail.send_many(Digest, [{"context": {"user": "x"}}])
    with pytest.raises(InvalidRecipient):
        better_mail.send_many(Digest, [{"to": "not an address", "context": {"user": "x"}}])
    assert stored() == []


def test_each_mail_may_override_tags_and_metadata():
    items = mails(2)
    items[1]["tags"] = ["vip"]
    items[1]["metadata"] = {"segment": "b"}
    with mock.patch.object(tasks.send_many, "apply_async"):
        better_mail.send_many(Digest, items, tags=["digest"], metadata={"segment": "a"})
    first, second = stored()
    assert (first.tags, first.metadata) == (["digest"], {"segment": "a"})
    assert (second.tags, second.metadata) == (["vip"], {"segment": "b"})


def test_the_rows_belong_to_the_tenant_in_scope(tenant, other_tenant):
    with mock.patch.object(tasks.send_many, "apply_async"), run_as(tenant):
        better_mail.send_many(Digest, mails(3))
    assert {log.tenant_id for log in stored()} == {tenant.pk}
    with run_as(other_tenant):
        assert MailLog.objects.count() == 0


def test_the_worker_sends_a_batch_over_one_connection(settings):
    settings.BETTER_MAIL = {"ASYNC": False, "BATCH_SIZE": 100}
    use_backend(settings, f"{__name__}.ConnectionCountingBackend")
    ConnectionCountingBackend.opened, ConnectionCountingBackend.sent = 0, []
    with (
        mock.patch("better_mail.sending.dispatch"),
        mock.patch("better_mail.delivery.deliver_many"),
    ):
        better_mail.send_many(Digest, mails(60))
    assert better_mail.send_due(limit=100) == 60
    assert len(ConnectionCountingBackend.sent) == 60
    assert ConnectionCountingBackend.opened == 1
    assert {log.status for log in stored()} == {MailStatus.SENT}


def test_an_empty_list_queues_nothing():
    assert better_mail.send_many(Digest, []) == []
    assert stored() == []
