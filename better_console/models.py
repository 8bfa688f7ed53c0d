"""Claimed console sessions and the magic links of the sign-in handshake (not tenant tables)."""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone


def session_ref(session_id: str) -> str:
    """The start of a sessionId, enough to tell sessions apart on a page.

    The whole id is a bearer secret while its magic link lives: it claims the session's token.
    """
    return f"{session_id[:9]}…" if len(session_id) > 9 else session_id


class ConsoleSession(models.Model):
    """A session opened by claiming a verified magic link; its token is known only by its hash.

    The row holds every claim of the session token (``id`` is its ``jti``, ``created_at`` its
    ``iat``, ``expires_at`` its ``exp``); revoking or expiring the row ends the token at once.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session_id = models.CharField(max_length=64, db_index=True)
    email = models.CharField(max_length=320)
    # sha256 hex of the issued JWT.
    token_hash = models.CharField(max_length=64, unique=True)
    permissions = ArrayField(models.CharField(max_length=16), default=list)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "better_console_sessions"
        ordering = ["-created_at"]
        verbose_name = "console session"
        verbose_name_plural = "console sessions"
        permissions = [
            ("console_read", "Can read the console"),
            ("console_write", "Can change data through the console"),
            ("console_admin", "Can administer through the console"),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.session_ref})"

    @property
    def session_ref(self) -> str:
        return session_ref(self.session_id)

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()


class MagicLink(models.Model):
    """One init -> verify -> claim handshake: the hashed code, attempts and the claimed token."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The correlation id the console UI holds (a UUID, written lowercase).
    session_id = models.CharField(max_length=64, unique=True)
    email = models.CharField(max_length=320)
    # sha256 hex of the emailed code.
    code_hash = models.CharField(max_length=64)
    failed_attempts = models.PositiveSmallIntegerField(default=0)
    verified_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Set once, by the claim (UPDATE ... WHERE token_hash IS NULL): sha256 hex of the session JWT.
    token_hash = models.CharField(max_length=64, null=True, blank=True)
    expires_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "better_console_magic_links"
        ordering = ["-created_at"]
        verbose_name = "console magic link"
        verbose_name_plural = "console magic links"

    def __str__(self) -> str:
        return f"{self.email} ({self.session_ref})"

    @property
    def session_ref(self) -> str:
        return session_ref(self.session_id)

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()
