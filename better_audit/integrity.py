"""Tamper evidence for the audit trail: append-only enforcement and a per-tenant hash chain.

Append-only (migration ``0002_tamper_evidence``, SQL in ``append_only_sql``):

- statement-level ``BEFORE UPDATE OR DELETE OR TRUNCATE`` triggers on ``audit_logs`` refuse every
  UPDATE (for every role), every DELETE except in the dedicated NOLOGIN role ``better_audit_admin``
  (``BETTER_AUDIT["INTEGRITY"]["ADMIN_ROLE"]``), and every TRUNCATE except by the table owner. They
  are statement triggers, so a refused statement fails loudly even when row-level security would
  have matched no row. The migration also revokes UPDATE, DELETE and TRUNCATE on ``audit_logs``
  from every role but the owner and the admin role (which keeps SELECT and DELETE only), so the
  application role is left with SELECT and INSERT. A later blanket grant (``better_tenant init``)
  may give UPDATE/DELETE back; the triggers still refuse them.
- the privileged path is the admin role, entered with ``SET LOCAL ROLE`` by ``seal``, ``verify``,
  ``purge`` and ``chain_head``. The application role is a NOINHERIT member of it (the same
  pattern as better_tenant's system role), so its ordinary queries never carry the admin role's
  rights, and no setting the application can change opens the path.
- TRUNCATE stays possible for the table owner because Django's test runner empties tables with
  it and because the owner can disable triggers anyway: the owner is trusted to run migrations.

What an attacker holding the application role's SQL access can do, honestly: everything the
admin role can, since it may ``SET ROLE`` to it: delete entries (never update them) and write
seal and purge rows. The owner role can additionally disable the triggers and rewrite anything.
Neither can do so unnoticed: the hash chain below makes every later change to a sealed entry, a
deletion outside ``purge``, a reordering or a back-dated insertion visible to ``verify``; and a
full rewrite of a chain (recomputing every later link) is caught by comparing against chain heads
recorded elsewhere (``chain_head()`` output, carried by exports; ``verify(heads=...)``). Entries
written since the last seal are not yet protected: seal often (see ``integrity_tasks``).

Hash chain: writers insert as before, without a lock and without hashing. The sealer
(``seal()``, run by ``verify``, by ``manage.py better_audit verify``, or by the
``better_audit.seal`` Celery task / a cron job) takes, per chain, the rows not yet sealed, ordered
by ``(timestamp, id)``, and appends one ``audit_log_seals`` row per entry::

    entry_hash = sha256(canonical JSON of the stored row)
    hash       = sha256(f"{previous hash}:{seq}:{entry_hash}")      # seq: 1, 2, 3 ... gapless
    hash_0     = sha256(f"better_audit:{tenant id or 'global'}")   # binds a chain to its tenant

There is one chain per tenant and one (``GLOBAL``) for rows without a tenant. ``seq`` is assigned
at seal time, so a row that commits late with an older timestamp is simply sealed at the head of
its chain. Sealing one chain takes a transaction-level advisory lock on that chain, so two
sealers never fork it; writers never wait for it. The canonical JSON is the stored row (the
``better_audit.sql.COLUMNS``, already redacted) as an object with sorted keys and no whitespace:
uuids as lowercase strings, the timestamp in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, text arrays
as lists, JSON columns with their keys sorted and their numbers written as PostgreSQL prints them.

``verify()`` streams each chain's seals joined to the entries (a server-side cursor) and reports
the first broken link: ``missing`` (a gap in ``seq``, or a sealed entry gone without a purge),
``reordered`` (a link that does not follow from the previous one: seal rows swapped, inserted or
altered), ``modified`` (an entry no longer hashes as sealed), ``backdated`` (an entry sealed after
later entries although its timestamp is older than the previous seal by more than
``LATE_TOLERANCE`` seconds: an insertion into the past), ``rewritten``/``truncated`` (a head given
in ``heads`` no longer matches).

Purge (``purge()``) deletes entries older than a cutoff, optionally only of some tables, in the
admin role and in batches. Seal rows are kept (about 200 bytes an entry), so a chain stays
recomputable whatever was deleted, and each batch writes an anchor row to ``audit_purges``
(chain, seq range, hash of its last purged link, count); the seals of deleted entries point to
it. ``verify`` accepts a missing entry only when its seal points to an anchor of the same chain
covering its seq. Seal and purge tables have row-level security with policies for the admin role
only, so tenants read neither; a statement trigger refuses changes to them except the admin
role's ``purge_id`` marking.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import DatabaseError, connections, router, transaction
from django.utils import timezone

from better_audit import sql
from better_audit.conf import audit_settings
from better_audit.exceptions import AuditConfigurationError
from better_core.roles import literal
from better_tenant.shortcuts import holding, holds_sql, tenancy_installed

SEALS_TABLE = "audit_log_seals"
PURGES_TABLE = "audit_purges"
TRIGGER_FUNCTION = "better_audit_append_only"
TRIGGER_NAME = "audit_append_only"
ADMIN_POLICY_PREFIX = "rls_audit_admin"
PROTECTED_TABLES = {sql.TABLE: "DELETE", SEALS_TABLE: "UPDATE", PURGES_TABLE: ""}

#: Selects the chain of entries without a tenant (``tenant_id=None`` means every chain).
GLOBAL = "global"
ALGORITHM = "sha256"
_JSON_COLUMNS = frozenset({"before_data", "after_data", "diff", "metadata"})
_UUID_COLUMNS = frozenset({"id", "tenant_id"})


class AuditIntegrityError(AuditConfigurationError):
    """The privileged path of the audit trail is not available to this database role."""


# --- canonical form and hashes -----------------------------------------------------------------


class _Number(str):
    """A JSON number kept exactly as PostgreSQL printed it."""


def _select_list(alias: str = "a") -> str:
    """The stored columns, rendered server-side so the canonical form needs no client types."""
    parts = []
    for column in sql.COLUMNS:
        ref = f"{alias}.{sql.qn(column)}"
        if column in _JSON_COLUMNS or column in _UUID_COLUMNS:
            parts.append(f"{ref}::text")
        elif column == "timestamp":
            parts.append(f"to_char({ref} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        else:
            parts.append(ref)
    return ", ".join(parts)


def _encode(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, _Number):
        return str.__str__(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        items = sorted(value.items())
        return "{" + ",".join(f"{_encode(str(k))}:{_encode(v)}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    raise TypeError(f"audit integrity: cannot encode {type(value).__name__} canonically")


def canonical_json(values: Iterable[Any]) -> str:
    """The canonical JSON of one stored row, from the values of ``_select_list()``."""
    row: dict[str, Any] = {}
    for column, value in zip(sql.COLUMNS, values, strict=True):
        if column in _JSON_COLUMNS and value is not None:
            value = json.loads(value, parse_float=_Number, parse_int=_Number)
        row[column] = value
    return _encode(row)


def entry_hash(values: Iterable[Any]) -> str:
    return hashlib.sha256(canonical_json(values).encode()).hexdigest()


def genesis_hash(chain: str | None) -> str:
    return hashlib.sha256(f"better_audit:{chain or GLOBAL}".encode()).hexdigest()


def link_hash(previous: str, seq: int, digest: str) -> str:
    return hashlib.sha256(f"{previous}:{seq}:{digest}".encode()).hexdigest()


# --- the privileged role -----------------------------------------------------------------------


def admin_role() -> str:
    return audit_settings.INTEGRITY["ADMIN_ROLE"]


#: With better_tenant, the admin role's policies also ask for this marker, which only a proof
#: signed with the context key enters (``better_tenant.holding``): the role alone opens nothing.
ADMIN_MARKER = "better_audit_admin"


def admin_condition() -> str:
    """The USING of the admin role's policies: the marker with better_tenant, else ``true``."""
    return holds_sql(ADMIN_MARKER) or "true"


