"""The delivery engine: claim due deliveries under a lease, POST them, record the outcome.

Claiming is one statement, ``WITH c AS MATERIALIZED (SELECT ... FOR UPDATE SKIP LOCKED) UPDATE
... RETURNING``: a delivery is claimable when it is pending and due, or when it is held under a
lease that has expired (its worker died; after ``ABANDONED_LIMIT`` such take-overs the claim
fails the delivery instead, so a payload that kills its worker does not kill them all); the
Celery task claims the ids it carries the same way, and tops a short batch up with other due
first attempts. An attempt starts only while the lease still covers it: its longest possible run
(``CONNECT_TIMEOUT`` + ``TIMEOUT``, a bound the client enforces) plus ``LEASE_MARGIN`` to record
its outcome; the deliveries a batch has no lease left for are released unsent, so no other worker
can claim a delivery while its attempt may still be under way. Outcomes are written as they are
known, in small groups (``RECORD_EVERY`` outcomes or ``RECORD_WITHIN`` seconds; one transaction,
one statement in the common case), so a worker killed mid-batch can duplicate only the requests
in flight and the last group's few. Only a 2xx answer delivers; 410 Gone disables the endpoint;
other answers and network errors are retried on the ``RETRY_SCHEDULE`` (or after a bounded
``Retry-After`` on 429/503) until ``max_attempts``. Every query runs in system mode, since one
batch spans tenants."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from time import monotonic
from time import time as unix_time
from types import SimpleNamespace
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from better_webhooks import crypto, db, signals
from better_webhooks.client import Client, Response, attempt_limit
from better_webhooks.conf import seconds, to_seconds, webhook_settings
from better_webhooks.exceptions import EncryptionError
from better_webhooks.models import WebhookEndpoint, message_body
from better_webhooks.signing import signed_headers

logger = logging.getLogger(__name__)

#: Seconds of a lease kept free after the last attempt it may start ends: time to write the
#: last outcomes (the recording statement locks the rows, after which no claim takes them).
LEASE_MARGIN = 2.0
#: A batch's outcomes are written this many at a time, or this many seconds after the first of
#: a group is known: what a killed worker may have sent without recording it, beside the
#: requests in flight, at a cost of one statement per group.
RECORD_EVERY = 8
RECORD_WITHIN = 0.025

# The candidates are a MATERIALIZED CTE: as an ``IN (SELECT ... LIMIT n)`` subquery the planner
# may run the locking subquery once per outer row, and each run, skipping the rows already locked,
# returns new ones, so the UPDATE claimed more than ``n`` rows.
# A delivery still 'delivering' after its lease was abandoned: its worker stopped before recording
# it (a delivery released for want of lease is back to 'pending' and is not counted). It may be
# what killed the worker, so it is claimed alone, never in a batch with others, which would die
# with it. The claim that takes it over counts that, and the one that brings the count to
# ABANDONED_LIMIT fails it in the same statement instead of handing it out: a payload that kills
# its worker stops after a few workers, and the deliveries that shared its batch go out one by
# one. ``status`` and ``abandoned_claims`` are read under the row lock: the latest values.
_CLAIM_SQL = """
WITH abandoned AS MATERIALIZED (
       SELECT id, true AS abandoned, abandoned_claims + 1 >= %s AS give_up
         FROM webhook_deliveries
        WHERE status = 'delivering' AND lease_until < statement_timestamp()
          {condition}
        ORDER BY next_attempt_at
        LIMIT 1
          FOR UPDATE SKIP LOCKED),
due AS MATERIALIZED (
       SELECT id
         FROM webhook_deliveries
        WHERE status = 'pending' AND next_attempt_at <= statement_timestamp()
          {condition}
          AND NOT EXISTS (SELECT FROM abandoned)
        ORDER BY next_attempt_at
        LIMIT %s
          FOR UPDATE SKIP LOCKED),
