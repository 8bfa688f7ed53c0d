"""Celery tasks of better_mail: send one queued mail, and send whatever is due."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="better_mail.send", ignore_result=True)
def send_mail(log_id: str) -> str:
    """Claim and send the mail ``log_id``; a transient failure schedules the next attempt.

    The claim (``SELECT ... FOR UPDATE SKIP LOCKED``) makes a redelivered or duplicated message
    harmless: only one run finds the mail queued. Returns the outcome's status.
    """
    from better_mail import sending
    from better_mail.conf import mail_settings

    outcome = sending.deliver(log_id)
    if outcome.retry_in is not None:
        options: dict[str, Any] = {"countdown": outcome.retry_in}
        if mail_settings.QUEUE:
            options["queue"] = mail_settings.QUEUE
        send_mail.apply_async(args=[log_id], **options)
    return outcome.status


@shared_task(name="better_mail.send_due", ignore_result=True)
def send_due(limit: int = 100) -> int:
    """Send queued mails that are due (for a periodic schedule); returns how many were sent."""
    from better_mail import sending

    return sending.send_due(limit)
