"""Sending over SMTP to a real server on loopback: 4xx replies retried, 5xx failed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

import better_mail
from better_mail import delivery
from better_mail.models import MailLog, MailStatus
from better_mail.templates import MailTemplate
from better_tenant import run_as_system
from tests.mail.smtp_server import ScriptedHandler, smtp_server  # noqa: F401

pytestmark = pytest.mark.django_db


class SmtpNote(MailTemplate):
    name = "test_smtp_note"
    n: int = 0
    subject = "Note {{ n }}"
    mjml = """<mjml><mj-body><mj-section><mj-column><mj-text>note {{ n }}</mj-text>
</mj-column></mj-section></mj-body></mjml>"""


@pytest.fixture(autouse=True)
def mail_settings(settings):
    settings.BETTER_MAIL = {"ASYNC": False, "RETRY_BACKOFF": 30, "MAX_ATTEMPTS": 3}


def queue(to: str | list[str]) -> MailLog:
    """A queued mail (in the test transaction nothing commits, so nothing sends it yet)."""
    return better_mail.send(SmtpNote, to=to, n=1)


def row(log: MailLog) -> MailLog:
    with run_as_system():
        return MailLog.objects.get(pk=log.pk)


def make_due(log: MailLog) -> None:
    with run_as_system():
        MailLog.objects.filter(pk=log.pk).update(send_at=timezone.now() - timedelta(seconds=1))


def test_a_greylisted_recipient_is_retried_and_then_receives_the_mail(
    smtp_server: ScriptedHandler,  # noqa: F811
):
    smtp_server.rcpt["ada@example.com"] = ["450 4.2.0 Greylisted, try again later"]
    log = queue("ada@example.com")

    assert delivery.send_due() == 0
    first = row(log)
    assert first.status == MailStatus.QUEUED
    assert first.send_at > timezone.now() + timedelta(seconds=20)  # RETRY_BACKOFF
    assert "ada@example.com: 450 4.2.0 Greylisted" in first.error
    assert first.recipient_status["ada@example.com"]["status"] == "deferred"
    assert smtp_server.received == []

    make_due(log)
    assert delivery.send_due() == 1
    second = row(log)
    assert second.status == MailStatus.SENT and second.attempts == 2
    assert second.error == ""
    assert [rcpts for rcpts, _ in smtp_server.received] == [["ada@example.com"]]


def test_a_rejected_recipient_fails_the_mail_for_good(
    smtp_server: ScriptedHandler,  # noqa: F811
):
    smtp_server.rcpt["ada@example.com"] = ["550 5.1.1 No such user"] * 5
    log = queue("ada@example.com")

    assert delivery.send_due() == 0
    failed = row(log)
    assert failed.status == MailStatus.FAILED and failed.attempts == 1
    assert "ada@example.com: 550 5.1.1 No such user" in failed.error
    assert failed.recipient_status["ada@example.com"] == {
        "status": "rejected",
        "message_id": None,
        "code": 550,
        "message": "5.1.1 No such user",
    }
    make_due(log)
    assert delivery.send_due() == 0
    assert row(log).attempts == 1  # never claimed again
    assert smtp_server.received == []


def test_mixed_refusals_retry_then_send_to_who_accepts_and_record_who_refused(
    smtp_server: ScriptedHandler,  # noqa: F811
):
    # Nobody takes the mail on the first attempt: one recipient is greylisted, the other does
    # not exist. The greylisted one may take it later, so the mail is retried, not failed.
    smtp_server.rcpt["ada@example.com"] = ["450 4.2.0 Greylisted"]
    smtp_server.rcpt["bob@example.com"] = ["550 5.1.1 No such user"] * 5
    log = queue(["ada@example.com", "bob@example.com"])

    assert delivery.send_due() == 0
    first = row(log)
    assert first.status == MailStatus.QUEUED
    assert "ada@example.com: 450 4.2.0 Greylisted" in first.error
    assert "bob@example.com: 550 5.1.1 No such user" in first.error
    assert first.recipient_status["ada@example.com"]["status"] == "deferred"
    assert first.recipient_status["bob@example.com"]["status"] == "rejected"

    # Next attempt: Ada accepts, Bob is refused again. The mail is sent to Ada, Bob is recorded.
    make_due(log)
    assert delivery.send_due() == 1
    second = row(log)
    assert second.status == MailStatus.SENT
    assert [rcpts for rcpts, _ in smtp_server.received] == [["ada@example.com"]]
    assert second.recipient_status["ada@example.com"]["status"] == "sent"
    assert second.recipient_status["bob@example.com"]["status"] == "rejected"
    assert second.recipient_status["bob@example.com"]["code"] == 550
    assert "some recipients were refused: bob@example.com: 550 5.1.1 No such user" in second.error


@pytest.mark.parametrize(
    ("reply", "status"),
    [("451 4.3.0 Try again later", MailStatus.QUEUED), ("553 5.7.1 Sender rejected", "failed")],
)
def test_a_refused_sender_is_retried_on_4xx_and_failed_on_5xx(
    smtp_server: ScriptedHandler,  # noqa: F811
    reply: str,
    status: str,
):
    smtp_server.mail_from = [reply]
    log = queue("ada@example.com")
    assert delivery.send_due() == 0
    after = row(log)
    assert after.status == status
    assert "SMTPSenderRefused" in after.error and reply.split()[0] in after.error


def test_the_log_stores_the_message_id_the_server_received(
    smtp_server: ScriptedHandler,  # noqa: F811
):
    log = queue("ada@example.com")
    assert delivery.send_due() == 1
    [(_, received)] = smtp_server.received
    assert received["Message-ID"] and received["Message-ID"].startswith("<")
    assert row(log).provider_message_id == received["Message-ID"]


def test_a_message_id_given_by_the_caller_is_kept_and_stored(
    smtp_server: ScriptedHandler,  # noqa: F811
):
    log = better_mail.send(
        SmtpNote, to="ada@example.com", headers={"message-id": "<note-1@acme.example>"}
    )
    assert delivery.send_due() == 1
    [(_, received)] = smtp_server.received
    assert received.get_all("Message-ID") == ["<note-1@acme.example>"]
    assert row(log).provider_message_id == "<note-1@acme.example>"