candidates AS (
       SELECT id, abandoned, give_up FROM abandoned
        UNION ALL
       SELECT id, false, false FROM due)
UPDATE webhook_deliveries AS d
   SET status = CASE WHEN c.give_up THEN 'failed' ELSE 'delivering' END,
       abandoned_claims = d.abandoned_claims + CASE WHEN c.abandoned THEN 1 ELSE 0 END,
       locked_by = CASE WHEN c.give_up THEN NULL ELSE %s END,
       lease_until = CASE WHEN c.give_up THEN NULL
                          ELSE statement_timestamp() + make_interval(secs => %s) END,
       last_error = CASE WHEN c.give_up THEN
           'the worker holding this delivery stopped ' || (d.abandoned_claims + 1)
           || ' times while sending it (its lease expired before it recorded an outcome); '
           || 'check the worker logs for processes killed (SIGKILL, out of memory) or crashed '
           || 'while sending this payload, fix the cause, then replay the delivery'
           ELSE d.last_error END,
       updated_at = CASE WHEN c.give_up THEN statement_timestamp() ELSE d.updated_at END
  FROM candidates AS c
 WHERE d.id = c.id
RETURNING d.id, d.message_id, d.endpoint_id, d.event,
          (SELECT m.payload FROM webhook_messages AS m WHERE m.id = d.message_id),
          d.attempts, d.max_attempts, d.created_at, d.tenant_id, c.give_up, c.abandoned
