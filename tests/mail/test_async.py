"""Sending through Celery: after commit, one claim per mail, retries on transient errors only."""

from __future__ import annotations

import datetime
import smtplib
import threading
import time
from unittest import mock

import pytest
from anymail.exceptions import (
    AnymailAPIError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
)
from django.db import connections, transaction
from django.utils import timezone

import better_mail
from better_mail import delivery, sending, tasks
from better_mail.exceptions import MailConfigurationError
from better_mail.models import MailLog, MailStatus
from better_mail.templates import MailTemplate
from better_tenant import run_as, run_as_system
from tests.mail.backends import CountingBackend, ScriptedBackend, use_backend
from tests.support.concurrency import run_threads
from tests.testapp.celery import app

SCRIPTED = "tests.mail.backends.ScriptedBackend"


class Ping(MailTemplate):
    name = "test_ping"
    n: int = 0
    subject = "Ping {{ n }}"
    mjml = """<mjml><mj-body><mj-section><mj-column><mj-text>ping {{ n }}</mj-text>
</mj-column></mj-section></mj-body></mjml>"""


@pytest.fixture(autouse=True)
def eager_celery(settings):
    """Tasks run in-process (the worker path is the same task body)."""
    settings.BETTER_MAIL = {"ASYNC": True, "RETRY_BACKOFF": 30, "MAX_ATTEMPTS": 3}
    use_backend(settings, SCRIPTED)
    ScriptedBackend.reset()
    saved = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = saved


def row(log: MailLog) -> MailLog:
    return log.refresh()


def queue(n: int = 0, **kwargs) -> MailLog:
    """A committed, queued mail that nothing has tried to send yet."""
    with mock.patch.object(sending, "dispatch"):
        return better_mail.send(Ping, to="ops@example.com", n=n, **kwargs)


@pytest.mark.django_db
def test_the_task_is_published_after_commit_with_the_log_id(django_capture_on_commit_callbacks):
    with mock.patch.object(tasks.send_mail, "apply_async") as publish:
        with django_capture_on_commit_callbacks() as callbacks:
            log = better_mail.send(Ping, to="ops@example.com")
            assert not publish.called
        for callback in callbacks:
            callback()
    publish.assert_called_once_with(args=[str(log.pk)])
    assert row(log).status == MailStatus.QUEUED


@pytest.mark.django_db
def test_eager_celery_sends_and_records_each_transition(django_capture_on_commit_callbacks):
    seen: list[str] = []
    original = delivery.send_claimed

    def spy(log):
        seen.append(row(log).status)  # what the database says while the mail is handed over
        return original(log)

    with (
        mock.patch.object(delivery, "send_claimed", spy),
        django_capture_on_commit_callbacks(execute=True),
    ):
        log = better_mail.send(Ping, to="ops@example.com", n=1)
    assert seen == [MailStatus.SENDING]
    final = row(log)
    assert (final.status, final.attempts) == (MailStatus.SENT, 1)
    assert [m.subject for m in ScriptedBackend.sent] == ["Ping 1"]


@pytest.mark.django_db
def test_a_claimed_or_finished_mail_is_not_claimed_again():
    log = queue()
    assert delivery.claim(log.pk) is not None
    assert delivery.claim(log.pk) is None  # sending
    assert delivery.deliver(log.pk) == delivery.NOT_CLAIMED
    assert ScriptedBackend.sent == []


TRANSIENT = [
    smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
    smtplib.SMTPResponseException(421, b"Service not available, try later"),
    smtplib.SMTPSenderRefused(451, b"Temporary local problem", "a@example.com"),
    ConnectionRefusedError(111, "Connection refused"),
    TimeoutError("timed out"),
    AnymailAPIError("ESP down", status_code=503),
    AnymailAPIError("Too many requests", status_code=429),
]
PERMANENT = [
    smtplib.SMTPRecipientsRefused({"x@example.com": (550, b"No such user")}),
    smtplib.SMTPResponseException(554, b"Transaction failed"),
    smtplib.SMTPAuthenticationError(535, b"Bad credentials"),
    AnymailRecipientsRefused("All recipients refused"),
    AnymailInvalidAddress("Invalid 'to' address"),
    AnymailAPIError("Bad request", status_code=400),
    AnymailAPIError("Unparsable response"),
    ValueError("a bug in a custom backend"),
]


def _connection_error() -> AnymailAPIError:
    import requests

    try:
        try:
            raise requests.ConnectionError("DNS failure")
        except requests.ConnectionError as exc:
            raise AnymailAPIError("request failed") from exc
    except AnymailAPIError as error:
        return error


@pytest.mark.parametrize("error", [*TRANSIENT, _connection_error()], ids=repr)
def test_transient_errors_are_classified_as_transient(error):
    assert delivery.is_transient(error)


