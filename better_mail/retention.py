"""Retention: delete old mails in a final state, with their attempt logs, across tenants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from better_tenant.shortcuts import system_scope

# Queued and sending mails are never deleted, however old: one may still go out.
KEPT_STATUSES = ("queued", "sending")
BATCH = 5000


@dataclass(frozen=True)
class Cleanup:
    """What cleanup() deleted (or, in a dry run, would delete)."""

    mails: int
    attempts: int


def cleanup(older_than: timedelta, dry_run: bool = False) -> Cleanup:
    """Delete mails created more than ``older_than`` ago that are no longer queued or sending.

    That is sent, failed and cancelled mails, and the tracking states that follow ``sent``
    (delivered, bounced, opened...). Their attempt logs go with them. Runs in system mode, so
    every tenant's mails are covered. Deletes in batches, each its own transaction, so that a
    large backlog does not hold one long lock.
    """
    from better_mail.models import MailAttempt, MailLog

    cutoff = timezone.now() - older_than
    old = MailLog.objects.filter(created_at__lt=cutoff).exclude(status__in=KEPT_STATUSES)
    if dry_run:
        with system_scope():
            mails = old.count()
            attempts = MailAttempt.objects.filter(mail__in=old.values("pk")).count()
        return Cleanup(mails, attempts)
    mails = attempts = 0
    while True:
        with system_scope():
            ids = list(old.order_by().values_list("pk", flat=True)[:BATCH])
            if not ids:
                break
            attempts += MailAttempt.objects.filter(mail_id__in=ids).delete()[0]
            mails += MailLog.objects.filter(pk__in=ids).delete()[0]
    return Cleanup(mails, attempts)


def cleanup_expired() -> Cleanup | None:
    """Apply ``BETTER_MAIL['RETENTION']``; None when it is None (mails are kept forever)."""
    from better_mail.conf import mail_settings

    seconds = mail_settings.RETENTION
    if seconds is None:
        return None
    return cleanup(timedelta(seconds=seconds))