"""
# With no condition and a limit of 0 the statement claims only an abandoned delivery (alone);
# first and later attempts are claimed among pending deliveries only, so never beside one.
_ABANDONED = ""
_FRESH = "AND status = 'pending' AND attempts = 0"
_RETRY = "AND status = 'pending' AND attempts > 0"
_IDS = "AND id = ANY(%s::uuid[])"


@dataclass
class Claimed:
    """A delivery held by this worker until its lease ends (``held_until``, on the monotonic
    clock, read before the claim was sent, so it never falls after the database's lease end)."""

    id: Any
    message_id: str
    endpoint_id: Any
    event: str
    payload: Any
    attempts: int
    max_attempts: int
    created_at: datetime
    tenant_id: Any
    held_until: float = math.inf
    # Taken over from a worker that stopped while holding it (such a delivery is claimed alone).
    abandoned: bool = False

    def body(self) -> bytes:
        """The JSON body: the same bytes on every attempt (the signature covers them)."""
        return message_body(self.event, self.created_at, self.payload)


@dataclass
class Outcome:
    """What became of one attempt of one delivery."""

    claimed: Claimed
    attempt: int
    status: str  # delivered | pending | failed | released (not attempted: the lease ran short)
    url: str = ""
    request_headers: dict[str, str] = field(default_factory=dict)
    response: Response | None = None
    error: str = ""
    next_attempt_at: datetime | None = None
    disable_reason: str = ""
    recorded: bool = True


# -- claiming ---------------------------------------------------------------------------------


def _rows(cursor: Any) -> tuple[list[Claimed], list[Any]]:
    # The claimed deliveries, and the ids of those the claim failed as abandoned too often.
    result, given_up = [], []
    for row in cursor.fetchall():
        if row[9]:
            given_up.append(row[0])
            continue
        payload = row[4]
        if isinstance(payload, str):
            payload = json.loads(payload)
        result.append(
            Claimed(
                row[0],
                row[1],
                row[2],
                row[3],
                payload,
                row[5],
                row[6],
                row[7],
                row[8],
                abandoned=row[10],
            )
        )
    return result, given_up


def _claim_sql(cursor: Any, condition: str, params: list[Any]) -> list[Claimed]:
    # ``params`` is [worker_id, lease, *condition parameters, limit]; the statement takes the
    # condition's parameters once per candidate query, then the limit, worker and lease.
    worker_id, lease, *condition_params, size = params
    limit = int(webhook_settings.ABANDONED_LIMIT)
    # Read before the statement is sent: the lease the database grants ends later than this.
    held_until = monotonic() + lease
    cursor.execute(
        _CLAIM_SQL.format(condition=condition),
        [limit, *condition_params, *condition_params, size, worker_id, lease],
    )
    claimed, given_up = _rows(cursor)
    for item in claimed:
        item.held_until = held_until
    if given_up:
        logger.error(
            "%d webhook deliveries failed: the worker holding each stopped %d times while "
            "sending it (killed, out of memory or crashed); check the worker logs, fix the "
            "cause, then replay them: %s",
            len(given_up),
            limit,
            ", ".join(str(i) for i in given_up),
        )
    return claimed


def lease_needed() -> float:
    """The shortest lease under which an attempt may start: its longest possible run plus
    ``LEASE_MARGIN`` to record it."""
    return attempt_limit() + LEASE_MARGIN


def claim(limit: int, worker_id: str, lease: float | None = None) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries; retries get at most ``RETRY_SHARE`` of the batch
    while fresh deliveries wait, so neither kind starves the other. A delivery abandoned by a
    stopped worker is claimed first, and alone."""
    lease = float(lease if lease is not None else webhook_settings.LEASE_SECONDS)
    share = float(webhook_settings.RETRY_SHARE)
    retry_quota = max(1, int(limit * share)) if limit > 1 else limit
    with db.system_scope(), connections[db.alias()].cursor() as cursor:
        abandoned = _claim_sql(cursor, _ABANDONED, [worker_id, lease, 0])
        if abandoned:
            return abandoned
        claimed = _claim_sql(cursor, _RETRY, [worker_id, lease, retry_quota])
        if len(claimed) < limit:
            claimed += _claim_sql(cursor, _FRESH, [worker_id, lease, limit - len(claimed)])
        if len(claimed) < limit and len(claimed) >= retry_quota:
            # Few fresh deliveries are waiting: give the rest of the batch to retries.
            claimed += _claim_sql(cursor, _RETRY, [worker_id, lease, limit - len(claimed)])
    return claimed


def _alone(claimed: list[Claimed]) -> bool:
    # An abandoned delivery is a batch of its own: nothing may be claimed to go with it.
    return any(item.abandoned for item in claimed)


def _claim_ids(ids: list[Any], worker_id: str, lease: float | None) -> list[Claimed]:
    # Those of ``ids`` that are due and not held by another worker; the caller's scope.
    if not ids:
        return []
    lease = float(lease if lease is not None else webhook_settings.LEASE_SECONDS)
    with connections[db.alias()].cursor() as cursor:
        return _claim_sql(cursor, _IDS, [worker_id, lease, [str(i) for i in ids], len(ids)])


def _claim_fresh(limit: int, worker_id: str, lease: float | None) -> list[Claimed]:
    # Up to ``limit`` due first attempts, oldest first; the caller's scope.
    lease = float(lease if lease is not None else webhook_settings.LEASE_SECONDS)
    with connections[db.alias()].cursor() as cursor:
        return _claim_sql(cursor, _FRESH, [worker_id, lease, limit])


# -- backoff ----------------------------------------------------------------------------------


def retry_schedule() -> list[float]:
    """The waits (seconds) before the 2nd, 3rd, ... attempt; the last one repeats."""
    values = [to_seconds(item) for item in webhook_settings.raw("RETRY_SCHEDULE")]
    return values or [60.0]


def backoff(attempts_done: int, jitter: float | None = None) -> float:
    """Seconds to wait after ``attempts_done`` attempts, spread by +/- jitter."""
    schedule = retry_schedule()
    base = schedule[min(max(attempts_done, 1), len(schedule)) - 1]
    spread = float(webhook_settings.RETRY_JITTER if jitter is None else jitter)
    return max(0.0, base * (1 + random.uniform(-spread, spread)))


def retry_after(response: Response) -> float | None:
    """A 429/503 answer's Retry-After (seconds or HTTP date), within the configured bounds."""
    if response.status not in (429, 503):
        return None
    value = next((v for k, v in response.headers.items() if k.lower() == "retry-after"), None)
    if not value:
        return None
    value = value.strip()
    try:
        wait = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            return None
        wait = (moment - timezone.now()).total_seconds()
    low = float(webhook_settings.RETRY_AFTER_MIN)
    high = float(webhook_settings.RETRY_AFTER_MAX)
    return min(max(wait, low), high)


# -- attempting -------------------------------------------------------------------------------


@dataclass
class EndpointInfo:
    id: Any
    url: str
    status: str
    secrets: list[str]
    error: str = ""


def load_endpoints(ids: set[Any]) -> dict[Any, EndpointInfo]:
    """The URL, status and plain secrets of the batch's endpoints (one query)."""
    with db.system_scope():
        return _load_endpoints(ids)


_ENDPOINTS_SQL = "SELECT id, url, status, secrets FROM webhook_endpoints WHERE id = ANY(%s::uuid[])"


def _load_endpoints(ids: set[Any]) -> dict[Any, EndpointInfo]:
    with connections[db.alias()].cursor() as cursor:
        cursor.execute(_ENDPOINTS_SQL, [[str(i) for i in ids]])
        rows = cursor.fetchall()
    now = timezone.now()
    result = {}
    for endpoint_id, url, endpoint_status, stored in rows:
        secrets = json.loads(stored) if isinstance(stored, str) else stored
        endpoint = SimpleNamespace(id=endpoint_id, secrets=secrets)
        try:
            plain = crypto.endpoint_secrets(endpoint, now)
            error = "" if plain else "the endpoint has no valid secret"
        except EncryptionError as exc:
            plain, error = [], str(exc)
        result[endpoint_id] = EndpointInfo(endpoint_id, url, endpoint_status, plain, error)
    return result


def attempt(claimed: Claimed, endpoint: EndpointInfo | None, client: Client) -> Outcome:
    """Make one attempt (no database work): sign, POST, classify the answer. A delivery whose
    lease could end before the attempt does is released instead (status ``released``)."""
    number = claimed.attempts + 1
    if endpoint is None or endpoint.status != "active":
        reason = "the endpoint was deleted" if endpoint is None else "the endpoint is disabled"
        return Outcome(claimed, claimed.attempts, "failed", error=reason, recorded=False)
    if endpoint.error:
        return Outcome(claimed, claimed.attempts, "failed", error=endpoint.error, recorded=False)
    if claimed.held_until - monotonic() < lease_needed():
        # Once the lease ends another worker may claim the delivery and send it too.
        return Outcome(claimed, claimed.attempts, "released", recorded=False)
    body = claimed.body()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": webhook_settings.USER_AGENT,
        **signed_headers(endpoint.secrets, claimed.message_id, int(unix_time()), body),
    }
    response = client.post(endpoint.url, body, headers)
    outcome = Outcome(
        claimed,
        number,
        "pending",
        url=endpoint.url,
        request_headers=headers,
        response=response,
    )
    status = response.status
    if status is not None and 200 <= status < 300:
        outcome.status = "delivered"
        return outcome
    if status == 410:
        outcome.status = "failed"
        outcome.error = "410 Gone: the receiver asked to stop; the endpoint is disabled"
        outcome.disable_reason = "the endpoint answered 410 Gone"
        return outcome
    if response.error:
        outcome.error = response.error
    elif status is not None and 300 <= status < 400:
        location = response.headers.get("Location") or response.headers.get("location") or ""
        outcome.error = f"HTTP {status}: redirects are not followed (Location: {location})"
    else:
        outcome.error = f"HTTP {status}"
    if number >= claimed.max_attempts:
        outcome.status = "failed"
        return outcome
    wait = (retry_after(response) if status else None) or backoff(number)
    outcome.next_attempt_at = timezone.now() + timedelta(seconds=wait)
    return outcome


