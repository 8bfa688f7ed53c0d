"""Tamper evidence: the app role cannot change the trail; the hash chain exposes whoever can."""

from __future__ import annotations

import contextlib
import datetime
import threading
import uuid

import psycopg
import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, connections
from django.utils import timezone

import better_audit as audit
from better_audit import integrity, integrity_tasks
from better_audit.models import AuditLog
from better_tenant import no_tenant, run_as, run_as_system
from tests.support.audit import add_rows

pytestmark = pytest.mark.django_db

APPEND_ONLY = "the audit trail is append-only"


def write(
    count: int, tenant=None, *, table: str | None = None, age: datetime.timedelta | None = None
):
    """``count`` entries in ``tenant``'s trail (no tenant: the global one); ids in write order."""
    table = table or ("test_invoices" if tenant is not None else "test_labels")
    with run_as(tenant) if tenant is not None else no_tenant():
        if age is None:
            entries = [
                audit.capture_log(table, "INSERT", record_id=str(i), after={"id": i, "n": 1.50})
                for i in range(count)
            ]
        else:
            # Entries are stamped with the database clock: old ones are test fixtures.
            when = timezone.now() - age
            entries = add_rows(
                *(
                    AuditLog(
                        timestamp=when + datetime.timedelta(microseconds=i),
                        table_name=table,
                        operation="INSERT",
                        record_id=str(i),
                        after_data={"id": i},
                        tenant_id=None if tenant is None else tenant.pk,
                    )
                    for i in range(count)
                )
            )
    return [str(entry.id) for entry in entries]


def seal_of(entry_id: str) -> tuple[int, str, str]:
    """(seq, entry_hash, hash) of an entry's seal."""
    with integrity.privileged() as cursor:
        cursor.execute(
            "SELECT seq, entry_hash, hash FROM audit_log_seals WHERE entry_id = %s", [entry_id]
        )
        return cursor.fetchone()


@contextlib.contextmanager
def as_owner():
    """A committed owner transaction with the append-only triggers and forced RLS switched off.

    What a database administrator (or an attacker holding the owner role) can always do; the
    triggers and RLS come back before the commit.
    """
    settings = connection.settings_dict
    owner = settings["TEST"]["OWNER"]
    params = {"host": settings["HOST"], "dbname": settings["NAME"], "user": owner["USER"]}
    if settings.get("PORT"):
        params["port"] = settings["PORT"]
    if owner.get("PASSWORD"):
        params["password"] = owner["PASSWORD"]
    tables = ("audit_logs", "audit_log_seals", "audit_purges")
    with psycopg.connect(**params) as conn, conn.transaction():
        for table in tables:
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        conn.execute("ALTER TABLE audit_logs NO FORCE ROW LEVEL SECURITY")
        yield conn
        for table in tables:
            conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        conn.execute("ALTER TABLE audit_logs FORCE ROW LEVEL SECURITY")


def broken(report) -> tuple[str, int, str | None]:
    assert not report.ok, report.message
    first = report.first_broken
    return first["problem"], first["seq"], first["entry_id"]


