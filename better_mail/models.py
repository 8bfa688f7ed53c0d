"""The mail log: one row per mail sent through better_mail, with its delivery status."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class MailStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    DELIVERED = "delivered", "Delivered"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"
    OPENED = "opened", "Opened"
    CLICKED = "clicked", "Clicked"
    CANCELLED = "cancelled", "Cancelled"


class MailPriority(models.IntegerChoices):
    """Order of the queue: lower values are claimed first. ``now`` skips the queue."""

    NOW = 0, "now"
    HIGH = 1, "high"
    NORMAL = 2, "normal"
    LOW = 3, "low"


class AttemptStatus(models.TextChoices):
    SENT = "sent", "Sent"
    DEFERRED = "deferred", "Deferred"
    FAILED = "failed", "Failed"


def _addresses() -> ArrayField:
    return ArrayField(models.CharField(max_length=320), default=list, blank=True)


class MailLog(models.Model):
    """A mail: who it went to, what it was, and what happened to it.

    The primary key is generated in Python, so the INSERT needs no RETURNING clause: code outside
    any tenant scope can write its row even though it may not read it back (row-level security).
    ``payload`` holds the rendered message only while it waits to be sent and is cleared after;
    the bodies are kept (``html_body``/``text_body``) only with ``BETTER_MAIL['STORE_BODIES']``.
    ``variables`` holds the template variables as JSON, so that a failed mail can be requeued
    (rendered again); never for ``sensitive`` templates, nor when a value is not plain JSON.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.UUIDField(null=True, blank=True, db_index=True, editable=False)
    template = models.CharField(max_length=200, db_index=True)
    from_email = models.CharField(max_length=320, blank=True)
    to = _addresses()
    cc = _addresses()
    bcc = _addresses()
    reply_to = _addresses()
    subject = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=MailStatus.choices, default=MailStatus.QUEUED)
    provider = models.CharField(max_length=100, blank=True)
    provider_message_id = models.CharField(max_length=255, null=True, blank=True)
    # Per recipient: {"addr@example.com": {"status": "sent", "message_id": "..."}}.
    recipient_status = models.JSONField(default=dict, blank=True)
    # Tracking events received from the provider: [{"event": ..., "at": ..., "recipient": ...}].
    events = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    tags = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    payload = models.JSONField(null=True, blank=True, editable=False)
    html_body = models.TextField(blank=True)
    text_body = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    send_at = models.DateTimeField(null=True, blank=True)
    # Not sent by then: cancelled at claim time rather than sent late.
    expires_at = models.DateTimeField(null=True, blank=True)
    priority = models.PositiveSmallIntegerField(
        choices=MailPriority.choices, default=MailPriority.NORMAL
    )
    # An alias of BETTER_MAIL["BACKENDS"]; empty: the default mailer.
    backend = models.CharField(max_length=100, blank=True)
    variables = models.JSONField(null=True, blank=True, editable=False)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "mail_logs"
        verbose_name = "mail"
        verbose_name_plural = "mail log"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="mail_logs_idempotency_key_uniq",
            ),
            models.CheckConstraint(
                condition=Q(status__in=MailStatus.values), name="mail_logs_status_check"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-created_at"], name="mail_logs_status_created_idx"),
            models.Index(fields=["-created_at"], name="mail_logs_created_idx"),
            models.Index(fields=["provider_message_id"], name="mail_logs_provider_msg_idx"),
            # The claim's queue scan: queued mails, ORDER BY priority, send_at NULLS FIRST.
            models.Index(
                F("priority").asc(),
                F("send_at").asc(nulls_first=True),
                condition=Q(status="queued"),
                name="mail_logs_queued_prio_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.template} to {', '.join(self.to)} ({self.status})"

    @property
    def recipients(self) -> list[str]:
        return [*self.to, *self.cc, *self.bcc]

    def cancel(self) -> bool:
        """Cancel the mail if it has not started sending; True when it was cancelled."""
        from better_mail.sending import cancel

        return cancel(self)

    def refresh(self) -> MailLog:
        """This row as the database has it now (read in system mode when better_tenant is on)."""
        from better_tenant.shortcuts import system_scope

        with system_scope():
            return MailLog.objects.get(pk=self.pk)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "template": self.template,
            "to": self.to,
            "status": self.status,
            "provider_message_id": self.provider_message_id,
            "created_at": self.created_at.isoformat(),
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
        }


class MailAttempt(models.Model):
    """One delivery attempt of a mail: when, what came of it, and the server's answer.

    Rows are only ever added: a requeued mail starts a new count of attempts and keeps these.
    ``tenant_id`` repeats the mail's so that row-level security reads them as it reads the mail.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    mail = models.ForeignKey(
        MailLog, on_delete=models.CASCADE, related_name="attempt_log", db_index=True
    )
    tenant_id = models.UUIDField(null=True, blank=True, editable=False)
    at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=AttemptStatus.choices)
    error = models.TextField(blank=True)
    # The SMTP reply code or the provider's HTTP status, where the error carried one.
    code = models.IntegerField(null=True, blank=True)
    backend = models.CharField(max_length=100, blank=True)

    class Meta:
        db_table = "mail_attempts"
        verbose_name = "delivery attempt"
        ordering = ["at"]

    def __str__(self) -> str:
        return f"{self.status} at {self.at:%Y-%m-%d %H:%M:%S}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "status": self.status,
            "error": self.error,
            "code": self.code,
            "backend": self.backend,
        }