# -- recording --------------------------------------------------------------------------------


# One statement records a batch: the attempts, the deliveries' new state (only those this worker
# still holds) and, for endpoints that just took a delivery, the reset of their failure streak.
# A released delivery goes back to pending as it was: attempt count, error and due time kept.
# The rows travel as JSON parameters: one query text for every batch size (psycopg caches its
# parsing) and one json.dumps instead of quoting each value.
_RECORD_SQL = """
WITH attempts AS (
    INSERT INTO webhook_delivery_attempts
           (id, delivery_id, attempt, url, request_headers, response_status, response_headers,
            response_body, duration_ms, error, tenant_id, created_at)
    SELECT gen_random_uuid(), a.delivery_id, a.attempt, a.url, a.request_headers,
           a.response_status, a.response_headers, a.response_body, a.duration_ms, a.error,
           a.tenant_id, %s
      FROM jsonb_to_recordset(%s::jsonb) AS a(delivery_id uuid, attempt int, url text,
           request_headers jsonb, response_status int,
           response_headers jsonb, response_body text, duration_ms int, error text,
           tenant_id uuid)
), owned AS (
    UPDATE webhook_deliveries AS d
       SET status = v.status, attempts = v.attempts, next_attempt_at = COALESCE(v.next_at,
           d.next_attempt_at), delivered_at = v.delivered_at,
           last_error = CASE WHEN v.released THEN d.last_error ELSE v.error END,
           last_status_code = CASE WHEN v.released THEN d.last_status_code ELSE v.code END,
           lease_until = NULL, locked_by = NULL, updated_at = now()
      FROM jsonb_to_recordset(%s::jsonb) AS v(id uuid, status text, attempts int,
           next_at timestamptz, delivered_at timestamptz, error text, code int, released bool)
     WHERE d.id = v.id AND d.locked_by = %s AND d.status = 'delivering'
    RETURNING d.id, d.endpoint_id, v.status
), reset AS (
    UPDATE webhook_endpoints AS e SET consecutive_failures = 0, failing_since = NULL
     WHERE e.id IN (SELECT endpoint_id FROM owned WHERE status = 'delivered')
       AND (e.consecutive_failures <> 0 OR e.failing_since IS NOT NULL)
)
SELECT id FROM owned
"""


