"""Delivery and engagement events from django-anymail's ``tracking`` signal, applied to MailLog."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from django.utils import timezone

logger = logging.getLogger("better_mail")

# Provider event type -> MailLog status. Other events (deferred, queued, unsubscribed, ...) are
# recorded in MailLog.events without changing the status.
EVENT_STATUS = {
    "delivered": "delivered",
    "opened": "opened",
    "clicked": "clicked",
    "bounced": "bounced",
    "complained": "complained",
    "rejected": "failed",
    "failed": "failed",
}
# Progress of a mail that went well: an event never moves a mail back (events arrive in any
# order: an "opened" can precede its "delivered").
_PROGRESS = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "opened": 4, "clicked": 5}
# Bad news overrides progress; among them the later event wins.
_PROBLEMS = frozenset({"bounced", "complained", "failed"})
MAX_EVENTS = 100
DISPATCH_UID = "better_mail.tracking"


def connect() -> bool:
    """Listen to anymail's tracking signal (when django-anymail is installed)."""
    try:
        from anymail.signals import tracking
    except ImportError:
        return False
    tracking.connect(on_tracking, weak=False, dispatch_uid=DISPATCH_UID)
    return True


def next_status(current: str, event_status: str) -> str:
    """The status after an event, given the current one."""
    if current == "cancelled":
        return current
    if event_status in _PROBLEMS:
        return event_status
    if current in _PROBLEMS:
        return current
    if _PROGRESS.get(event_status, -1) > _PROGRESS.get(current, -1):
        return event_status
    return current


def on_tracking(sender: Any = None, event: Any = None, esp_name: str = "", **kwargs: Any) -> None:
    """Receiver of ``anymail.signals.tracking``: find the mail and apply the event."""
    if event is None:
        return
    apply_event(
        log_id=(getattr(event, "metadata", None) or {}).get("better_mail_id"),
        message_id=getattr(event, "message_id", None),
        event_type=str(getattr(event, "event_type", "") or "unknown"),
        recipient=getattr(event, "recipient", None),
        timestamp=getattr(event, "timestamp", None),
        description=getattr(event, "description", None) or getattr(event, "mta_response", None),
        click_url=getattr(event, "click_url", None),
    )


def apply_event(
    *,
    log_id: Any = None,
    message_id: Any = None,
    event_type: str,
    recipient: str | None = None,
    timestamp: datetime | None = None,
    description: str | None = None,
    click_url: str | None = None,
) -> Any:
    """Apply one provider event to its MailLog (matched by id, else by provider message id).

    Returns the updated log, or None when no mail matches (events of mails sent by other code).
    """
    from better_mail.models import MailLog
    from better_tenant.shortcuts import system_scope

    with system_scope():
        rows = MailLog.objects.select_for_update()
        log = None
        if log_id:
            try:
                log = rows.filter(pk=uuid.UUID(str(log_id))).first()
            except ValueError:
                log = None
        if log is None and message_id not in (None, ""):
            log = rows.filter(provider_message_id=str(message_id)).first()
        if log is None:
            logger.debug("better_mail: no mail for %s event %s", event_type, message_id)
            return None
        at = timestamp or timezone.now()
        entry = {"event": event_type, "at": at.isoformat()}
        if recipient:
            entry["recipient"] = recipient
        if description:
            entry["description"] = str(description)[:500]
        if click_url:
            entry["url"] = click_url
        log.events = [*(log.events or []), entry][-MAX_EVENTS:]
        fields = ["events", "updated_at"]
        status = EVENT_STATUS.get(event_type)
        if status:
            new = next_status(log.status, status)
            if new != log.status:
                log.status = new
                fields.append("status")
            if status == "failed" and description and not log.error:
                log.error = str(description)[:2000]
                fields.append("error")
            if recipient:
                per = dict(log.recipient_status or {})
                info = dict(per.get(recipient) or {})
                info["status"] = next_status(info.get("status", "sent"), status)
                per[recipient] = info
                log.recipient_status = per
                fields.append("recipient_status")
        log.updated_at = timezone.now()
        log.save(update_fields=fields)
    return log