# --- append-only ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_logs SET label = 'forged'", "DELETE FROM audit_logs"],
    ids=["update", "delete"],
)
def test_the_app_role_cannot_update_or_delete_audit_entries(tenant, statement):
    [entry_id] = write(1, tenant)
    for scope in (run_as(tenant), no_tenant(), run_as_system()):
        with (
            pytest.raises(DatabaseError, match=rf"{APPEND_ONLY}|permission denied"),
            scope,
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)
    # System mode holds UPDATE and DELETE grants and an ALL policy: only the trigger stops it.
    with (
        pytest.raises(DatabaseError, match=APPEND_ONLY),
        run_as_system(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement + " WHERE id = %s", [entry_id])
    with run_as(tenant), connection.cursor() as cursor:
        cursor.execute("SELECT label FROM audit_logs WHERE id = %s", [entry_id])
        assert cursor.fetchall() == [(None,)]


def test_the_app_role_cannot_truncate_audit_logs(tenant):
    write(1, tenant)
    for scope in (run_as(tenant), run_as_system(), integrity.privileged()):
        with (
            pytest.raises(DatabaseError, match=r"permission denied|append-only"),
            scope,
            connection.cursor() as cursor,
        ):
            cursor.execute("TRUNCATE audit_logs")
    assert integrity.verify().checked == 1


def test_the_admin_role_may_delete_but_never_update(tenant):
    [first, second] = write(2, tenant)
    with pytest.raises(DatabaseError, match="permission denied"), integrity.privileged() as cursor:
        cursor.execute("UPDATE audit_logs SET label = 'x' WHERE id = %s", [first])
    with integrity.privileged() as cursor:
        cursor.execute("DELETE FROM audit_logs WHERE id = %s", [second])
        assert cursor.rowcount == 1
    # The role is given back: ordinary statements run as the app role again.
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == connection.settings_dict["USER"]


def test_tenants_cannot_read_or_write_seals(tenant):
    write(2, tenant)
    integrity.seal()
    with run_as(tenant), connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM audit_log_seals")
        assert cursor.fetchone()[0] == 0
    with (
        pytest.raises(DatabaseError, match=APPEND_ONLY),
        run_as(tenant),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM audit_log_seals")


def test_check_append_only_passes_for_the_app_role():
    results = integrity.check_append_only()
    assert results and all(ok for ok, _ in results), results
    assert any("NOINHERIT member of better_audit_admin" in message for _, message in results)


def test_the_migration_sql_is_visible_in_sqlmigrate(capsys):
    call_command("sqlmigrate", "better_audit", "0002")
    out = capsys.readouterr().out
    assert 'CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON "audit_logs"' in out
    assert "BEFORE TRUNCATE" in out and 'GRANT SELECT, DELETE ON "audit_logs"' in out


# --- sealing and verification ---------------------------------------------------------------------


def test_seal_and_verify_a_clean_trail_in_three_chains(tenant, other_tenant):
    write(3, tenant)
    write(2, other_tenant)
    write(2)
    assert integrity.verify(seal=False).pending == 7
    assert integrity.seal(tenant, batch_size=2) == 3
    progress: list[tuple[int, int]] = []
    report = integrity.verify(progress=lambda done, total: progress.append((done, total)))
    assert report.ok, report.message
    assert (report.checked, report.chains, report.pending, report.purged) == (7, 3, 0, 0)
    assert progress[-1] == (7, 7)
    assert integrity.seal() == 0
    write(1, tenant)
    assert integrity.seal(tenant) == 1
    assert integrity.verify(tenant).checked == 4
    assert integrity.verify(integrity.GLOBAL).checked == 2


def test_the_tasks_seal_and_verify(tenant, caplog):
    [entry_id] = write(1, tenant)
    assert integrity_tasks.seal_audit_trail.apply().get() == 1
    assert integrity_tasks.verify_audit_trail.apply().get()["ok"] is True
    with integrity.privileged() as cursor:
        cursor.execute("DELETE FROM audit_logs WHERE id = %s", [entry_id])
    result = integrity_tasks.verify_audit_trail.apply().get()
    assert result["first_broken"]["problem"] == "missing"
    assert "Audit trail verification failed" in caplog.text


def test_chain_head_shape(tenant, other_tenant):
    write(3, tenant)
    write(1)
    integrity.seal()
    heads = integrity.chain_head()
    assert heads["algorithm"] == "sha256"
    by_chain = {head["chain"]: head for head in heads["chains"]}
    assert set(by_chain) == {None, str(tenant.pk)}
    head = by_chain[str(tenant.pk)]
    assert head["seq"] == 3 and len(head["hash"]) == 64
    datetime.datetime.fromisoformat(head["sealed_at"])
    assert integrity.chain_head(tenant)["chains"] == [head]
    # A chain with nothing sealed: seq 0 and the genesis hash.
    [empty] = integrity.chain_head(other_tenant)["chains"]
    assert (empty["seq"], empty["hash"]) == (0, integrity.genesis_hash(str(other_tenant.pk)))
    assert integrity.verify(heads=heads).ok


def test_entries_are_hashed_in_canonical_form(tenant):
    [entry_id] = write(1, tenant)
    integrity.seal()
    with integrity.privileged() as cursor:
        cursor.execute(
            f"SELECT {integrity._select_list()} FROM audit_logs a WHERE id = %s", [entry_id]
        )
        values = cursor.fetchone()
    text = integrity.canonical_json(values)
    assert text.startswith('{"actor_id":null,"after_data":{"id":0,"n":1.5}')
    assert f'"id":"{entry_id}"' in text and ", " not in text
    assert seal_of(entry_id)[1] == integrity.entry_hash(values)


def test_a_delete_in_the_admin_role_outside_purge_is_reported_missing(tenant):
    ids = write(3, tenant)
    integrity.seal()
    with integrity.privileged() as cursor:
        cursor.execute("DELETE FROM audit_logs WHERE id = %s", [ids[1]])
    report = integrity.verify()
    assert broken(report) == ("missing", 2, ids[1])
    assert "outside purge" in report.message and ids[1] in report.message


def test_a_back_dated_insertion_is_detected_and_a_late_commit_is_not(tenant):
    write(3, tenant)
    integrity.seal()
    # Committed a little after the seal with its own, slightly older timestamp: legitimate.
    write(1, tenant, age=datetime.timedelta(seconds=30))
    integrity.seal()
    assert integrity.verify().ok
    [forged] = write(1, tenant, age=datetime.timedelta(days=2))
    report = integrity.verify()
    assert broken(report) == ("backdated", 5, forged)
    assert "LATE_TOLERANCE" in report.message


@pytest.mark.django_db(transaction=True)
def test_an_update_by_the_owner_is_detected(tenant, other_tenant):
    ids = write(3, tenant)
    write(2, other_tenant)
    integrity.seal()
    with as_owner() as owner:
        owner.execute("UPDATE audit_logs SET actor_id = 'someone else' WHERE id = %s", [ids[1]])
    report = integrity.verify()
    assert broken(report) == ("modified", 2, ids[1])
    assert report.first_broken["chain"] == str(tenant.pk)
    assert [b["chain"] for b in report.broken] == [str(tenant.pk)]


@pytest.mark.django_db(transaction=True)
def test_the_triggers_refuse_the_owner_too_unless_disabled(tenant):
    [entry_id] = write(1, tenant)
    with as_owner() as owner:
        owner.execute("ALTER TABLE audit_logs ENABLE TRIGGER USER")
        with (
            pytest.raises(psycopg.errors.InsufficientPrivilege, match=APPEND_ONLY),
            owner.transaction(),
        ):
            owner.execute("DELETE FROM audit_logs WHERE id = %s", [entry_id])
    assert integrity.verify().ok


@pytest.mark.django_db(transaction=True)
def test_a_deleted_entry_and_its_seal_leave_a_gap(tenant):
    ids = write(4, tenant)
    integrity.seal()
    with as_owner() as owner:
        owner.execute("DELETE FROM audit_logs WHERE id = %s", [ids[2]])
        owner.execute("DELETE FROM audit_log_seals WHERE entry_id = %s", [ids[2]])
    assert broken(integrity.verify()) == ("missing", 3, None)


@pytest.mark.django_db(transaction=True)
def test_reordering_is_detected(tenant):
    ids = write(4, tenant)
    integrity.seal()
    with as_owner() as owner:
        # Swap the places of entries 2 and 3 in the chain.
        owner.execute("UPDATE audit_log_seals SET seq = -seq WHERE seq IN (2, 3)")
        owner.execute("UPDATE audit_log_seals SET seq = 5 + seq WHERE seq IN (-2, -3)")
    assert broken(integrity.verify(seal=False)) == ("reordered", 2, ids[2])
    with as_owner() as owner:
        owner.execute("UPDATE audit_log_seals SET seq = -seq WHERE seq IN (2, 3)")
        owner.execute("UPDATE audit_log_seals SET seq = 5 + seq WHERE seq IN (-2, -3)")
    assert integrity.verify(seal=False).ok
    # Swapping two entries' timestamps (their order in time) changes both entries.
    with as_owner() as owner:
        owner.execute(
            "UPDATE audit_logs a SET timestamp = b.timestamp - interval '1 hour' "
            "FROM audit_logs b WHERE a.id = %s AND b.id = %s",
            [ids[3], ids[0]],
        )
    assert broken(integrity.verify(seal=False)) == ("modified", 4, ids[3])


@pytest.mark.django_db(transaction=True)
def test_an_entry_inserted_in_the_middle_of_the_chain_is_detected(tenant):
    ids = write(3, tenant)
    integrity.seal()
    [forged] = write(1, tenant)
    _, _, first_hash = seal_of(ids[0])
    with integrity.privileged() as cursor:
        cursor.execute(
            f"SELECT {integrity._select_list()} FROM audit_logs a WHERE id = %s", [forged]
        )
        digest = integrity.entry_hash(cursor.fetchone())
    with as_owner() as owner:
        # A careful forger: make room at seq 2 and link the forged entry to seq 1.
        owner.execute("UPDATE audit_log_seals SET seq = -seq WHERE seq >= 2")
        owner.execute("UPDATE audit_log_seals SET seq = 1 - seq WHERE seq < 0")
        owner.execute(
            "INSERT INTO audit_log_seals (entry_id, chain, seq, entry_hash, hash, sealed_at) "
            "VALUES (%s, %s, 2, %s, %s, now())",
            [forged, tenant.pk, digest, integrity.link_hash(first_hash, 2, digest)],
        )
    assert broken(integrity.verify(seal=False)) == ("reordered", 3, ids[1])


@pytest.mark.django_db(transaction=True)
def test_a_recomputed_chain_is_caught_by_a_recorded_head(tenant):
    ids = write(3, tenant)
    integrity.seal()
    recorded = integrity.chain_head()
    with as_owner() as owner:
        owner.execute("UPDATE audit_logs SET reason = 'rewritten' WHERE id = %s", [ids[0]])
        rows = owner.execute(
            f"SELECT s.seq, {integrity._select_list()} FROM audit_log_seals s "
            "JOIN audit_logs a ON a.id = s.entry_id ORDER BY s.seq"
        ).fetchall()
        previous = integrity.genesis_hash(str(tenant.pk))
        for seq, *values in rows:
            digest = integrity.entry_hash(values)
            previous = integrity.link_hash(previous, seq, digest)
            owner.execute(
                "UPDATE audit_log_seals SET entry_hash = %s, hash = %s WHERE seq = %s",
                [digest, previous, seq],
            )
    assert integrity.verify().ok
    assert broken(integrity.verify(heads=recorded)) == ("rewritten", 3, ids[2])
    # An exported head beyond the current end of the chain: the chain was cut back.
    longer = {"chains": [{**recorded["chains"][0], "seq": 9}]}
    assert broken(integrity.verify(heads=longer))[0:2] == ("truncated", 9)


@pytest.mark.django_db(transaction=True)
def test_writers_are_not_blocked_while_a_chain_is_sealed(tenant):
    write(2, tenant)
    outcome: dict[str, object] = {}

    def in_thread(name, work):
        def run():
            try:
                outcome[name] = work()
            except Exception as exc:
                outcome[name] = exc
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(20)

    def second_sealer():
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '300ms'")
        return integrity.seal(tenant)

    with integrity.privileged() as cursor:
        integrity._lock_chain(cursor, str(tenant.pk))
        in_thread("writer", lambda: write(1, tenant))
        in_thread("sealer", second_sealer)
    assert isinstance(outcome["writer"], list) and len(outcome["writer"]) == 1
    assert isinstance(outcome["sealer"], DatabaseError) and "lock timeout" in str(outcome["sealer"])
    assert integrity.seal(tenant) == 3
    assert integrity.verify().ok


# --- purge ----------------------------------------------------------------------------------------


def test_purge_deletes_old_entries_and_keeps_the_chains_verifiable(tenant, other_tenant):
    old = write(3, tenant, age=datetime.timedelta(days=100))
    recent = write(2, tenant)
    write(2, other_tenant, age=datetime.timedelta(days=100))
    write(1, age=datetime.timedelta(days=100))
    assert integrity.purge(datetime.timedelta(days=30), dry_run=True) == 6
    assert integrity.verify(seal=False).pending == 8
    heads = integrity.chain_head()
    steps: list[tuple[int, int]] = []
    purged = integrity.purge(
        datetime.timedelta(days=30), batch_size=2, progress=lambda d, t: steps.append((d, t))
    )
    assert purged == 6
    assert steps[-1] == (6, 6)
    with run_as(tenant), connection.cursor() as cursor:
        cursor.execute("SELECT id::text FROM audit_logs ORDER BY timestamp")
        assert [row[0] for row in cursor.fetchall()] == recent
    report = integrity.verify(heads=heads)
    assert report.ok, report.message
    assert (report.checked, report.purged) == (8, 6)
    with integrity.privileged() as cursor:
        cursor.execute(
            "SELECT first_seq, last_seq, last_hash, purged_count FROM audit_purges "
            "WHERE chain = %s ORDER BY first_seq",
            [tenant.pk],
        )
        anchors = cursor.fetchall()
    assert [(a[0], a[1], a[3]) for a in anchors] == [(1, 2, 2), (3, 3, 1)]
    assert anchors[-1][2] == seal_of(old[2])[2]


def test_purge_of_some_tables_keeps_the_chain_verifiable(tenant):
    invoices = write(2, tenant, age=datetime.timedelta(days=100))
    events = write(2, tenant, table="test_events", age=datetime.timedelta(days=100))
    write(1, tenant, age=datetime.timedelta(days=100))
    cutoff = timezone.now() - datetime.timedelta(days=30)
    assert integrity.purge(cutoff, tables=["testapp.Event"]) == 2
    report = integrity.verify()
    assert report.ok and (report.checked, report.purged) == (5, 2), report.message
    # Tampering with what remains is still detected, past the purged links.
    with integrity.privileged() as cursor:
        cursor.execute("DELETE FROM audit_logs WHERE id = %s", [invoices[1]])
    assert broken(integrity.verify()) == ("missing", 2, invoices[1])
    assert set(events).isdisjoint({invoices[1]})


def test_a_forged_purge_mark_does_not_hide_a_deletion(tenant):
    ids = write(3, tenant, age=datetime.timedelta(days=100))
    integrity.purge(datetime.timedelta(days=30), tables=["test_labels"])  # purges nothing
    integrity.seal()
    with integrity.privileged() as cursor:
        cursor.execute("DELETE FROM audit_logs WHERE id = %s", [ids[0]])
        cursor.execute(
            "UPDATE audit_log_seals SET purge_id = %s WHERE entry_id = %s", [uuid.uuid4(), ids[0]]
        )
    assert broken(integrity.verify()) == ("missing", 1, ids[0])


def test_purge_needs_an_aware_cutoff():
    with pytest.raises(ValueError, match="timezone-aware"):
        integrity.purge(datetime.datetime(2020, 1, 1))
