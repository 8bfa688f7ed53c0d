"""Priorities, the attempt log, retention, requeue, per-mail backends and expiry of mails."""

from __future__ import annotations

import datetime
import html
import re
import smtplib
from io import StringIO
from unittest import mock

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

import better_mail
from better_mail import delivery, tasks
from better_mail.exceptions import UnknownBackend
from better_mail.models import MailAttempt, MailLog, MailPriority, MailStatus
from better_mail.requeue import RequeueRefused, requeue
from better_mail.templates import MailTemplate
from better_tenant import run_as, run_as_system
from tests.console.products_support import call, ok
from tests.mail.backends import ScriptedBackend, use_backend

SCRIPTED = "tests.mail.backends.ScriptedBackend"
OTHER = "tests.mail.test_parity.OtherBackend"


class Hello(MailTemplate):
    name = "parity_hello"
    who: str
    subject = "Hello {{ who }}"
    preview_data = {"who": "Ada"}
    mjml = """<mjml><mj-body><mj-section><mj-column><mj-text>Hi {{ who }}</mj-text>
</mj-column></mj-section></mj-body></mjml>"""


class Code(MailTemplate):
    name = "parity_code"
    sensitive = True
    code: str
    subject = "Your code"
    preview_data = {"code": "123456"}
    mjml = """<mjml><mj-body><mj-section><mj-column><mj-text>{{ code }}</mj-text>
</mj-column></mj-section></mj-body></mjml>"""


class Dated(MailTemplate):
    name = "parity_dated"
    day: datetime.date
    subject = "On {{ day }}"
    preview_data = {"day": datetime.date(2026, 1, 2)}
    mjml = """<mjml><mj-body><mj-section><mj-column><mj-text>{{ day }}</mj-text>
</mj-column></mj-section></mj-body></mjml>"""


class OtherBackend(ScriptedBackend):
    """A second mailer, to tell which backend sent which mail."""

    sent: list = []
    opens = 0

    def open(self) -> bool:
        OtherBackend.opens += 1
        return True

    def send_messages(self, email_messages):
        OtherBackend.sent.extend(email_messages)
        return len(email_messages)


@pytest.fixture(autouse=True)
def sync_mail(settings):
    settings.BETTER_MAIL = {"ASYNC": False, "RETRY_BACKOFF": 30, "MAX_ATTEMPTS": 3}
    use_backend(settings, SCRIPTED)
    ScriptedBackend.reset()
    OtherBackend.sent, OtherBackend.opens = [], 0


def fresh(log: MailLog) -> MailLog:
    return log.refresh()


def sent_ids(backend=ScriptedBackend) -> list[str]:
    return [message.metadata["better_mail_id"] for message in backend.sent]


def attempts(log: MailLog) -> list[MailAttempt]:
    with run_as_system():
        return list(MailAttempt.objects.filter(mail_id=log.pk).order_by("at"))


def make_due(log: MailLog) -> None:
    with run_as_system():
        MailLog.objects.filter(pk=log.pk).update(send_at=timezone.now())


# --- 1. priorities -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_queue_is_claimed_high_priority_first_then_by_due_time():
    past = timezone.now() - datetime.timedelta(minutes=5)
    low = better_mail.send(Hello, to="a@example.com", who="low", priority="low", send_at=past)
    normal_late = better_mail.send(Hello, to="a@example.com", who="n2", send_at=timezone.now())
    normal_early = better_mail.send(Hello, to="a@example.com", who="n1", send_at=past)
    high = better_mail.send(Hello, to="a@example.com", who="high", priority="high")
    assert (fresh(high).priority, fresh(low).priority) == (MailPriority.HIGH, MailPriority.LOW)
    assert delivery.send_due(limit=1) == 1
    assert sent_ids() == [str(high.pk)]
    assert delivery.send_due(limit=10) == 3
    assert sent_ids() == [str(m.pk) for m in (high, normal_early, normal_late, low)]


@pytest.mark.django_db
def test_the_default_priority_follows_the_setting(settings):
    assert fresh(better_mail.send(Hello, to="a@example.com", who="x")).priority == 2
    settings.BETTER_MAIL = {"ASYNC": False, "DEFAULT_PRIORITY": "low"}
    assert fresh(better_mail.send(Hello, to="a@example.com", who="x")).priority == 3


@pytest.mark.django_db
def test_a_bad_priority_is_refused_and_nothing_is_written():
    with pytest.raises(ValueError, match="priority='urgent' is not a priority"):
        better_mail.send(Hello, to="a@example.com", who="x", priority="urgent")
    later = timezone.now() + datetime.timedelta(hours=1)
    with pytest.raises(ValueError, match="priority='now'"):
        better_mail.send(Hello, to="a@example.com", who="x", priority="now", send_at=later)
    with run_as_system():
        assert not MailLog.objects.exists()


