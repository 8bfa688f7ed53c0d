"""Requeue of a failed mail: render its template again from the variables stored on its log."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from better_mail.exceptions import MailError
from better_tenant.shortcuts import tenant_scope

# Design: send() stores the template variables on the log (``MailLog.variables``) when they are
# plain JSON values and the template is not ``sensitive``, so a failed mail can be rendered and
# sent again without keeping its rendered bodies (STORE_BODIES). A sensitive template's mail
# (a sign-in code) never has its variables stored, and its requeue is refused. The requeued mail
# is the same row: its attempt count starts again at zero and its attempt log keeps the earlier
# attempts.


class RequeueRefused(MailError):
    """A mail cannot be requeued; the message says why."""


def requeue(log: Any) -> Any:
    """Render ``log``'s template again from its stored variables and queue it; returns the log.

    Only a ``failed`` mail is requeued. Raises ``RequeueRefused`` saying why not.
    """
    from better_mail import sending
    from better_mail.exceptions import TemplateNotFound
    from better_mail.models import MailLog, MailStatus
    from better_mail.templates import get_template

    if log.status != MailStatus.FAILED:
        raise RequeueRefused(f"only failed mails are requeued; this one is {log.status}")
    try:
        cls = get_template(log.template)
    except TemplateNotFound as exc:
        raise RequeueRefused(f"its template {log.template!r} is no longer registered") from exc
    if cls.sensitive:
        raise RequeueRefused(
            f"its template {cls.name!r} is sensitive (it carries a credential), so its variables "
            "were not stored; send a new one from the code that sent it"
        )
    if log.variables is None:
        raise RequeueRefused(
            "its variables were not stored (a value was not plain JSON, or it was sent before "
            "variables were kept); send it again from the code that sent it"
        )
    try:
        rendered = cls.render(log.variables)
    except MailError as exc:
        raise RequeueRefused(f"its stored variables no longer fit the template: {exc}") from exc
    payload = {
        "html": rendered.html,
        "text": rendered.text,
        # Headers and attachments given to send() are not kept after sending.
        "headers": {},
        "attachments": [],
    }
    now = timezone.now()
    # A deadline that has passed would cancel the requeued mail at once: asking for it again
    # lifts it.
    expires_at = log.expires_at if log.expires_at and log.expires_at > now else None
    with transaction.atomic(), tenant_scope(log.tenant_id):
        updated = MailLog.objects.filter(pk=log.pk, status=MailStatus.FAILED).update(
            expires_at=expires_at,
            status=MailStatus.QUEUED,
            subject=rendered.subject,
            payload=payload,
            attempts=0,
            error="",
            recipient_status={},
            send_at=None,
            updated_at=now,
        )
        if not updated:
            raise RequeueRefused("it is no longer failed (requeued or changed meanwhile)")
        sending.after_commit(log.pk, None, sending._use_celery(None))
    log.status, log.attempts, log.error, log.send_at = MailStatus.QUEUED, 0, "", None
    log.subject, log.payload, log.expires_at = rendered.subject, payload, expires_at
    return log