@pytest.mark.parametrize("error", PERMANENT, ids=repr)
def test_permanent_errors_are_classified_as_permanent(error):
    assert not delivery.is_transient(error)


@pytest.mark.django_db
def test_a_transient_error_requeues_with_backoff_then_succeeds():
    ScriptedBackend.reset(smtplib.SMTPServerDisconnected("closed"))
    log = queue()
    before = timezone.now()
    with mock.patch.object(tasks.send_mail, "apply_async") as publish:
        assert tasks.send_mail(str(log.pk)) == MailStatus.QUEUED
    publish.assert_called_once_with(args=[str(log.pk)], countdown=30.0)
    retried = row(log)
    assert retried.status == MailStatus.QUEUED and retried.attempts == 1
    assert "SMTPServerDisconnected: closed" in retried.error
    assert before + datetime.timedelta(seconds=29) < retried.send_at
    # Not due yet: a second delivery now finds nothing to claim.
    assert delivery.deliver(log.pk) == delivery.NOT_CLAIMED
    with run_as_system():
        MailLog.objects.filter(pk=log.pk).update(send_at=timezone.now())
    assert tasks.send_mail(str(log.pk)) == MailStatus.SENT
    done = row(log)
    assert (done.status, done.attempts, done.error) == (MailStatus.SENT, 2, "")
    assert len(ScriptedBackend.sent) == 1


@pytest.mark.django_db
def test_the_backoff_doubles_and_is_capped(settings):
    settings.BETTER_MAIL = {"RETRY_BACKOFF": 10, "RETRY_BACKOFF_MAX": 60}
    assert [delivery.backoff(n) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]


@pytest.mark.django_db
def test_retries_stop_after_max_attempts():
    ScriptedBackend.reset(*(AnymailAPIError("ESP down", status_code=502) for _ in range(3)))
    log = queue()
    outcomes = []
    for _ in range(3):
        outcomes.append(delivery.deliver(log.pk).status)
        with run_as_system():
            MailLog.objects.filter(pk=log.pk).update(send_at=timezone.now())
    assert outcomes == [MailStatus.QUEUED, MailStatus.QUEUED, MailStatus.FAILED]
    failed = row(log)
    assert failed.status == MailStatus.FAILED and failed.attempts == 3
    assert failed.error.startswith("gave up after 3 attempts: AnymailAPIError")
    assert failed.payload is None and ScriptedBackend.sent == []


@pytest.mark.django_db
@pytest.mark.parametrize("error", PERMANENT[:6], ids=repr)
def test_a_permanent_error_fails_at_once(error):
    ScriptedBackend.reset(error)
    log = queue()
    with mock.patch.object(tasks.send_mail, "apply_async") as publish:
        assert tasks.send_mail(str(log.pk)) == MailStatus.FAILED
    assert not publish.called
    failed = row(log)
    assert (failed.status, failed.attempts) == (MailStatus.FAILED, 1)
    assert failed.error.startswith(type(error).__name__)


@pytest.mark.django_db
def test_a_scheduled_mail_is_not_sent_before_its_time(django_capture_on_commit_callbacks):
    later = timezone.now() + datetime.timedelta(minutes=30)
    with (
        mock.patch.object(tasks.send_mail, "apply_async") as publish,
        django_capture_on_commit_callbacks(execute=True),
    ):
        log = better_mail.send(Ping, to="ops@example.com", send_at=later)
    publish.assert_called_once_with(args=[str(log.pk)], eta=later)
    assert delivery.deliver(log.pk) == delivery.NOT_CLAIMED
    assert delivery.send_due() == 0
    assert row(log).status == MailStatus.QUEUED and ScriptedBackend.sent == []
    with mock.patch(
        "django.utils.timezone.now", return_value=later + datetime.timedelta(seconds=1)
    ):
        assert delivery.send_due() == 1
    assert row(log).status == MailStatus.SENT


@pytest.mark.django_db
def test_sync_mode_leaves_scheduled_mails_to_send_due(settings, django_capture_on_commit_callbacks):
    settings.BETTER_MAIL = {"ASYNC": False}
    later = timezone.now() + datetime.timedelta(minutes=5)
    with django_capture_on_commit_callbacks(execute=True):
        scheduled = better_mail.send(Ping, to="ops@example.com", n=1, send_at=later)
        better_mail.send(Ping, to="ops@example.com", n=2)
    assert [m.subject for m in ScriptedBackend.sent] == ["Ping 2"]
    with run_as_system():
        MailLog.objects.filter(pk=scheduled.pk).update(send_at=timezone.now())
    assert delivery.send_due() == 1
    assert [m.subject for m in ScriptedBackend.sent] == ["Ping 2", "Ping 1"]


