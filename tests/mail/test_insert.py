"""send()'s INSERT of the log row: the row the ORM would write, and the ORM's save when watched."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.db import DataError, transaction
from django.db.models.signals import post_save, pre_save
from django.utils import timezone

import better_mail
from better_mail.models import MailLog, MailStatus
from better_mail.templates import MailTemplate
from better_tenant import run_as, run_as_system
from better_tenant.api import create_tenant

pytestmark = pytest.mark.django_db


class Invoice(MailTemplate):
    name = "test_insert_invoice"
    customer: str
    preview_data = {"customer": "Ada"}
    subject = "Invoice for {{ customer }}"
    mjml = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hello {{ customer }}, your invoice is attached.</mj-text>
</mj-column></mj-section></mj-body></mjml>"""


@pytest.fixture(autouse=True)
def sync_mode(settings):
    settings.BETTER_MAIL = {"ASYNC": False, "STORE_BODIES": True}
    mail.outbox = []


def stored(log: MailLog) -> MailLog:
    with run_as_system():
        return MailLog.objects.get(pk=log.pk)


def columns(log: MailLog) -> dict:
    return {field.attname: getattr(log, field.attname) for field in MailLog._meta.concrete_fields}


def send_everything(**overrides):
    options = {
        "to": ["Ada <ada@example.com>", "bob@example.com"],
        "cc": "carol@example.com",
        "bcc": ["dan@example.com"],
        "reply_to": "billing@example.com",
        "from_email": "Billing <billing@example.com>",
        "tags": ["invoice", "eu"],
        "metadata": {"order": 41, "lines": [{"sku": "A-1", "qty": 2}], "note": None},
        "headers": {"X-Order": 41},
        "attachments": [("invoice.txt", "41 EUR", "text/plain"), ("raw.bin", b"\x00\xff", "x/y")],
        "send_at": timezone.now() + timedelta(hours=1),
        "idempotency_key": "invoice-41",
        "customer": "Ada",
    }
    options.update(overrides)
    return better_mail.send(Invoice, **options)


def test_the_row_holds_every_value_of_the_returned_log():
    tenant = create_tenant("Insert", "insert")
    with run_as(tenant):
        log = send_everything()
    row = stored(log)
    assert columns(row) == columns(log)
    # Spot checks against the inputs, so that a value lost on both sides is caught too.
    assert row.tenant_id == tenant.pk and row.status == MailStatus.QUEUED
    assert row.to == ["Ada <ada@example.com>", "bob@example.com"] and row.cc == [
        "carol@example.com"
    ]
    assert row.metadata == {"order": 41, "lines": [{"sku": "A-1", "qty": 2}], "note": None}
    assert row.payload["headers"] == {"X-Order": "41"}
    assert [item["filename"] for item in row.payload["attachments"]] == ["invoice.txt", "raw.bin"]
    assert "your invoice is attached" in row.html_body and row.text_body
    assert row.attempts == 0 and row.sent_at is None and row.events == []
    assert log._state.adding is False and log._state.db == "default"


def test_a_mail_without_tenant_is_written_and_sent(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        log = better_mail.send(Invoice, to="ada@example.com", customer="Ada")
    row = stored(log)
    assert row.tenant_id is None and row.status == MailStatus.SENT
    [message] = mail.outbox
    assert message.subject == "Invoice for Ada" and message.metadata["better_mail_id"] == str(
        log.pk
    )


def test_the_insert_does_not_go_through_model_save(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("Model.save was called")

    monkeypatch.setattr(MailLog, "save", refuse)
    log = better_mail.send(Invoice, to="ada@example.com", customer="Ada")
    assert stored(log).subject == "Invoice for Ada"


def test_receivers_of_the_model_saves_see_the_mail():
    seen = []

    def before(sender, instance, **kwargs):
        seen.append(("pre", instance.pk, instance._state.adding))

    def after(sender, instance, created, **kwargs):
        seen.append(("post", instance.pk, created))

    pre_save.connect(before, sender=MailLog, dispatch_uid="test_insert.pre")
    post_save.connect(after, sender=MailLog, dispatch_uid="test_insert.post")
    try:
        log = send_everything(idempotency_key=None)
    finally:
        pre_save.disconnect(sender=MailLog, dispatch_uid="test_insert.pre")
        post_save.disconnect(sender=MailLog, dispatch_uid="test_insert.post")
    assert seen == [("pre", log.pk, True), ("post", log.pk, True)]
    assert columns(stored(log)) == columns(log)


def test_a_repeated_idempotency_key_returns_the_first_mail():
    first = send_everything()
    again = send_everything(customer="Someone else")
    assert again.pk == first.pk and again.subject == "Invoice for Ada"
    with run_as_system():
        assert MailLog.objects.filter(idempotency_key="invoice-41").count() == 1


def test_a_value_the_column_refuses_raises_the_django_error_and_queues_nothing(
    django_capture_on_commit_callbacks,
):
    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(DataError),
        transaction.atomic(),
    ):
        better_mail.send(Invoice, to="ada@example.com", customer="Ada", tags=["x" * 101])
    assert callbacks == []
    with run_as_system():
        assert not MailLog.objects.exists()
