"""Settings of better_audit, read from ``settings.BETTER_AUDIT``."""

from __future__ import annotations

from better_core.settings import AppSettings

DEFAULTS = {
    # Allowlist of audited tables: SQL table names ("projects") or "app_label.Model".
    "TABLES": [],
    # Write audit rows after commit through Celery instead of in the caller's transaction.
    "ASYNC_WRITE": False,
    # Called as fn(exc, entry) when an async write or an after-log hook fails (dotted path).
    "ON_ERROR": None,
    # Hooks called with each entry: before (may mutate; raising aborts the write) and after.
    "BEFORE_LOG": [],
    "AFTER_LOG": [],
    # Enrichment rules: dicts with "table", "operation" and the options of audit.enrich().
    "ENRICHMENT": [],
    # Record-id extraction: the fallback key name, and what to do when there is none.
    "PRIMARY_KEY": "id",
    "ON_MISSING_RECORD_ID": "warn",  # warn | skip | throw
    # Tables whose updates and deletes are logged without a before-state SELECT.
    "SKIP_BEFORE_STATE": [],
    # Above this many affected rows, bulk updates/deletes are logged without before-state.
    "MAX_BEFORE_STATE_ROWS": 1000,
    # Rows per INSERT when audit entries are written in bulk.
    "BATCH_SIZE": 500,
    # Upper bound of audit.query().limit(n).
    "MAX_QUERY_LIMIT": 1000,
    # AuditContextMiddleware: extractors tried in order (dotted paths or callables(request)).
    "ACTOR_EXTRACTORS": [
        "better_audit.extractors.from_user",
        "better_audit.extractors.from_bearer_token",
    ],
    # Key used to verify bearer tokens; None decodes them without verification (as the seed).
    "JWT_KEY": None,
    "JWT_ALGORITHMS": ["HS256"],
    # Extraction failures: fail open (log, request continues) unless FAIL_CLOSED is set.
    "FAIL_CLOSED": False,
    "ON_EXTRACTION_ERROR": None,
    # Header carrying a correlation id for the request's entries (generated when absent).
    "CORRELATION_HEADER": "X-Request-ID",
    # Carry the audit context to Celery tasks.
    "CELERY": True,
    # Retention (used by the purge command): {"days": N, "tables": [...]}.
    "RETENTION": None,
}

IMPORT_STRINGS = ("ON_ERROR", "BEFORE_LOG", "AFTER_LOG", "ACTOR_EXTRACTORS", "ON_EXTRACTION_ERROR")

audit_settings = AppSettings("BETTER_AUDIT", DEFAULTS, IMPORT_STRINGS)
