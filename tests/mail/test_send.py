"""send(): the log row in the caller's transaction, delivery after commit, tenants, options."""

from __future__ import annotations

from email.mime.text import MIMEText

import pytest
from django.core import mail
from django.db import transaction

import better_mail
from better_mail import delivery, sending
from better_mail.exceptions import InvalidRecipient, TemplateVariableError
from better_mail.models import MailLog, MailStatus
from better_mail.templates import MailTemplate
from better_tenant import run_as, run_as_system

pytestmark = pytest.mark.django_db


class Receipt(MailTemplate):
    name = "test_receipt"
    customer: str
    amount: int
    tags: list[str] = []
    preview_data = {"customer": "Ada", "amount": 12}
    subject = "Receipt for {{ customer }}"
    mjml = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Thanks {{ customer }}, we received {{ amount }} EUR.</mj-text>
<mj-button href="https://example.com/receipts">See receipts</mj-button>
</mj-column></mj-section></mj-body></mjml>"""


@pytest.fixture(autouse=True)
def sync_mode(settings):
    settings.BETTER_MAIL = {"ASYNC": False}
    mail.outbox = []


def all_logs() -> list[MailLog]:
    with run_as_system():
        return list(MailLog.objects.order_by("created_at"))


def send_committed(capture, **kwargs):
    kwargs.setdefault("to", ["ada@example.com"])
    kwargs.setdefault("customer", "Ada")
    kwargs.setdefault("amount", 12)
    with capture(execute=True):
        log = better_mail.send(Receipt, **kwargs)
    return log


def test_a_mail_is_logged_then_sent_after_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        log = better_mail.send("test_receipt", to="ada@example.com", customer="Ada", amount=12)
        # Queued in the caller's transaction; nothing leaves before the commit.
        assert log.status == MailStatus.QUEUED
        assert [row.pk for row in all_logs()] == [log.pk]
        assert mail.outbox == []
    assert len(callbacks) == 1
    callbacks[0]()

    [message] = mail.outbox
    assert message.subject == "Receipt for Ada"
    assert message.to == ["ada@example.com"]
    assert "we received 12 EUR" in message.body
    assert "See receipts (https://example.com/receipts)" in message.body
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html" and "we received 12 EUR" in html
    assert message.metadata["better_mail_id"] == str(log.pk)

    [row] = all_logs()
    assert row.status == MailStatus.SENT
    assert row.attempts == 1 and row.sent_at is not None and row.error == ""
    assert row.subject == "Receipt for Ada" and row.template == "test_receipt"
    # The rendered message is dropped once sent; bodies are not stored by default.
    assert row.payload is None and row.html_body == "" and row.text_body == ""


def test_bodies_are_kept_with_store_bodies(settings, django_capture_on_commit_callbacks):
    settings.BETTER_MAIL = {"ASYNC": False, "STORE_BODIES": True}
    log = send_committed(django_capture_on_commit_callbacks)
    row = log.refresh()
    assert "we received 12 EUR" in row.html_body and "<html" in row.html_body
    assert row.text_body.startswith("Thanks Ada, we received 12 EUR.")


def test_a_rolled_back_transaction_sends_nothing_and_leaves_no_row(
    django_capture_on_commit_callbacks,
):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        better_mail.send(Receipt, to=["ada@example.com"], customer="Ada", amount=1)
        raise RuntimeError("order failed")
    assert callbacks == []
    assert mail.outbox == []
    assert all_logs() == []


def test_invalid_variables_or_recipients_write_nothing(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(TemplateVariableError, match="'amount' must be int"):
            better_mail.send(Receipt, to=["ada@example.com"], customer="Ada", amount="12")
        with pytest.raises(InvalidRecipient, match="'not-an-address' is not an email address"):
            better_mail.send(Receipt, to=["not-an-address"], customer="Ada", amount=1)
        with pytest.raises(InvalidRecipient, match="at least one recipient"):
            better_mail.send(Receipt, to=[], customer="Ada", amount=1)
        with pytest.raises(ValueError, match="aware datetime"):
            import datetime

            better_mail.send(
                Receipt, to="a@example.com", customer="A", amount=1, send_at=datetime.datetime.now()
            )
    assert all_logs() == [] and mail.outbox == []


def test_context_and_keyword_variables_merge(django_capture_on_commit_callbacks):
    # "tags" is also a parameter of send(): as a variable it goes through context=.
    with django_capture_on_commit_callbacks(execute=True):
        log = better_mail.send(
            Receipt,
            to="bob@example.com",
            context={"customer": "Bob", "tags": ["vip"]},
            amount=3,
            tags=["billing"],
        )
    assert mail.outbox[0].subject == "Receipt for Bob"
    assert log.refresh().tags == ["billing"]


def test_recipients_headers_attachments_and_metadata_reach_the_backend(
    django_capture_on_commit_callbacks,
):
    part = MIMEText("inline part", "plain")
    part.add_header("Content-Disposition", "attachment", filename="note.txt")
    log = send_committed(
        django_capture_on_commit_callbacks,
        to=["Ada Lovelace <ada@example.com>"],
        cc="cc@example.com",
        bcc=["bcc@example.com"],
        reply_to="support@example.com",
        from_email="Billing <billing@example.com>",
        headers={"X-Campaign": "spring"},
        attachments=[
            ("invoice.pdf", b"%PDF-1.4 binary\x00\xff", "application/pdf"),
            ("readme.txt", "plain text", "text/plain"),
            part,
        ],
        metadata={"order": "A-1"},
        tags=["billing"],
    )
    [message] = mail.outbox
    assert message.to == ["Ada Lovelace <ada@example.com>"]
    assert (message.cc, message.bcc, message.reply_to) == (
        ["cc@example.com"],
        ["bcc@example.com"],
        ["support@example.com"],
    )
    assert message.from_email == "Billing <billing@example.com>"
    # Besides the caller's headers, the Message-ID that the log stores.
    message_id = message.extra_headers["Message-ID"]
    assert message.extra_headers == {"X-Campaign": "spring", "Message-ID": message_id}
    pdf, readme, mime = message.attachments
    assert tuple(pdf) == ("invoice.pdf", b"%PDF-1.4 binary\x00\xff", "application/pdf")
    assert tuple(readme) == ("readme.txt", "plain text", "text/plain")
    assert mime.get_filename() == "note.txt" and mime.get_payload() == "inline part"
    assert message.metadata == {"order": "A-1", "better_mail_id": str(log.pk)}
    assert message.tags == ["billing"]
    # The whole message serializes (what SMTP would send).
    assert b"X-Campaign: spring" in message.message().as_bytes()
    row = log.refresh()
    assert row.provider_message_id == message_id
    assert row.recipients == ["Ada Lovelace <ada@example.com>", "cc@example.com", "bcc@example.com"]
    assert row.from_email == "Billing <billing@example.com>"
    assert row.metadata == {"order": "A-1"}


def test_the_default_sender_comes_from_settings(settings, django_capture_on_commit_callbacks):
    settings.DEFAULT_FROM_EMAIL = "site@example.com"
    send_committed(django_capture_on_commit_callbacks)
    assert mail.outbox[0].from_email == "site@example.com"
    settings.BETTER_MAIL = {"ASYNC": False, "DEFAULT_FROM": "mail@example.com"}
    send_committed(django_capture_on_commit_callbacks)
    assert mail.outbox[1].from_email == "mail@example.com"


def test_an_idempotency_key_sends_once(django_capture_on_commit_callbacks):
    first = send_committed(django_capture_on_commit_callbacks, idempotency_key="order-1-receipt")
    second = send_committed(django_capture_on_commit_callbacks, idempotency_key="order-1-receipt")
    assert second.pk == first.pk
    assert len(mail.outbox) == 1 and len(all_logs()) == 1
    send_committed(django_capture_on_commit_callbacks, idempotency_key="order-2-receipt")
    assert len(mail.outbox) == 2


def test_the_idempotency_key_holds_within_a_tenant(tenant, django_capture_on_commit_callbacks):
    with run_as(tenant):
        first = send_committed(django_capture_on_commit_callbacks, idempotency_key="k-1")
    with run_as(tenant):
        again = send_committed(django_capture_on_commit_callbacks, idempotency_key="k-1")
    assert again.pk == first.pk and len(mail.outbox) == 1


def test_logs_are_scoped_to_the_tenant_that_sent_them(
    tenant, other_tenant, django_capture_on_commit_callbacks
):
    with run_as(tenant):
        log_a = send_committed(django_capture_on_commit_callbacks)
    with run_as(other_tenant):
        log_b = send_committed(django_capture_on_commit_callbacks, to=["bob@example.com"])
    outside = send_committed(django_capture_on_commit_callbacks, to=["ops@example.com"])

    assert (log_a.tenant_id, log_b.tenant_id, outside.tenant_id) == (
        tenant.pk,
        other_tenant.pk,
        None,
    )
    with run_as(tenant):
        assert [row.pk for row in MailLog.objects.all()] == [log_a.pk]
        # Another tenant's mail cannot be read or changed, even by id.
        assert not MailLog.objects.filter(pk=log_b.pk).exists()
        assert MailLog.objects.filter(pk=log_b.pk).update(subject="hacked") == 0
    with run_as(other_tenant):
        assert [row.pk for row in MailLog.objects.all()] == [log_b.pk]
    # Mails without a tenant are visible in system mode only.
    assert not MailLog.objects.filter(pk=outside.pk).exists()
    # All three were delivered after their scopes ended (the sender works in system mode).
    assert {row.status for row in all_logs()} == {MailStatus.SENT}
    assert len(mail.outbox) == 3


def test_a_queued_mail_can_be_cancelled(django_capture_on_commit_callbacks):
    import datetime

    from django.utils import timezone

    later = timezone.now() + datetime.timedelta(hours=1)
    log = send_committed(django_capture_on_commit_callbacks, send_at=later)
    assert mail.outbox == [] and log.refresh().status == MailStatus.QUEUED
    assert log.cancel() is True
    row = log.refresh()
    assert row.status == MailStatus.CANCELLED and row.payload is None
    assert log.cancel() is False
    with run_as_system():
        MailLog.objects.filter(pk=log.pk).update(send_at=timezone.now())
    assert delivery.send_due() == 0
    assert mail.outbox == []


def test_a_tenant_cannot_cancel_another_tenants_mail(
    tenant, other_tenant, django_capture_on_commit_callbacks
):
    import datetime

    from django.utils import timezone

    later = timezone.now() + datetime.timedelta(hours=1)
    with run_as(tenant):
        log = send_committed(django_capture_on_commit_callbacks, send_at=later)
    with run_as(other_tenant):
        assert sending.cancel(log) is False
    assert log.refresh().status == MailStatus.QUEUED
    with run_as(tenant):
        assert sending.cancel(log) is True


def test_the_console_magic_link_can_be_sent(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        better_mail.send(
            "console_magic_link",
            to="admin@example.com",
            code="734021",
            expires_minutes=10,
            console_url="https://example.com/console",
        )
    [message] = mail.outbox
    # The code is in the body only: subjects are stored in mail_logs.
    assert message.subject == "Your console sign-in code"
    assert "734021" in message.body and "https://example.com/console" in message.body


def test_a_sensitive_templates_bodies_are_never_stored(
    settings, django_capture_on_commit_callbacks
):
    """A credential in a stored body would be readable by whoever may read the log."""
    settings.BETTER_MAIL = {"ASYNC": False, "STORE_BODIES": True}
    with django_capture_on_commit_callbacks(execute=True):
        log = better_mail.send("console_magic_link", to="admin@example.com", code="734021")
    with run_as_system():
        stored = MailLog.objects.get(pk=log.pk)
    assert stored.status == "sent"
    assert stored.html_body == "" and stored.text_body == ""
    assert "734021" not in stored.subject
    assert "734021" in mail.outbox[-1].body


def test_mails_go_through_the_default_mailer_of_the_running_django(settings):
    # MAILERS["default"] on Django 6.1+, EMAIL_BACKEND before: the one the project configured.
    from better_mail.delivery import mail_backend
    from tests.mail.backends import CountingBackend, use_backend

    use_backend(settings, "tests.mail.backends.CountingBackend")
    assert isinstance(mail_backend(), CountingBackend)