@pytest.mark.django_db
def test_a_mail_whose_task_could_not_be_published_is_sent_by_send_due(
    django_capture_on_commit_callbacks, caplog
):
    with (
        mock.patch.object(tasks.send_mail, "apply_async", side_effect=OSError("broker down")),
        django_capture_on_commit_callbacks(execute=True),
    ):
        log = better_mail.send(Ping, to="ops@example.com")
    assert "could not publish mail" in caplog.text
    assert row(log).status == MailStatus.QUEUED
    assert tasks.send_due() == 1
    assert row(log).status == MailStatus.SENT


@pytest.mark.django_db
def test_a_mail_stuck_in_sending_is_failed_not_sent_twice():
    log = queue()
    assert delivery.claim(log.pk) is not None
    with run_as_system():
        MailLog.objects.filter(pk=log.pk).update(
            updated_at=timezone.now() - datetime.timedelta(hours=1)
        )
    assert delivery.send_due() == 0
    stuck = row(log)
    assert stuck.status == MailStatus.FAILED and stuck.error.startswith("interrupted")
    assert ScriptedBackend.sent == []


@pytest.mark.django_db
def test_the_rate_limit_holds_mails_back(settings):
    settings.BETTER_MAIL = {"RATE_LIMIT": "2/h"}
    logs = [queue(n) for n in range(3)]
    assert delivery.send_due() == 2
    outcome = delivery.deliver(logs[2].pk)
    assert outcome.status == "rate_limited" and 0 < outcome.retry_in <= 3600
    assert [row(log).status for log in logs].count(MailStatus.QUEUED) == 1
    with mock.patch.object(tasks.send_mail, "apply_async") as publish:
        tasks.send_mail(str(logs[2].pk))
    assert publish.call_args.kwargs["countdown"] == pytest.approx(outcome.retry_in, abs=2)


@pytest.mark.django_db
def test_the_rate_limit_counts_only_the_mails_a_claim_took(settings):
    """A send-due that finds 2 mails uses 2 sends of the window, not a whole batch's worth."""
    settings.BETTER_MAIL = {"RATE_LIMIT": "10/h"}
    for n in range(2):
        queue(n)
    assert delivery.send_due() == 2
    for n in range(3):
        queue(n)
    assert delivery.send_due() == 3
    assert delivery.send_due() == 0  # nothing queued: this takes nothing from the window
    logs = [queue(n) for n in range(6)]
    assert delivery.send_due() == 5  # 10 in the window
    assert delivery.deliver(logs[-1].pk).status == "rate_limited"
    assert len(ScriptedBackend.sent) == 10


@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_together_stay_within_the_rate_limit(settings):
    """Workers racing over a short queue give back what they did not claim, and together
    never send more than the limit."""
    settings.BETTER_MAIL = {"ASYNC": True, "RATE_LIMIT": "10/h", "BATCH_SIZE": 4}
    use_backend(settings, "tests.mail.backends.CountingBackend")
    CountingBackend.counts.clear()
    problems: list[str] = []

    def work(i: int) -> None:
        while delivery.send_due(limit=100):
            pass

    for n in range(6):
        queue(n)
    run_threads(4, work, problems)
    assert problems == [] and sum(CountingBackend.counts.values()) == 6
    for n in range(8):
        queue(n)
    run_threads(4, work, problems)
    assert problems == []
    assert sum(CountingBackend.counts.values()) == 10
    assert set(CountingBackend.counts.values()) == {1}
    with run_as_system():
        assert MailLog.objects.filter(status=MailStatus.QUEUED).count() == 4
    connections.close_all()


def test_rates_are_parsed_or_explained():
    assert delivery.parse_rate("100/m") == (100, 60)
    assert delivery.parse_rate("20/10s") == (20, 10)
    assert delivery.parse_rate("5000/h") == (5000, 3600)
    with pytest.raises(MailConfigurationError, match="'100 per minute' is not a rate"):
        delivery.parse_rate("100 per minute")