def record(outcomes: list[Outcome], worker_id: str) -> list[Any]:
    """Write the attempts and the deliveries' new state (one transaction); returns the ids whose
    state this worker still owned. Endpoint failure counters and auto-disable follow."""
    if not outcomes:
        return []
    now = timezone.now()
    disabled: list[tuple[WebhookEndpoint, str]] = []
    failed_ids: list[Any] = []
    with db.system_scope():
        using = db.alias()
        attempts = [
            {
                "delivery_id": str(o.claimed.id),
                "attempt": o.attempt,
                "url": o.url,
                "request_headers": o.request_headers,
                "response_status": o.response.status if o.response else None,
                "response_headers": o.response.headers if o.response else {},
                # PostgreSQL text cannot hold NUL, which a receiver may well send.
                "response_body": o.response.body.replace("\x00", "\ufffd") if o.response else "",
                "duration_ms": o.response.duration_ms if o.response else 0,
                "error": o.error,
                "tenant_id": str(o.claimed.tenant_id) if o.claimed.tenant_id else None,
            }
            for o in outcomes
            if o.recorded
        ]
        states = [
            {
                "id": str(o.claimed.id),
                "status": "pending" if o.status == "released" else o.status,
                "released": o.status == "released",
                "attempts": o.attempt,
                "next_at": o.next_attempt_at.isoformat() if o.next_attempt_at else None,
                "delivered_at": now.isoformat() if o.status == "delivered" else None,
                "error": o.error,
                "code": o.response.status if o.response else None,
            }
            for o in outcomes
        ]
        with connections[using].cursor() as cursor:
            cursor.execute(_RECORD_SQL, [now, json.dumps(attempts), json.dumps(states), worker_id])
            owned = {row[0] for row in cursor.fetchall()}
        mine = [o for o in outcomes if o.claimed.id in owned]
        failed_ids = [o.claimed.id for o in mine if o.status == "failed"]
        disabled = _update_endpoints(mine, now)
    for endpoint, reason in disabled:
        transaction.on_commit(
            functools.partial(
                signals.endpoint_disabled.send,
                sender=WebhookEndpoint,
                endpoint=endpoint,
                reason=reason,
            ),
            using=db.alias(),
        )
    if failed_ids:
        logger.info("%d webhook deliveries ran out of attempts.", len(failed_ids))
    return list(owned)


