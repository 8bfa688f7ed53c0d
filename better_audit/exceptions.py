"""Errors raised by better_audit; each also inherits the matching built-in or Django class."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class AuditError(Exception):
    """Base class of better_audit's errors."""


class EnrichmentConflict(AuditError, ValueError):
    """An enrichment rule, or the rules matching one event, set both ``redact`` and ``include``."""


class InvalidOperation(AuditError, ValueError):
    """An operation that is not INSERT, UPDATE or DELETE (or ``*`` for enrichment rules)."""


class MissingRecordId(AuditError, ValueError):
    """An audit entry without a record id while ``ON_MISSING_RECORD_ID`` is ``"throw"``."""


class AuditConfigurationError(AuditError, ImproperlyConfigured):
    """A ``BETTER_AUDIT`` setting that cannot be used."""