@pytest.mark.django_db
def test_the_worker_works_in_system_mode_for_tenant_mails(
    tenant, django_capture_on_commit_callbacks
):
    with run_as(tenant), django_capture_on_commit_callbacks(execute=True):
        log = better_mail.send(Ping, to="ops@example.com")
    final = row(log)
    assert final.tenant_id == tenant.pk and final.status == MailStatus.SENT


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_workers_never_send_a_mail_twice(settings):
    """Four threads (each its own connection) race for the same 24 mails: every mail once."""
    use_backend(settings, "tests.mail.backends.CountingBackend")
    CountingBackend.counts.clear()
    logs = [queue(n) for n in range(24)]
    ids = [str(log.pk) for log in logs]
    problems: list[str] = []

    def work(i: int) -> None:
        # Half the threads drain the queue, half run the per-mail task on every id.
        if i % 2:
            delivery.send_due(limit=100)
        else:
            for log_id in ids if i % 4 == 0 else reversed(ids):
                delivery.deliver(log_id)

    run_threads(4, work, problems)
    assert problems == []
    assert CountingBackend.counts == dict.fromkeys(ids, 1)
    with run_as_system():
        statuses = set(MailLog.objects.values_list("status", flat=True))
        attempts = set(MailLog.objects.values_list("attempts", flat=True))
    assert statuses == {MailStatus.SENT} and attempts == {1}
    connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_with_one_idempotency_key_make_one_mail(settings):
    settings.BETTER_MAIL = {"ASYNC": False}
    use_backend(settings, "tests.mail.backends.CountingBackend")
    CountingBackend.counts.clear()
    barrier = threading.Barrier(2)
    results: list[str] = []
    problems: list[str] = []

    def work(i: int) -> None:
        barrier.wait()
        with transaction.atomic():
            log = better_mail.send(Ping, to="ops@example.com", n=i, idempotency_key="once")
            results.append(str(log.pk))
            time.sleep(0.2)  # both inserts are in flight before either commits

    run_threads(2, work, problems)
    assert problems == []
    assert len(results) == 2 and results[0] == results[1]
    assert CountingBackend.counts == {results[0]: 1}
    with run_as_system():
        assert MailLog.objects.count() == 1


@pytest.mark.django_db
def test_mails_of_one_transaction_travel_in_batches(settings, django_capture_on_commit_callbacks):
    settings.BETTER_MAIL = {"ASYNC": True, "BATCH_SIZE": 4}
    with (
        mock.patch.object(tasks.send_mail, "apply_async") as one,
        mock.patch.object(tasks.send_many, "apply_async") as many,
        django_capture_on_commit_callbacks() as callbacks,
    ):
        logs = [better_mail.send(Ping, to="ops@example.com", n=n) for n in range(9)]
        assert len(callbacks) == 0 or not many.called
    assert len(callbacks) == 1  # one on-commit callback for the whole transaction
    with (
        mock.patch.object(tasks.send_mail, "apply_async") as one,
        mock.patch.object(tasks.send_many, "apply_async") as many,
    ):
        callbacks[0]()
    ids = [str(log.pk) for log in logs]
    assert [c.kwargs["args"] for c in many.call_args_list] == [[ids[:4]], [ids[4:8]]]
    one.assert_called_once_with(args=[ids[8]])
    # The batch task sends its mails over one backend connection.
    assert tasks.send_many(ids[:4]) == 4
    assert ScriptedBackend.opens == 1
    assert [m.subject for m in ScriptedBackend.sent] == ["Ping 0", "Ping 1", "Ping 2", "Ping 3"]


@pytest.mark.django_db
def test_a_failure_inside_a_batch_spares_the_other_mails(settings):
    settings.BETTER_MAIL = {"BATCH_SIZE": 10}
    logs = [queue(n) for n in range(3)]
    # The first message of the batch fails; the session is reopened for the next ones.
    ScriptedBackend.reset(smtplib.SMTPRecipientsRefused({"ops@example.com": (550, b"no")}))
    assert delivery.send_due() == 2
    statuses = sorted(row(log).status for log in logs)
    assert statuses == [MailStatus.FAILED, MailStatus.SENT, MailStatus.SENT]
    assert ScriptedBackend.opens == 1 and len(ScriptedBackend.sent) == 2


@pytest.mark.django_db
def test_send_due_claims_in_batches(settings):
    settings.BETTER_MAIL = {"BATCH_SIZE": 2}
    logs = [queue(n) for n in range(5)]
    assert delivery.send_due(limit=4) == 4
    assert ScriptedBackend.opens == 2
    assert [row(log).status for log in logs].count(MailStatus.QUEUED) == 1


@pytest.mark.django_db
def test_sends_of_a_rolled_back_savepoint_are_not_handed_over(
    settings, django_capture_on_commit_callbacks
):
    with (
        mock.patch.object(tasks.send_mail, "apply_async") as one,
        mock.patch.object(tasks.send_many, "apply_async") as many,
        django_capture_on_commit_callbacks(execute=True),
    ):
        with pytest.raises(RuntimeError), transaction.atomic():
            better_mail.send(Ping, to="ops@example.com", n=1)
            raise RuntimeError("undo")
        kept = better_mail.send(Ping, to="ops@example.com", n=2)
    one.assert_called_once_with(args=[str(kept.pk)])
    assert not many.called