def _update_endpoints(outcomes: list[Outcome], now: datetime) -> list[tuple[WebhookEndpoint, str]]:
    """Failure streaks and auto-disable for the outcomes this worker recorded."""
    using = db.alias()
    manager = WebhookEndpoint.objects.using(using)
    succeeded = {o.claimed.endpoint_id for o in outcomes if o.status == "delivered"}
    erred = {o.claimed.endpoint_id for o in outcomes if o.status != "delivered" and o.recorded}
    exhausted: dict[Any, int] = {}
    gone: dict[Any, str] = {}
    for o in outcomes:
        if o.disable_reason:
            gone[o.claimed.endpoint_id] = o.disable_reason
        elif o.status == "failed" and o.recorded:
            exhausted[o.claimed.endpoint_id] = exhausted.get(o.claimed.endpoint_id, 0) + 1
    # The streak of the endpoints in ``succeeded`` was reset by _RECORD_SQL.
    still_failing = erred - succeeded
    if still_failing:
        manager.filter(id__in=still_failing, failing_since__isnull=True).update(failing_since=now)
    limit = webhook_settings.DISABLE_AFTER_FAILED_DELIVERIES
    window = seconds("DISABLE_AFTER")
    to_disable: dict[Any, str] = dict(gone)
    if exhausted:
        for endpoint in manager.filter(id__in=exhausted, status="active").select_for_update():
            count = endpoint.consecutive_failures + exhausted[endpoint.id]
            manager.filter(id=endpoint.id).update(consecutive_failures=count)
            since = endpoint.failing_since or now
            if limit is not None and count >= int(limit):
                to_disable.setdefault(
                    endpoint.id, f"{count} deliveries in a row failed after all their attempts"
                )
            elif window is not None and (now - since).total_seconds() >= window:
                to_disable.setdefault(endpoint.id, f"failing without a success since {since}")
    disabled = []
    for endpoint_id, reason in to_disable.items():
        changed = manager.filter(id=endpoint_id, status="active").update(
            status="disabled", disabled_reason=reason, disabled_at=now, updated_at=now
        )
        if changed:
            disabled.append((manager.get(id=endpoint_id), reason))
            logger.warning("Webhook endpoint %s disabled: %s", endpoint_id, reason)
    return disabled


# -- one batch ----------------------------------------------------------------------------------