@pytest.mark.django_db
def test_now_is_sent_in_process_after_commit_even_in_async_mode(
    settings, django_capture_on_commit_callbacks
):
    settings.BETTER_MAIL = {"ASYNC": True}
    with (
        mock.patch.object(tasks.send_mail, "apply_async") as one,
        mock.patch.object(tasks.send_many, "apply_async") as many,
        django_capture_on_commit_callbacks(execute=True),
    ):
        log = better_mail.send(Hello, to="a@example.com", who="x", priority="now")
        normal = better_mail.send(Hello, to="a@example.com", who="y")
    assert fresh(log).status == MailStatus.SENT and fresh(log).priority == MailPriority.NOW
    assert sent_ids() == [str(log.pk)]
    assert not many.called
    one.assert_called_once_with(args=[str(normal.pk)])


@pytest.mark.django_db
def test_the_admin_lists_and_filters_by_priority(admin_client):
    high = better_mail.send(Hello, to="high@example.com", who="x", priority="high")
    better_mail.send(Hello, to="low@example.com", who="y", priority="low")
    url = reverse("admin:better_mail_maillog_changelist")
    page = admin_client.get(url).content.decode()
    assert "column-priority" in page and "priority__exact=1" in page
    filtered = admin_client.get(url, {"priority__exact": "1"}).content.decode()
    assert "high@example.com" in filtered and "low@example.com" not in filtered
    assert str(high.pk) in filtered


# --- 2. the attempt log --------------------------------------------------------------------------


@pytest.mark.django_db
def test_each_attempt_is_recorded_with_its_outcome_error_and_code():
    log = better_mail.send(Hello, to="a@example.com", who="x")
    ScriptedBackend.reset(smtplib.SMTPResponseException(451, b"Try later"))
    delivery.send_due()
    make_due(log)
    ScriptedBackend.reset(smtplib.SMTPRecipientsRefused({"a@example.com": (450, b"Greylisted")}))
    delivery.send_due()
    make_due(log)
    delivery.send_due()
    rows = attempts(log)
    assert [(a.status, a.code) for a in rows] == [
        ("deferred", 451),
        ("deferred", 450),
        ("sent", None),
    ]
    assert "451" in rows[0].error and "Try later" in rows[0].error
    assert "Greylisted" in rows[1].error and rows[2].error == ""
    assert all(a.tenant_id is None for a in rows)


@pytest.mark.django_db
def test_a_permanent_failure_is_recorded_as_a_failed_attempt(tenant):
    with run_as(tenant):
        log = better_mail.send(Hello, to="a@example.com", who="x")
    ScriptedBackend.reset(smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"No such user")}))
    delivery.send_due()
    (attempt,) = attempts(log)
    assert (attempt.status, attempt.code, attempt.tenant_id) == ("failed", 550, tenant.pk)
    assert "No such user" in attempt.error
    # Row-level security: the tenant reads its mail's attempts, another tenant none.
    with run_as(tenant):
        assert MailAttempt.objects.count() == 1


@pytest.mark.django_db
def test_a_mail_its_worker_abandoned_gets_a_failed_attempt(settings):
    log = better_mail.send(Hello, to="a@example.com", who="x")
    with run_as_system():
        MailLog.objects.filter(pk=log.pk).update(
            status=MailStatus.SENDING,
            attempts=1,
            updated_at=timezone.now() - datetime.timedelta(hours=1),
        )
    assert delivery.fail_stale() == 1
    (attempt,) = attempts(log)
    assert attempt.status == "failed" and attempt.error.startswith("interrupted")
    assert fresh(log).status == MailStatus.FAILED


@pytest.mark.django_db
def test_the_admin_page_shows_the_attempts_read_only(admin_client):
    log = better_mail.send(Hello, to="a@example.com", who="x")
    ScriptedBackend.reset(smtplib.SMTPResponseException(451, b"Mailbox busy"))
    delivery.send_due()
    page = admin_client.get(reverse("admin:better_mail_maillog_change", args=[log.pk]))
    body = html.unescape(page.content.decode())
    inline = body[body.index('id="attempt_log-group"') :]
    assert "Delivery attempts" in inline
    assert re.search(r'class="field-status">\s*<p>Deferred</p>', inline)
    assert re.search(r'class="field-code">\s*<p>451</p>', inline)
    assert "Mailbox busy" in inline
    assert 'name="attempt_log-0-error"' not in body  # shown, not editable