def _alias(using: str | None) -> str:
    if using:
        return using
    from better_audit.models import AuditLog

    return router.db_for_write(AuditLog) or "default"


@contextlib.contextmanager
def privileged(using: str | None = None) -> Iterator[Any]:
    """A transaction (a savepoint when nested) in the admin role; yields a cursor.

    The previous role is put back on a normal exit, since a released savepoint keeps ``SET
    LOCAL`` values; on an error the rollback restores it.
    """
    alias = _alias(using)
    role = admin_role()
    conn = connections[alias]
    with (
        holding(ADMIN_MARKER, using=alias),
        transaction.atomic(using=alias),
        conn.cursor() as cursor,
    ):
        cursor.execute("SELECT current_setting('role'), session_user")
        previous, session_user = cursor.fetchone()
        try:
            with transaction.atomic(using=alias):
                cursor.execute("SELECT set_config('role', %s, true)", [role])
        except DatabaseError as exc:
            raise AuditIntegrityError(
                f"Sealing, verifying and purging the audit trail run as the database role "
                f"{role!r}, and {session_user!r} cannot switch to it ({exc}). As a superuser "
                f"(or the role's creator) run: GRANT {sql.qn(role)} TO {sql.qn(session_user)} "
                "WITH INHERIT FALSE, SET TRUE; (PostgreSQL < 16: GRANT the role and make "
                f"{session_user} NOINHERIT), or set BETTER_AUDIT['INTEGRITY']['ADMIN_ROLE']."
            ) from exc
        yield cursor
        if not conn.needs_rollback:
            cursor.execute("SELECT set_config('role', %s, true)", [previous])