def _sent_and_recorded(
    claimed: list[Claimed],
    worker_id: str,
    client: Client,
    executor: Any,
    endpoints: dict[Any, EndpointInfo],
) -> list[Outcome]:
    """Attempt the deliveries and record each outcome as soon as it is known.

    Outcomes are written in groups of ``RECORD_EVERY``, or ``RECORD_WITHIN`` seconds after the
    first of a group is known, whichever comes first (one transaction each): a worker killed
    mid-batch can have sent twice only the requests in flight and the few answered in the
    group not yet written, while one statement still records many outcomes under load.
    """
    outcomes: list[Outcome] = []
    if executor is None or len(claimed) == 1:
        for c in claimed:
            outcome = attempt(c, endpoints.get(c.endpoint_id), client)
            record([outcome], worker_id)
            outcomes.append(outcome)
        return outcomes
    waiting = {executor.submit(attempt, c, endpoints.get(c.endpoint_id), client) for c in claimed}
    group: list[Outcome] = []
    errors: list[BaseException] = []
    due = math.inf  # when the group must be written
    while waiting:
        timeout = None if not group else max(0.0, due - monotonic())
        done, waiting = wait(waiting, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            try:
                group.append(future.result())
            except Exception as exc:  # raised below, once the others are recorded
                errors.append(exc)
        if group and due == math.inf:
            due = monotonic() + RECORD_WITHIN
        if group and (len(group) >= RECORD_EVERY or monotonic() >= due or not waiting):
            record(group, worker_id)
            outcomes += group
            group, due = [], math.inf
    if errors:
        # The deliveries whose attempt raised stay held until their lease ends, then are due.
        raise errors[0]
    return outcomes


def deliver_batch(
    claimed: list[Claimed],
    worker_id: str,
    client: Client,
    executor: Any = None,
    endpoints: dict[Any, EndpointInfo] | None = None,
) -> list[Outcome]:
    """Attempt every claimed delivery (concurrently with ``executor``), recording each outcome
    as it is known; those the lease has no room left for are released, due at once, for the
    next claim. Returns the outcomes in the order they completed.

    ``endpoints`` are the batch's endpoints when the caller loaded them already."""
    if not claimed:
        return []
    if endpoints is None:
        endpoints = load_endpoints({c.endpoint_id for c in claimed})
    outcomes = _sent_and_recorded(claimed, worker_id, client, executor, endpoints)
    released = sum(1 for o in outcomes if o.status == "released")
    if released:
        logger.info(
            "Webhook worker %s released %d deliveries unsent: its lease had no room left for "
            "them (each attempt needs %g s of it).",
            worker_id,
            released,
            lease_needed(),
        )
    return outcomes


def sending_pool(concurrency: int) -> tuple[Client, ThreadPoolExecutor | None]:
    """An HTTP client pooling ``concurrency`` connections, and a thread pool (None for one)."""
    executor = (
        ThreadPoolExecutor(concurrency, thread_name_prefix="webhooks") if concurrency > 1 else None
    )
    return Client(maxsize=concurrency), executor


class _Shared:
    """The process's HTTP client and thread pool for the Celery task, made on first use.

    Keyed by process id: a pool created before a fork (Celery's prefork pool) has no threads
    in the child, so each process makes its own.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = 0
        self.client: Client | None = None
        self.executor: ThreadPoolExecutor | None = None

    def get(self) -> tuple[Client, ThreadPoolExecutor | None]:
        with self.lock:
            if self.client is None or self.pid != os.getpid():
                self.pid = os.getpid()
                self.client, self.executor = sending_pool(int(webhook_settings.WORKER_CONCURRENCY))
            return self.client, self.executor


_shared = _Shared()


def deliver_ids(ids: list[Any], worker_id: str = "celery", fill: int = 0) -> list[Outcome]:
    """Claim those of ``ids`` that are due and free, send them and record the outcomes.

    The batch path of the polling worker (one claim, concurrent POSTs on pooled connections, each
    outcome recorded as it is known); ids not due, already sent or held by another worker are
    skipped, so running it twice, or alongside the polling worker, is harmless.

    With ``fill``, a batch of fewer than ``fill`` deliveries is topped up with other due first
    attempts, oldest first, claimed as the polling worker claims them (``SKIP LOCKED``, same
    lease): under load one call sends what many small batches would have, and the calls that
    carried those ids find them taken and return at once.
    """
    # The claim and the endpoints it needs share one transaction.
    with db.system_scope():
        claimed = _claim_ids(ids, worker_id, None)
        if len(claimed) < fill and not _alone(claimed):
            claimed += _claim_fresh(fill - len(claimed), worker_id, None)
        endpoints = _load_endpoints({c.endpoint_id for c in claimed}) if claimed else {}
    if not claimed:
        return []
    client, executor = _shared.get()
    return deliver_batch(claimed, worker_id, client, executor, endpoints)
