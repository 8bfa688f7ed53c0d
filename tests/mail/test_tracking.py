"""django-anymail: provider message ids on the log, and tracking events moving its status."""

from __future__ import annotations

import datetime

import pytest
from anymail.signals import AnymailTrackingEvent, tracking
from django.core import mail

import better_mail
from better_mail import tracking as mail_tracking
from better_mail.models import MailLog, MailStatus
from better_mail.templates import MailTemplate
from better_tenant import run_as
from tests.mail.backends import use_backend

pytestmark = pytest.mark.django_db


class Notice(MailTemplate):
    name = "test_notice"
    subject = "Notice"
    mjml = """<mjml><mj-body><mj-section><mj-column><mj-text>notice</mj-text></mj-column>
</mj-section></mj-body></mjml>"""


@pytest.fixture(autouse=True)
def anymail_backend(settings):
    use_backend(settings, "anymail.backends.test.EmailBackend")
    settings.BETTER_MAIL = {"ASYNC": False}
    mail.outbox = []


def send(capture, **kwargs) -> MailLog:
    kwargs.setdefault("to", ["ada@example.com", "bob@example.com"])
    with capture(execute=True):
        return better_mail.send(Notice, **kwargs)


def event(log: MailLog | None, event_type: str, **kwargs) -> None:
    metadata = {"better_mail_id": str(log.pk)} if log is not None else {}
    tracking.send(
        sender=object,
        event=AnymailTrackingEvent(event_type=event_type, metadata=metadata, **kwargs),
        esp_name="Test",
    )


def test_the_provider_message_id_and_recipient_statuses_are_recorded(
    django_capture_on_commit_callbacks,
):
    log = send(django_capture_on_commit_callbacks, tags=["welcome"], metadata={"user": "7"})
    [message] = mail.outbox
    assert message.anymail_test_params["metadata"] == {
        "user": "7",
        "better_mail_id": str(log.pk),
    }
    assert message.anymail_test_params["tags"] == ["welcome"]
    row = log.refresh()
    assert row.status == MailStatus.SENT and row.provider == "Test"
    # The test backend's message id is the message's index in the outbox.
    assert row.provider_message_id == "0"
    assert row.recipient_status == {
        "ada@example.com": {"status": "sent", "message_id": "0"},
        "bob@example.com": {"status": "sent", "message_id": "0"},
    }


def test_tracking_events_move_the_status_forward_only(django_capture_on_commit_callbacks):
    log = send(django_capture_on_commit_callbacks)
    statuses = []
    for kind in ("delivered", "opened", "delivered", "clicked", "opened", "deferred"):
        event(log, kind, recipient="ada@example.com")
        statuses.append(log.refresh().status)
    assert statuses == ["delivered", "opened", "opened", "clicked", "clicked", "clicked"]
    row = log.refresh()
    assert [item["event"] for item in row.events] == [
        "delivered",
        "opened",
        "delivered",
        "clicked",
        "opened",
        "deferred",
    ]
    assert row.recipient_status["ada@example.com"]["status"] == "clicked"
    assert row.recipient_status["bob@example.com"]["status"] == "sent"


@pytest.mark.parametrize("problem", ["bounced", "complained"])
def test_bounces_and_complaints_override_progress(problem, django_capture_on_commit_callbacks):
    log = send(django_capture_on_commit_callbacks)
    event(log, "delivered", recipient="bob@example.com")
    event(log, problem, recipient="bob@example.com", description="mailbox full")
    event(log, "opened", recipient="ada@example.com")
    row = log.refresh()
    assert row.status == problem
    assert row.recipient_status["bob@example.com"]["status"] == problem
    assert row.recipient_status["ada@example.com"]["status"] == "opened"
    assert row.events[1]["description"] == "mailbox full"


def test_a_rejection_marks_the_mail_failed_with_the_reason(django_capture_on_commit_callbacks):
    log = send(django_capture_on_commit_callbacks)
    event(log, "rejected", recipient="ada@example.com", description="blocked by policy")
    row = log.refresh()
    assert row.status == MailStatus.FAILED and row.error == "blocked by policy"


def test_events_without_metadata_match_the_provider_message_id(
    django_capture_on_commit_callbacks,
):
    send(django_capture_on_commit_callbacks)
    log = send(django_capture_on_commit_callbacks, to=["carol@example.com"])
    assert log.refresh().provider_message_id == "1"
    event(None, "delivered", message_id="1", recipient="carol@example.com")
    assert log.refresh().status == MailStatus.DELIVERED
    # An event for a message better_mail did not send changes nothing.
    assert mail_tracking.apply_event(message_id="unknown", event_type="delivered") is None


def test_events_reach_tenant_mails_from_outside_any_scope(
    tenant, django_capture_on_commit_callbacks
):
    with run_as(tenant):
        log = send(django_capture_on_commit_callbacks)
    # Webhooks arrive without a tenant: the update runs in system mode.
    when = datetime.datetime(2026, 5, 1, 12, 0, tzinfo=datetime.UTC)
    event(log, "clicked", recipient="ada@example.com", timestamp=when, click_url="https://x.io")
    row = log.refresh()
    assert row.status == MailStatus.CLICKED and row.tenant_id == tenant.pk
    assert row.events[-1] == {
        "event": "clicked",
        "at": "2026-05-01T12:00:00+00:00",
        "recipient": "ada@example.com",
        "url": "https://x.io",
    }


def test_a_cancelled_mail_stays_cancelled():
    assert mail_tracking.next_status("cancelled", "delivered") == "cancelled"
    assert mail_tracking.next_status("sending", "delivered") == "delivered"
    assert mail_tracking.next_status("bounced", "opened") == "bounced"
    assert mail_tracking.next_status("complained", "bounced") == "bounced"