def _chain_condition(chain: str | None, column: str = "chain") -> tuple[str, list[Any]]:
    if chain is None:
        return f"{column} IS NULL", []
    return f"{column} = %s::uuid", [chain]


def _chain_key(tenant_id: Any) -> str | None:
    """``GLOBAL`` -> None (the chain without a tenant); a tenant, uuid or string -> its id."""
    if tenant_id is None or tenant_id == GLOBAL:
        return None
    pk = getattr(tenant_id, "pk", tenant_id)
    return str(uuid.UUID(str(pk)))


def _lock_chain(cursor: Any, chain: str | None) -> None:
    cursor.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"better_audit:{chain or ''}"]
    )


def _chains(cursor: Any, tenant_id: Any, query: str) -> list[str | None]:
    if tenant_id is not None:
        return [_chain_key(tenant_id)]
    cursor.execute(query)
    return sorted((row[0] for row in cursor.fetchall()), key=lambda c: (c is not None, c or ""))


_UNSEALED = f"NOT EXISTS (SELECT 1 FROM {SEALS_TABLE} s WHERE s.entry_id = a.id)"


# --- sealing -----------------------------------------------------------------------------------


def seal(tenant_id: Any = None, batch_size: int | None = None, *, using: str | None = None) -> int:
    """Seal the entries not sealed yet; returns how many were sealed.

    ``tenant_id``: None seals every chain, ``GLOBAL`` the chain without a tenant, a tenant (or its
    id) that tenant's chain. Each batch of ``batch_size`` entries is one short transaction.
    """
    size = batch_size or audit_settings.INTEGRITY["BATCH_SIZE"]
    with privileged(using) as cursor:
        chains = _chains(
            cursor,
            tenant_id,
            f"SELECT DISTINCT a.tenant_id::text FROM {sql.TABLE} a WHERE {_UNSEALED}",
        )
    sealed = 0
    for chain in chains:
        after = None
        while True:
            count, after = _seal_batch(chain, size, after, using)
            sealed += count
            if count < size:
                break
    return sealed


def _seal_batch(
    chain: str | None, size: int, after: tuple | None, using: str | None
) -> tuple[int, tuple | None]:
    """Seal the next ``size`` unsealed entries of a chain; returns (count, last (timestamp, id)).

    Later batches of one run start after the previous batch's last entry, so a backlog is read
    once; an entry committed meanwhile with an older timestamp is sealed by the next run.
    """
    condition, params = _chain_condition(chain, "a.tenant_id")
    if after is not None:
        condition += " AND (a.timestamp, a.id) > (%s, %s)"
        params = [*params, *after]
    with privileged(using) as cursor:
        _lock_chain(cursor, chain)
        seals_condition, seals_params = _chain_condition(chain)
        cursor.execute(
            f"SELECT seq, hash FROM {SEALS_TABLE} WHERE {seals_condition} "
            "ORDER BY seq DESC LIMIT 1",
            seals_params,
        )
        head = cursor.fetchone()
        seq, previous = head if head else (0, genesis_hash(chain))
        cursor.execute(
            f"SELECT a.timestamp, a.id, {_select_list()} FROM {sql.TABLE} a "
            f"WHERE {condition} AND {_UNSEALED} ORDER BY a.timestamp, a.id LIMIT %s",
            [*params, size],
        )
        rows = cursor.fetchall()
        if not rows:
            return 0, after
        cursor.execute("SELECT clock_timestamp()")
        sealed_at = cursor.fetchone()[0]
        values: list[Any] = []
        for row in rows:
            seq += 1
            digest = entry_hash(row[2:])
            previous = link_hash(previous, seq, digest)
            values += [row[1], chain, seq, digest, previous, sealed_at]
        placeholders = ", ".join(["(%s, %s::uuid, %s, %s, %s, %s)"] * len(rows))
        cursor.execute(
            f"INSERT INTO {SEALS_TABLE} "
            f"(entry_id, chain, seq, entry_hash, hash, sealed_at) VALUES {placeholders}",
            values,
        )
    return len(rows), (rows[-1][0], rows[-1][1])


_seal_all = seal


