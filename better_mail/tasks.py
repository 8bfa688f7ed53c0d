"""Celery tasks of better_mail: send queued mails, send whatever is due, delete old mails."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="better_mail.send", ignore_result=True)
def send_mail(log_id: str) -> str:
    """Claim and send the mail ``log_id``; a transient failure schedules the next attempt.

    The claim (``SELECT ... FOR UPDATE SKIP LOCKED``) makes a redelivered or duplicated message
    harmless: only one run finds the mail queued. Returns the outcome's status.
    """
    from better_mail import delivery

    outcome = delivery.deliver(log_id)
    _schedule_retries([outcome])
    return outcome.status


@shared_task(name="better_mail.send_many", ignore_result=True)
def send_many(log_ids: list[str]) -> int:
    """Claim and send these mails over one backend connection; returns how many were sent."""
    from better_mail import delivery

    outcomes = delivery.deliver_many(log_ids)
    _schedule_retries(outcomes)
    return sum(outcome.status == "sent" for outcome in outcomes)


@shared_task(name="better_mail.send_due", ignore_result=True)
def send_due(limit: int = 100) -> int:
    """Send queued mails that are due (for a periodic schedule); returns how many were sent."""
    from better_mail import delivery

    return delivery.send_due(limit)


@shared_task(name="better_mail.cleanup", ignore_result=True)
def cleanup() -> int:
    """Delete mails older than ``BETTER_MAIL['RETENTION']`` (daily); returns how many.

    Does nothing while RETENTION is None. Beat entry::

        "better-mail-cleanup": {
            "task": "better_mail.cleanup",
            "schedule": crontab(hour=3, minute=0),
        }
    """
    from better_mail.retention import cleanup_expired

    result = cleanup_expired()
    return 0 if result is None else result.mails


def _schedule_retries(outcomes: list[Any]) -> None:
    from better_mail import sending

    by_delay: dict[float, list[Any]] = {}
    for outcome in outcomes:
        if outcome.retry_in is not None and outcome.log_id is not None:
            by_delay.setdefault(outcome.retry_in, []).append(outcome.log_id)
    for delay, ids in by_delay.items():
        sending.publish(ids, countdown=delay)