@pytest.mark.django_db
def test_the_console_detail_has_the_attempt_log():
    log = better_mail.send(Hello, to="a@example.com", who="x")
    ScriptedBackend.reset(smtplib.SMTPResponseException(451, b"Mailbox busy"))
    delivery.send_due()
    body = ok(call("mail", "GET", f"/logs/{log.pk}"))
    assert body["priority"] == "normal"
    (attempt,) = body["attemptLog"]
    assert (attempt["status"], attempt["code"]) == ("deferred", 451)
    assert "Mailbox busy" in attempt["error"]


# --- 3. retention --------------------------------------------------------------------------------


def aged(days: int, status: str, tenant_id=None) -> MailLog:
    with run_as_system():
        log = MailLog.objects.create(
            template="parity_hello",
            to=["a@example.com"],
            status=status,
            tenant_id=tenant_id,
            created_at=timezone.now() - datetime.timedelta(days=days),
        )
        MailAttempt.objects.create(mail=log, tenant_id=tenant_id, status="sent")
    return log


def run(*args: str) -> str:
    out = StringIO()
    call_command("better_mail", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def remaining() -> set:
    with run_as_system():
        return set(MailLog.objects.values_list("pk", flat=True))


@pytest.fixture
def old_and_new(tenant, other_tenant):
    return {
        "sent": aged(40, MailStatus.SENT, tenant.pk),
        "failed": aged(40, MailStatus.FAILED, other_tenant.pk),
        "cancelled": aged(40, MailStatus.CANCELLED),
        "queued": aged(40, MailStatus.QUEUED, tenant.pk),
        "sending": aged(40, MailStatus.SENDING),
        "recent": aged(5, MailStatus.SENT, tenant.pk),
    }


@pytest.mark.django_db
def test_cleanup_deletes_old_final_mails_and_their_attempts_of_every_tenant(old_and_new):
    mails = old_and_new
    out = run("cleanup", "--days", "30", "--dry-run")
    assert "Would delete 3 mails and 3 attempts older than 30 days." in out
    assert len(remaining()) == 6
    out = run("cleanup", "--days", "30")
    assert "Deleted 3 mails and 3 attempts" in out
    assert remaining() == {mails[k].pk for k in ("queued", "sending", "recent")}
    with run_as_system():
        assert MailAttempt.objects.count() == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--days", "0"), "--days must be at least 1"),
        (("--days", "-3"), "--days must be at least 1"),
        (("--days", "soon"), "--days"),
        ((), "--days is required"),
    ],
)
def test_cleanup_bad_flags_name_the_flag(args, message):
    with pytest.raises(CommandError, match=message):
        run("cleanup", *args)


@pytest.mark.django_db
def test_the_task_honours_retention(settings, old_and_new):
    assert tasks.cleanup() == 0  # RETENTION None: kept forever
    assert len(remaining()) == 6
    settings.BETTER_MAIL = {"ASYNC": False, "RETENTION": datetime.timedelta(days=30)}
    assert tasks.cleanup() == 3
    assert len(remaining()) == 3
    settings.BETTER_MAIL = {"ASYNC": False, "RETENTION": "3d"}
    out = run("cleanup")
    assert "Deleted 1 mail and 1 attempt older than 3 days." in out


@pytest.mark.parametrize("value", ["soon", 60, -1])
def test_a_bad_retention_is_a_check_error(settings, value):
    settings.BETTER_MAIL = {"RETENTION": value}
    ids = [m.id for m in run_checks(tags=["better_mail"])]
    assert "better_mail.E008" in ids


# --- 4. requeue ----------------------------------------------------------------------------------


def failed_mail(template=Hello, **variables) -> MailLog:
    ScriptedBackend.reset(smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"No user")}))
    log = better_mail.send(template, to="a@example.com", **variables)
    delivery.send_due()
    log = fresh(log)
    assert log.status == MailStatus.FAILED and log.payload is None
    return log


@pytest.mark.django_db
def test_a_failed_mail_is_requeued_from_its_stored_variables_and_keeps_its_history():
    log = failed_mail(who="Ada")
    assert log.variables == {"who": "Ada"} and not log.html_body  # no STORE_BODIES
    requeue(log)
    row = fresh(log)
    assert (row.status, row.attempts, row.error) == (MailStatus.QUEUED, 0, "")
    assert delivery.send_due() == 1
    row = fresh(log)
    assert (row.status, row.attempts, row.subject) == (MailStatus.SENT, 1, "Hello Ada")
    assert "Hi Ada" in ScriptedBackend.sent[0].alternatives[0][0]
    assert [a.status for a in attempts(log)] == ["failed", "sent"]