# --- verification ------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    """The outcome of ``verify()``; ``first_broken`` names the first broken link, if any."""

    ok: bool
    checked: int
    first_broken: dict[str, Any] | None
    message: str
    pending: int = 0
    purged: int = 0
    chains: int = 0
    broken: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify(
    tenant_id: Any = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    seal: bool = True,
    heads: Iterable[Mapping[str, Any]] | Mapping[str, Any] | None = None,
    using: str | None = None,
) -> VerifyReport:
    """Recompute the chains (all, ``GLOBAL``, or one tenant's) and report the first broken link.

    Seals pending entries first unless ``seal=False``. ``progress(checked, total)`` is called
    every batch. ``heads``: chain heads recorded earlier (``chain_head()`` output or its
    ``chains`` list); each must still be a link of its chain with the same hash.
    """
    if seal:
        _seal_all(tenant_id, using=using)
    expected = _expected_heads(heads)
    tolerance = audit_settings.INTEGRITY["LATE_TOLERANCE"]
    late = None if tolerance is None else datetime.timedelta(seconds=tolerance)
    checked = purged = pending = 0
    broken: list[dict[str, Any]] = []
    with privileged(using) as cursor:
        chains = _chains(cursor, tenant_id, f"SELECT DISTINCT chain::text FROM {SEALS_TABLE}")
        if tenant_id is None:
            chains = sorted(set(chains) | set(expected), key=lambda c: (c is not None, c or ""))
            seals_where, audit_where = "true", "true"
            params: list[Any] = []
        else:
            seals_where, params = _chain_condition(chains[0])
            audit_where = _chain_condition(chains[0], "a.tenant_id")[0]
        cursor.execute(f"SELECT count(*) FROM {SEALS_TABLE} WHERE {seals_where}", params)
        total = cursor.fetchone()[0]
        cursor.execute(
            f"SELECT count(*) FROM {sql.TABLE} a WHERE {audit_where} AND {_UNSEALED}", params
        )
        pending = cursor.fetchone()[0]
        for chain in chains:
            result = _verify_chain(
                chain, expected.get(chain, {}), late, checked, total, progress, using
            )
            checked, purged = checked + result[0], purged + result[1]
            if result[2] is not None:
                broken.append(result[2])
    first = broken[0] if broken else None
    if first is None:
        message = f"{checked} sealed entries in {len(chains)} chain(s) verified"
        if purged:
            message += f" ({purged} purged, covered by purge anchors)"
        if pending:
            message += f"; {pending} entries not sealed yet"
        message += "."
    else:
        message = (
            f"Chain {first['chain'] or GLOBAL} is broken at seq {first['seq']}"
            + (f" (entry {first['entry_id']})" if first.get("entry_id") else "")
            + f": {first['problem']}. {first['detail']}"
        )
    return VerifyReport(
        ok=first is None,
        checked=checked,
        first_broken=first,
        message=message,
        pending=pending,
        purged=purged,
        chains=len(chains),
        broken=broken,
    )


def _expected_heads(heads: Any) -> dict[str | None, dict[int, str]]:
    if heads is None:
        return {}
    if isinstance(heads, Mapping):
        heads = heads.get("chains", [heads])
    expected: dict[str | None, dict[int, str]] = {}
    for head in heads:
        if head.get("seq"):
            expected.setdefault(_chain_key(head.get("chain")), {})[int(head["seq"])] = head["hash"]
    return expected


def _verify_chain(
    chain: str | None,
    expected: dict[int, str],
    late: datetime.timedelta | None,
    checked_before: int,
    total: int,
    progress: Callable[[int, int], None] | None,
    using: str | None,
) -> tuple[int, int, dict[str, Any] | None]:
    """Stream one chain; returns (links checked, purged entries, first break or None)."""
    alias = _alias(using)
    condition, params = _chain_condition(chain, "s.chain")
    with privileged(alias) as cursor:
        stream = connections[alias].chunked_cursor()
        try:
            stream.execute(
                "SELECT s.seq, s.entry_id::text, s.entry_hash, s.hash, s.sealed_at, "
                f"s.purge_id::text, a.timestamp, a.id IS NOT NULL, {_select_list()} "
                f"FROM {SEALS_TABLE} s LEFT JOIN {sql.TABLE} a ON a.id = s.entry_id "
                f"WHERE {condition} ORDER BY s.seq",
                params,
            )
            # Read after the stream took its snapshot: anchors are only ever added, so every
            # purge the stream can see is among them.
            cursor.execute(
                f"SELECT id::text, first_seq, last_seq, last_hash FROM {PURGES_TABLE} p WHERE "
                + _chain_condition(chain, "p.chain")[0],
                params,
            )
            anchors = {row[0]: row[1:] for row in cursor.fetchall()}
            anchor_hashes = {last_seq: last_hash for _, last_seq, last_hash in anchors.values()}
            return _walk(
                stream,
                chain,
                expected,
                anchors,
                anchor_hashes,
                late,
                checked_before,
                total,
                progress,
            )
        finally:
            stream.close()


def _walk(
    stream: Any,
    chain: str | None,
    expected: dict[int, str],
    anchors: dict[str, tuple[int, int, str]],
    anchor_hashes: dict[int, str],
    late: datetime.timedelta | None,
    checked_before: int,
    total: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[int, int, dict[str, Any] | None]:
    previous = genesis_hash(chain)
    position = checked = purged = 0
    batch_sealed_at = prev_batch_sealed_at = None
    max_ts = max_ts_before_batch = None

    def broken(seq: int, entry_id: str | None, problem: str, detail: str) -> tuple:
        return (
            checked,
            purged,
            {
                "chain": chain,
                "seq": seq,
                "entry_id": entry_id,
                "problem": problem,
                "detail": detail,
            },
        )

    while rows := stream.fetchmany(2000):
        for seq, entry_id, digest, stored, sealed_at, purge_id, ts, present, *values in rows:
            position += 1
            if seq != position:
                return broken(
                    position,
                    None,
                    "missing",
                    f"Links {position} to {seq - 1} are gone: seal rows were deleted.",
                )
            if stored != link_hash(previous, seq, digest):
                return broken(
                    seq,
                    entry_id,
                    "reordered",
                    "This link does not follow from the previous one: seal rows were swapped, "
                    "inserted or altered.",
                )
            if seq in anchor_hashes and anchor_hashes[seq] != stored:
                return broken(
                    seq,
                    entry_id,
                    "reordered",
                    "A purge anchor recorded another hash for this link.",
                )
            if seq in expected and expected[seq] != stored:
                return broken(
                    seq,
                    entry_id,
                    "rewritten",
                    "A recorded chain head has another hash for this link: the chain was "
                    "recomputed after that head was taken.",
                )
            if sealed_at != batch_sealed_at:
                prev_batch_sealed_at, batch_sealed_at = batch_sealed_at, sealed_at
                max_ts_before_batch = max_ts
            if not present:
                anchor = anchors.get(purge_id) if purge_id else None
                if anchor is None or not anchor[0] <= seq <= anchor[1]:
                    return broken(
                        seq,
                        entry_id,
                        "missing",
                        "The sealed entry was deleted outside purge (no purge anchor covers it).",
                    )
                purged += 1
            else:
                if entry_hash(values) != digest:
                    return broken(
                        seq,
                        entry_id,
                        "modified",
                        "The entry no longer hashes as when it was sealed: a field was changed.",
                    )
                if (
                    late is not None
                    and prev_batch_sealed_at is not None
                    and max_ts_before_batch is not None
                    and ts < max_ts_before_batch
                    and ts < prev_batch_sealed_at - late
                ):
                    return broken(
                        seq,
                        entry_id,
                        "backdated",
                        f"The entry is timestamped {ts.isoformat()} but was not there when the "
                        f"chain was sealed at {prev_batch_sealed_at.isoformat()}: it was inserted "
                        "into the past. Raise BETTER_AUDIT['INTEGRITY']['LATE_TOLERANCE'] if "
                        "entries legitimately commit that late.",
                    )
                max_ts = ts if max_ts is None or ts > max_ts else max_ts
            previous = stored
            checked += 1
        if progress is not None:
            progress(checked_before + checked, total)
    beyond = [seq for seq in expected if seq > position]
    if beyond:
        return broken(
            min(beyond),
            None,
            "truncated",
            f"A recorded chain head reaches seq {max(beyond)}, the chain ends at {position}.",
        )
    return checked, purged, None


# --- chain heads -------------------------------------------------------------------------------


def chain_head(tenant_id: Any = None, *, using: str | None = None) -> dict[str, Any]:
    """The sealed head of every chain (or of one: a tenant, or ``GLOBAL``), for exports.

    ``{"algorithm": "sha256", "chains": [{"chain": <tenant id or None>, "seq": n,
    "hash": <hex>, "sealed_at": <ISO 8601>}, ...]}``; a chain with nothing sealed has seq 0 and
    its genesis hash.
    """
    with privileged(using) as cursor:
        chains = _chains(cursor, tenant_id, f"SELECT DISTINCT chain::text FROM {SEALS_TABLE}")
        heads = []
        for chain in chains:
            condition, params = _chain_condition(chain)
            cursor.execute(
                f"SELECT seq, hash, sealed_at FROM {SEALS_TABLE} "
                f"WHERE {condition} ORDER BY seq DESC LIMIT 1",
                params,
            )
            row = cursor.fetchone()
            seq, digest, sealed_at = row if row else (0, genesis_hash(chain), None)
            heads.append(
                {
                    "chain": chain,
                    "seq": seq,
                    "hash": digest,
                    "sealed_at": sealed_at.isoformat() if sealed_at else None,
                }
            )
    return {"algorithm": ALGORITHM, "chains": heads}


# --- purge -------------------------------------------------------------------------------------


def purge(
    cutoff: datetime.datetime | datetime.timedelta,
    tables: Iterable[str] | None = None,
    batch_size: int | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
    *,
    using: str | None = None,
) -> int:
    """Delete entries older than ``cutoff`` (a datetime, or an age) through the privileged path.

    ``tables`` limits the purge to entries of these tables (SQL names or ``app_label.Model``).
    Entries are sealed first, so each deleted entry keeps its seal, and every batch records a
    purge anchor. ``dry_run`` only counts. ``progress(done, total)`` follows the batches. Returns
    the number of entries deleted (or that would be).
    """
    if isinstance(cutoff, datetime.timedelta):
        cutoff = timezone.now() - cutoff
    if timezone.is_naive(cutoff):
        raise ValueError("purge cutoff must be timezone-aware (or a timedelta).")
    names = None
    if tables is not None:
        from better_audit.tables import resolve_table_name

        names = sorted(
            {resolve_table_name(t) for t in ([tables] if isinstance(tables, str) else tables)}
        )
    size = batch_size or audit_settings.INTEGRITY["BATCH_SIZE"]
    filters = "a.timestamp < %s" + (" AND a.table_name = ANY(%s)" if names is not None else "")
    filter_params: list[Any] = [cutoff] + ([names] if names is not None else [])
    if dry_run:
        with privileged(using) as cursor:
            cursor.execute(f"SELECT count(*) FROM {sql.TABLE} a WHERE {filters}", filter_params)
            return cursor.fetchone()[0]
    seal(using=using)
    with privileged(using) as cursor:
        cursor.execute(
            f"SELECT s.chain::text, count(*) FROM {sql.TABLE} a "
            f"JOIN {SEALS_TABLE} s ON s.entry_id = a.id WHERE {filters} GROUP BY 1",
            filter_params,
        )
        counts = dict(cursor.fetchall())
    total = sum(counts.values())
    run_id = uuid.uuid4()
    done = 0
    for chain in sorted(counts, key=lambda c: (c is not None, c or "")):
        condition, params = _chain_condition(chain, "s.chain")
        last_seq = 0
        while True:
            with privileged(using) as cursor:
                _lock_chain(cursor, chain)
                # Keyset on seq: the purged links before it are not walked again.
                cursor.execute(
                    f"SELECT s.entry_id, s.seq, s.hash FROM {SEALS_TABLE} s "
                    f"JOIN {sql.TABLE} a ON a.id = s.entry_id WHERE {condition} AND s.seq > %s "
                    f"AND {filters} ORDER BY s.seq LIMIT %s",
                    [*params, last_seq, *filter_params, size],
                )
                rows = cursor.fetchall()
                if not rows:
                    break
                ids = [row[0] for row in rows]
                anchor = uuid.uuid4()
                cursor.execute(f"DELETE FROM {sql.TABLE} WHERE id = ANY(%s)", [ids])
                cursor.execute(
                    f"INSERT INTO {PURGES_TABLE} (id, run_id, chain, cutoff, tables, "
                    "first_seq, last_seq, last_hash, purged_count, purged_at, purged_by) "
                    "VALUES (%s, %s, %s::uuid, %s, %s, %s, %s, %s, %s, clock_timestamp(), "
                    "session_user)",
                    [
                        anchor,
                        run_id,
                        chain,
                        cutoff,
                        names,
                        rows[0][1],
                        rows[-1][1],
                        rows[-1][2],
                        len(rows),
                    ],
                )
                cursor.execute(
                    f"UPDATE {SEALS_TABLE} SET purge_id = %s WHERE entry_id = ANY(%s)",
                    [anchor, ids],
                )
            done += len(rows)
            last_seq = rows[-1][1]
            if progress is not None:
                progress(done, total)
            if len(rows) < size:
                break
    return done


# --- checks ------------------------------------------------------------------------------------


def check_append_only(*, using: str | None = None) -> list[tuple[bool, str]]:
    """Whether the runtime role is kept from changing the trail: ``[(ok, message), ...]``."""
    alias = _alias(using)
    role = admin_role()
    results: list[tuple[bool, str]] = []
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT current_user, r.rolsuper, "
            "pg_has_role(current_user, c.relowner, 'USAGE'), "
            "has_table_privilege(current_user, c.oid, 'TRUNCATE') "
            "FROM pg_class c, pg_roles r WHERE c.oid = %s::regclass AND r.rolname = current_user",
            [sql.TABLE],
        )
        user, superuser, owner, truncate = cursor.fetchone()
        results.append(
            (
                not (superuser or owner),
                f"runtime role {user} is "
                + (
                    "a superuser or the owner of audit_logs: it can disable the append-only "
                    "triggers. Connect as a role that owns nothing (DATABASE_OWNER_URL for "
                    "migrations)."
                    if superuser or owner
                    else "neither superuser nor owner of audit_logs"
                ),
            )
        )
        results.append(
            (
                not truncate,
                f"runtime role {user} "
                + (
                    "may TRUNCATE audit_logs: REVOKE TRUNCATE ON audit_logs FROM " + user
                    if truncate
                    else "has no TRUNCATE privilege on audit_logs"
                ),
            )
        )
        for table in PROTECTED_TABLES:
            cursor.execute(
                "SELECT t.tgenabled, c.relrowsecurity FROM pg_class c "
                "LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname = %s "
                "WHERE c.oid = to_regclass(%s)",
                [TRIGGER_NAME, table],
            )
            row = cursor.fetchone()
            enabled = bool(row and row[0] and row[0] != "D")
            results.append(
                (
                    enabled,
                    f"{table}: append-only trigger "
                    + (
                        "enabled"
                        if enabled
                        else "missing or disabled: run manage.py migrate "
                        "better_audit, and ALTER TABLE ... ENABLE TRIGGER audit_append_only"
                    ),
                )
            )
            if table != sql.TABLE:
                rls = bool(row and row[1])
                results.append(
                    (rls, f"{table}: row-level security " + ("enabled" if rls else "disabled"))
                )
        cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)", [role])
        if not cursor.fetchone()[0]:
            results.append((False, f"the admin role {role} does not exist: run migrate"))
            return results
        cursor.execute(
            "SELECT pg_has_role(current_user, %s, 'USAGE'), "
            "pg_has_role(current_user, %s, 'MEMBER')",
            [role, role],
        )
        inherits, member = cursor.fetchone()
        if superuser:
            results.append((False, f"runtime role {user} is a superuser"))
        elif inherits:
            results.append(
                (
                    False,
                    f"runtime role {user} inherits the privileges of {role}: its ordinary "
                    f"queries may delete audit entries. Re-grant with INHERIT FALSE "
                    f"(GRANT {role} TO {user} WITH INHERIT FALSE, SET TRUE).",
                )
            )
        elif not member:
            results.append(
                (
                    False,
                    f"runtime role {user} is not a member of {role}: seal, verify and purge "
                    f"will fail. GRANT {role} TO {user} WITH INHERIT FALSE, SET TRUE;",
                )
            )
        else:
            results.append(
                (True, f"runtime role {user} is a NOINHERIT member of {role} (privileged path)")
            )
    return results