@pytest.mark.django_db
def test_requeue_refuses_sensitive_mails_and_those_without_variables():
    secret = failed_mail(Code, code="123456")
    assert secret.variables is None
    with pytest.raises(RequeueRefused, match="is sensitive"):
        requeue(secret)
    dated = failed_mail(Dated, day=datetime.date(2026, 1, 2))
    assert dated.variables is None
    with pytest.raises(RequeueRefused, match="variables were not stored"):
        requeue(dated)
    sent = better_mail.send(Hello, to="a@example.com", who="x")
    with pytest.raises(RequeueRefused, match="only failed mails"):
        requeue(sent)


@pytest.mark.django_db
def test_the_admin_action_requeues_and_names_what_it_refuses(admin_client):
    log = failed_mail(who="Ada")
    secret = failed_mail(Code, code="123456")
    response = admin_client.post(
        reverse("admin:better_mail_maillog_changelist"),
        {"action": "requeue_action", "_selected_action": [str(log.pk), str(secret.pk)]},
        follow=True,
    )
    body = html.unescape(response.content.decode())
    assert "Requeued 1 mail." in body and "1 mail could not be requeued" in body
    assert "is sensitive" in body
    assert fresh(log).status == MailStatus.QUEUED and fresh(secret).status == MailStatus.FAILED


@pytest.mark.django_db
def test_the_console_requeues_a_failed_mail():
    from better_console.exceptions import ConsoleError

    log = failed_mail(who="Ada")
    body = ok(call("mail", "POST", f"/logs/{log.pk}/requeue"), 202)
    assert body["id"] == str(log.pk) and body["status"] == "queued"
    with pytest.raises(ConsoleError) as info:
        call("mail", "POST", f"/logs/{log.pk}/requeue")
    assert (info.value.status, info.value.code) == (409, "REQUEUE_REFUSED")


# --- 5. per-mail backends ------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_mail_goes_through_its_backend_alias_one_connection_per_backend(settings):
    settings.BETTER_MAIL = {"ASYNC": False, "BACKENDS": {"transactional": OTHER}}
    plain = better_mail.send(Hello, to="a@example.com", who="1")
    picked = [
        better_mail.send(Hello, to="a@example.com", who=str(n), backend="transactional")
        for n in range(3)
    ]
    assert fresh(picked[0]).backend == "transactional" and fresh(plain).backend == ""
    assert delivery.send_due() == 4
    assert sent_ids() == [str(plain.pk)]
    assert sent_ids(OtherBackend) == [str(log.pk) for log in picked]
    assert (ScriptedBackend.opens, OtherBackend.opens) == (1, 1)
    assert {a.backend for a in attempts(picked[0])} == {"transactional"}


@pytest.mark.django_db
def test_an_unknown_backend_alias_is_refused_at_send_time(settings):
    settings.BETTER_MAIL = {"ASYNC": False, "BACKENDS": {"transactional": OTHER}}
    with pytest.raises(UnknownBackend, match=r"backend='bulk' is not an alias.*transactional"):
        better_mail.send(Hello, to="a@example.com", who="x", backend="bulk")
    with run_as_system():
        assert not MailLog.objects.exists()


@pytest.mark.parametrize(
    "value",
    [
        ["smtp"],
        {"x": "no.such.module.Backend"},
        {"x": {"BACKEND": OTHER, "OPTIONS": 3}},
        {"x": {"PATH": OTHER}},
    ],
)
def test_a_bad_backends_setting_is_a_check_error(settings, value):
    settings.BETTER_MAIL = {"BACKENDS": value}
    ids = [m.id for m in run_checks(tags=["better_mail"])]
    assert "better_mail.E007" in ids


def test_a_good_backends_setting_passes_the_checks(settings):
    settings.BETTER_MAIL = {"BACKENDS": {"a": OTHER, "b": {"BACKEND": OTHER, "OPTIONS": {}}}}
    assert not [m for m in run_checks(tags=["better_mail"]) if m.id == "better_mail.E007"]


# --- 6. expiry -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_expired_mail_is_cancelled_at_claim_time_not_sent_late():
    soon = timezone.now() + datetime.timedelta(minutes=1)
    log = better_mail.send(Hello, to="a@example.com", who="x", expires_at=soon)
    kept = better_mail.send(Hello, to="a@example.com", who="y", expires_at=soon)
    with run_as_system():
        MailLog.objects.filter(pk=log.pk).update(expires_at=timezone.now())
    assert delivery.send_due() == 1
    row = fresh(log)
    assert row.status == MailStatus.CANCELLED and row.payload is None and row.attempts == 0
    assert row.error.startswith("expired: not sent by ")
    assert sent_ids() == [str(kept.pk)]
    assert delivery.deliver(log.pk) == delivery.NOT_CLAIMED


@pytest.mark.django_db
def test_a_naive_expires_at_is_refused():
    with pytest.raises(ValueError, match="expires_at must be an aware datetime"):
        better_mail.send(Hello, to="a@example.com", who="x", expires_at=datetime.datetime.now())