# --- SQL of the migration ----------------------------------------------------------------------


def ensure_admin_role_sql(role: str) -> str:
    """Create the NOLOGIN admin role if it is missing, with a clear error when that is refused."""
    lit = literal(role)
    return f"""DO $better$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {lit}) THEN
    BEGIN
      CREATE ROLE {sql.qn(role)} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE EXCEPTION USING
        MESSAGE = 'better_audit: the role ' || {lit} || ' does not exist and '
                  || current_user || ' may not create it',
        HINT = 'Create it once as a superuser: CREATE ROLE ' || quote_ident({lit})
               || ' NOLOGIN; GRANT ' || quote_ident({lit})
               || ' TO <app role> WITH INHERIT FALSE, SET TRUE;';
    END;
  END IF;
END
$better$;"""


#: In a trigger: the current role may act as the owner of the trigger's table.
OWNER_CHECK = (
    "pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE')"
)


def trigger_function_sql() -> str:
    # TG_ARGV: the admin role, and the one operation it may run on this table ('' for none).
    return f"""CREATE OR REPLACE FUNCTION {TRIGGER_FUNCTION}() RETURNS trigger
LANGUAGE plpgsql AS $better$
BEGIN
  IF TG_OP = TG_ARGV[1] AND current_user = TG_ARGV[0] THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'TRUNCATE' AND {OWNER_CHECK} THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION USING
    MESSAGE = format('better_audit: %s on %I is refused: the audit trail is append-only',
                     TG_OP, TG_TABLE_NAME),
    ERRCODE = 'insufficient_privilege',
    HINT = 'Old entries are removed by manage.py better_audit purge '
           '(better_audit.integrity.purge), which runs as the role ' || TG_ARGV[0] || '.';
END
$better$;"""


def revoke_sql(table: str, privileges: str, keep: str) -> str:
    """Revoke ``privileges`` on ``table`` from every grantee except its owner and ``keep``."""
    lit = literal(keep)
    return f"""DO $better$
DECLARE grantee text;
BEGIN
  FOR grantee IN
    SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END
    FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
    LEFT JOIN pg_roles r ON r.oid = a.grantee
    WHERE c.oid = {literal(sql.qn(table))}::regclass AND a.grantee <> c.relowner
      AND (r.rolname IS NULL OR r.rolname <> {lit})
  LOOP
    EXECUTE 'REVOKE {privileges} ON {sql.qn(table)} FROM ' || grantee;
  END LOOP;
END
$better$;"""


def append_only_sql(role: str) -> str:
    """Forward SQL of the ``AuditAppendOnly`` migration operation (see the module docstring)."""
    admin = sql.qn(role)
    logs, seals, purges = sql.qn(sql.TABLE), sql.qn(SEALS_TABLE), sql.qn(PURGES_TABLE)
    allowed_by = admin_condition()
    parts = [
        *context_functions_sql(),
        ensure_admin_role_sql(role),
        trigger_function_sql(),
        revoke_sql(sql.TABLE, "UPDATE, DELETE, TRUNCATE", role),
        revoke_sql(SEALS_TABLE, "ALL", role),
        revoke_sql(PURGES_TABLE, "ALL", role),
        f"GRANT SELECT, DELETE ON {logs} TO {admin};",
        f"GRANT SELECT, INSERT, UPDATE (purge_id) ON {seals} TO {admin};",
        f"GRANT SELECT, INSERT ON {purges} TO {admin};",
        # Policies only matter while RLS is enabled on audit_logs (with better_tenant).
        f"CREATE POLICY {ADMIN_POLICY_PREFIX}_read ON {logs} FOR SELECT TO {admin} "
        f"USING ({allowed_by});",
        f"CREATE POLICY {ADMIN_POLICY_PREFIX}_delete ON {logs} FOR DELETE TO {admin} "
        f"USING ({allowed_by});",
    ]
    for table in (SEALS_TABLE, PURGES_TABLE):
        parts += [
            f"ALTER TABLE {sql.qn(table)} ENABLE ROW LEVEL SECURITY;",
            f"CREATE POLICY {ADMIN_POLICY_PREFIX} ON {sql.qn(table)} FOR ALL TO {admin} "
            f"USING ({allowed_by}) WITH CHECK ({allowed_by});",
        ]
    for table, allowed in PROTECTED_TABLES.items():
        call = f"{TRIGGER_FUNCTION}({literal(role)}, '{allowed}')"
        parts += [
            f"CREATE TRIGGER {TRIGGER_NAME} BEFORE UPDATE OR DELETE ON {sql.qn(table)}\n"
            f"  FOR EACH STATEMENT EXECUTE FUNCTION {call};",
            f"CREATE TRIGGER {TRIGGER_NAME}_truncate BEFORE TRUNCATE ON {sql.qn(table)}\n"
            f"  FOR EACH STATEMENT EXECUTE FUNCTION {call};",
        ]
    return "\n".join(parts)


def drop_append_only_sql(role: str, system_role: str | None = None) -> str:
    """Backward SQL: drop the triggers and policies; give back what 0001 granted."""
    logs = sql.qn(sql.TABLE)
    parts = []
    for table in PROTECTED_TABLES:
        parts += [
            f"DROP TRIGGER IF EXISTS {TRIGGER_NAME}_truncate ON {sql.qn(table)};",
            f"DROP TRIGGER IF EXISTS {TRIGGER_NAME} ON {sql.qn(table)};",
        ]
    for table in (SEALS_TABLE, PURGES_TABLE):
        parts += [
            f"DROP POLICY IF EXISTS {ADMIN_POLICY_PREFIX} ON {sql.qn(table)};",
            f"ALTER TABLE {sql.qn(table)} DISABLE ROW LEVEL SECURITY;",
        ]
    parts += [
        f"DROP POLICY IF EXISTS {ADMIN_POLICY_PREFIX}_delete ON {logs};",
        f"DROP POLICY IF EXISTS {ADMIN_POLICY_PREFIX}_read ON {logs};",
        f"REVOKE ALL ON {logs} FROM {sql.qn(role)};",
        f"DROP FUNCTION IF EXISTS {TRIGGER_FUNCTION}();",
    ]
    if system_role:
        parts.append(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {logs} TO {sql.qn(system_role)};")
    return "\n".join(parts)


def context_functions_sql() -> list[str]:
    """better_tenant's context functions, which the admin policies call (with better_tenant)."""
    if not tenancy_installed():
        return []
    from better_tenant.operations import context_functions

    return [context_functions()]


def admin_proof_sql(role: str, forwards: bool = True) -> str:
    """Make the admin role's policies ask for the marker (backwards: the role alone again)."""
    from better_tenant.sql import rewrite_role_policies_sql

    marker = holds_sql(ADMIN_MARKER) or "true"
    # How PostgreSQL prints the condition inside a policy.
    printed = f"( SELECT better_tenant_holds('{ADMIN_MARKER}'::text) AS better_tenant_holds)"
    if forwards:
        return "\n".join(
            [*context_functions_sql(), rewrite_role_policies_sql(role, "true", marker)]
        )
    return rewrite_role_policies_sql(role, printed, "true")
