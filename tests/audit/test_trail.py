"""No write escapes the trail, and no one but the database writes into it (better_audit.trail)."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import better_audit as audit
from better_audit import trail, writer
from better_tenant import no_tenant, run_as, run_as_system
from better_tenant.testing import connected_as_owner
from tests.support.audit import logs
from tests.testapp.models import Invoice, Label

pytestmark = pytest.mark.django_db


def session_user() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT session_user")
        return cursor.fetchone()[0]


# --- writes outside the ORM -----------------------------------------------------------------------


def test_raw_insert_update_and_delete_are_recorded_with_what_the_database_knows(tenant):
    user = session_user()
    with run_as(tenant), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO test_invoices (number, amount, paid, tenant_id, secret, ref, created) "
            "VALUES ('R-1', 0, false, better_tenant_current(), '', gen_random_uuid(), now()) "
            "RETURNING id"
        )
        (pk,) = cursor.fetchone()
        cursor.execute("UPDATE test_invoices SET paid = true WHERE id = %s", [pk])
        cursor.execute("DELETE FROM test_invoices WHERE id = %s", [pk])
    insert, update, delete = logs(table_name="test_invoices")
    assert [e.operation for e in (insert, update, delete)] == ["INSERT", "UPDATE", "DELETE"]
    assert {e.record_id for e in (insert, update, delete)} == {str(pk)}
    assert {e.tenant_id for e in (insert, update, delete)} == {tenant.pk}
    assert insert.before_data is None and insert.after_data["number"] == "R-1"
    assert (update.before_data["paid"], update.after_data["paid"]) == (False, True)
    assert update.diff == {"changed_fields": ["paid"]}
    assert delete.after_data is None and delete.before_data["paid"] is True
    for entry in (insert, update, delete):
        assert entry.actor_id is None
        assert entry.metadata["origin"] == "database"
        assert entry.metadata["db_user"] == user


def test_a_raw_update_of_many_rows_writes_one_entry_per_row(tenant):
    with run_as(tenant):
        Invoice.objects.bulk_create([Invoice(number=f"M{n}") for n in range(4)])
        with connection.cursor() as cursor:
            cursor.execute("UPDATE test_invoices SET paid = true WHERE number LIKE 'M%%'")
    updates = logs(operation="UPDATE")
    assert len(updates) == 4 and len({u.record_id for u in updates}) == 4
    assert all(u.diff == {"changed_fields": ["paid"]} for u in updates)


def test_manager_raw_is_recorded(tenant):
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A-1")
        [changed] = Invoice.objects.raw(
            "UPDATE test_invoices SET number = 'A-2' WHERE id = %s RETURNING *", [invoice.pk]
        )
    assert changed.number == "A-2"
    [update] = logs(operation="UPDATE")
    assert (update.before_data["number"], update.after_data["number"]) == ("A-1", "A-2")


def test_copy_is_recorded():
    with (
        connection.cursor() as cursor,
        cursor.connection.cursor().copy("COPY test_labels (id, name, color) FROM STDIN") as copy,
    ):
        for n in range(3):
            copy.write_row((str(uuid.UUID(int=n + 1)), f"copied {n}", ""))
    entries = logs(table_name="test_labels")
    assert sorted(e.after_data["name"] for e in entries) == ["copied 0", "copied 1", "copied 2"]
    assert {e.operation for e in entries} == {"INSERT"}


@pytest.mark.django_db(transaction=True)
def test_truncate_of_an_audited_table_is_refused(tenant):
    # TRUNCATE writes no row-level entries. The app role is never granted it; a role that is
    # (here the app role, for this test) is refused by the trigger unless it owns the table.
    with run_as(tenant):
        Invoice.objects.create(number="A-1")
    with run_as_system(), pytest.raises(DatabaseError, match="permission denied"):
        connection.cursor().execute("TRUNCATE test_invoices CASCADE")
    user = session_user()
    with connected_as_owner(), connection.cursor() as cursor:
        cursor.execute(f'GRANT TRUNCATE ON test_events TO "{user}"')
    try:
        with pytest.raises(DatabaseError, match="TRUNCATE of test_events is refused"):
            connection.cursor().execute("TRUNCATE test_events")
    finally:
        with connected_as_owner(), connection.cursor() as cursor:
            cursor.execute(f'REVOKE TRUNCATE ON test_events FROM "{user}"')
    with run_as(tenant):
        assert Invoice.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_second_connection_as_another_role_is_recorded():
    # Another service, or a psql session: its own connection, its own role (here the owner).
    settings = connection.settings_dict
    owner = settings["TEST"]["OWNER"]
    with psycopg.connect(
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        dbname=settings["NAME"],
        user=owner["USER"],
        password=owner.get("PASSWORD") or None,
        application_name="reporting-job",
        autocommit=True,
    ) as other:
        other.execute(
            "INSERT INTO test_labels (id, name, color) VALUES (%s, 'psql', '')",
            [str(uuid.UUID(int=7))],
        )
        other.execute("UPDATE test_labels SET color = 'red' WHERE name = 'psql'")
    insert, update = logs(table_name="test_labels")
    assert (insert.operation, update.operation) == ("INSERT", "UPDATE")
    assert insert.metadata["db_user"] == owner["USER"] != session_user()
    assert insert.metadata["application"] == "reporting-job"
    assert update.diff == {"changed_fields": ["color"]}


# --- ORM writes are recorded once, with their context ---------------------------------------------


@pytest.mark.parametrize("hooked", [False, True], ids=["database writes", "python writes"])
def test_every_orm_path_is_recorded_exactly_once(tenant, hooked):
    if hooked:
        audit.on_after_log(lambda entry: None)
    with run_as(tenant), audit.audit_context(actor_id="u-1"):
        invoice = Invoice.objects.create(number="A-1")
        invoice.paid = True
        invoice.save()
        Invoice.objects.bulk_create([Invoice(number=f"B{n}") for n in range(2)])
        Invoice.objects.filter(number__startswith="B").update(paid=True)
        Invoice.objects.bulk_update(
            [Invoice(pk=invoice.pk, number="A-2", tenant_id=tenant.pk)], ["number"]
        )
        Invoice.objects.filter(number__startswith="B").delete()
        invoice.delete()
    entries = logs(table_name="test_invoices")
    assert [e.operation for e in entries] == [
        "INSERT",
        "UPDATE",
        "INSERT",
        "INSERT",
        "UPDATE",
        "UPDATE",
        "UPDATE",
        "DELETE",
        "DELETE",
        "DELETE",
    ]
    assert {e.actor_id for e in entries} == {"u-1"}
    assert not any((e.metadata or {}).get("origin") for e in entries)


def test_raw_sql_after_an_orm_statement_does_not_borrow_its_context(tenant):
    with run_as(tenant), audit.audit_context(actor_id="u-1", reason="ticket 7"):
        invoice = Invoice.objects.create(number="A-1")
        with connection.cursor() as cursor:
            cursor.execute("UPDATE test_invoices SET paid = true WHERE id = %s", [invoice.pk])
    insert, update = logs(table_name="test_invoices")
    assert (insert.actor_id, insert.reason) == ("u-1", "ticket 7")
    assert (update.actor_id, update.reason) == (None, None)
    assert update.metadata["origin"] == "database"


def test_a_context_carried_for_one_table_does_not_describe_another(tenant):
    # A value set by hand for test_labels, in the same statement as a change of test_invoices.
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A-1")
        value = trail.carried("test_labels", {"UPDATE": {"a": "forged"}})
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE test_invoices SET paid = true WHERE id = %s AND {trail.CARRIER}",
                [invoice.pk, value],
            )
    update = logs(operation="UPDATE")[0]
    assert update.actor_id is None and update.metadata["origin"] == "database"


def test_python_claims_only_its_own_statements(tenant):
    # With an AFTER_LOG hook Python writes the entries of its statements; raw SQL right after, in
    # the same transaction, is still the trigger's.
    seen = []
    audit.on_after_log(seen.append)
    with transaction.atomic(), run_as(tenant):
        invoice = Invoice.objects.create(number="A-1")
        with connection.cursor() as cursor:
            cursor.execute("UPDATE test_invoices SET paid = true WHERE id = %s", [invoice.pk])
    insert, update = logs(table_name="test_invoices")
    assert insert.metadata is None and update.metadata["origin"] == "database"
    assert [entry.operation for entry in seen] == ["INSERT"]


# --- nobody but the database writes entries -------------------------------------------------------


def python_entry(**values: Any) -> writer.AuditEntry:
    """An entry as the Python path builds it, for test_invoices."""
    fields = {"operation": "INSERT", "record_id": "1", "timestamp": timezone.now(), **values}
    return writer.AuditEntry(id=uuid.uuid4(), table_name="test_invoices", **fields)


def test_the_python_path_gets_the_database_clock_not_its_own(tenant):
    entry = python_entry(
        timestamp=timezone.now() - datetime.timedelta(days=400), tenant_id=tenant.pk
    )
    with run_as(tenant):
        writer.insert([entry], "default")
    [stored] = logs()
    assert abs(stored.timestamp - timezone.now()) < datetime.timedelta(minutes=1)
    assert entry.timestamp == stored.timestamp


def test_the_python_path_cannot_name_another_tenant(tenant, other_tenant):
    for scope, tenant_id in ((run_as(tenant), other_tenant.pk), (no_tenant(), tenant.pk)):
        entry = python_entry(tenant_id=tenant_id)
        with pytest.raises(DatabaseError, match="tenant other than the one in scope"), scope:
            writer.insert([entry], "default")
    assert logs() == []


def test_the_definer_functions_resolve_names_in_a_fixed_path():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT proname, proconfig FROM pg_proc WHERE proname = ANY(%s) ORDER BY proname",
            [[trail.CAPTURE_FUNCTION, trail.WRITE_FUNCTION]],
        )
        rows = cursor.fetchall()
    assert [name for name, _ in rows] == [trail.CAPTURE_FUNCTION, trail.WRITE_FUNCTION]
    for _, config in rows:
        [path] = config
        assert path.startswith("search_path=pg_catalog, ") and path.endswith(", pg_temp")


# --- the triggers follow the configuration --------------------------------------------------------


def test_every_audited_table_has_its_triggers():
    assert trail.missing("default") == []


def test_the_writers_accept_the_severities_the_model_knows():
    from better_audit.models import OPERATIONS, SEVERITIES

    assert (trail.OPERATIONS, trail.SEVERITIES) == (OPERATIONS, SEVERITIES)


def test_a_forged_severity_or_operation_is_not_stored(tenant):
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A-1")
        value = trail.carried("test_invoices", {"UPDATE": {"s": "apocalyptic", "l": "forged"}})
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE test_invoices SET paid = true WHERE id = %s AND {trail.CARRIER}",
                [invoice.pk, value],
            )
    update = logs(operation="UPDATE")[0]
    assert (update.severity, update.label) == (None, "forged")
    entry = python_entry(operation="UPSERT")
    with pytest.raises(DatabaseError, match="unknown operation or severity"), no_tenant():
        writer.insert([entry], "default")


@pytest.mark.django_db(transaction=True)
def test_migrate_installs_refreshes_and_removes_triggers(settings):
    from django.core.management import call_command

    def installed() -> dict[str, tuple[str, ...]]:
        with connection.cursor() as cursor:
            return trail.installed(cursor) or {}

    before = installed()
    assert "test_labels" in before
    configured = settings.BETTER_AUDIT
    audit.enrich("test_labels", "*", redact=["color"])
    try:
        settings.BETTER_AUDIT = {
            **settings.BETTER_AUDIT,
            "TABLES": [t for t in settings.BETTER_AUDIT["TABLES"] if t != "test_events"],
        }
        with connected_as_owner():
            call_command("migrate", verbosity=0)
        now = installed()
        assert "test_events" not in now
        assert '"x":["color"]' in now["test_labels"][3]
        # A raw change of test_labels is redacted as an ORM one would be.
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO test_labels (id, name, color) VALUES (%s, 'raw', 'secret')",
                [str(uuid.UUID(int=9))],
            )
        [entry] = logs(table_name="test_labels")
        assert "color" not in entry.after_data and entry.redacted_fields == ["color"]
    finally:
        from better_audit import enrichment

        enrichment.registry.clear()
        settings.BETTER_AUDIT = configured
    with connected_as_owner():
        call_command("migrate", verbosity=0)
    assert installed() == before


def test_orm_statements_carry_their_context_in_the_statement_itself(tenant):
    with run_as(tenant), CaptureQueriesContext(connection) as queries:
        Invoice.objects.create(number="A-1")
        Label.objects.filter(name="none").update(color="red")
    assert all(trail.STATEMENT_SETTING in q["sql"] for q in queries.captured_queries[-2:])


@pytest.mark.django_db(transaction=True)
def test_check_database_reports_a_table_that_lost_its_triggers():
    from django.core import checks

    def errors() -> list[str]:
        return [
            m.id
            for m in checks.run_checks(databases=["default"], tags=["better_audit"])
            if m.id == "better_audit.E018"
        ]

    assert errors() == []
    with connected_as_owner(), connection.cursor() as cursor:
        cursor.execute(trail.uninstall_sql("test_labels"))
    try:
        assert errors() == ["better_audit.E018"]
        Label.objects.create(name="lost")
        assert logs(table_name="test_labels") == []
    finally:
        with connected_as_owner():
            assert trail.sync("default") == ["+test_labels"]
    assert errors() == []


def test_installed_rules_leave_out_what_needs_python():
    called = []
    audit.enrich("test_labels", "UPDATE", description=lambda ctx: called.append(ctx) or "x")
    audit.enrich("test_labels", "UPDATE", label="Label edited", severity="low")
    audit.enrich("test_labels", "DELETE", redact=["color"])
    audit.enrich("test_labels", "DELETE", include=["name"])
    fields = writer.installed_fields("test_labels")
    assert fields["UPDATE"] == {"l": "Label edited", "s": "low", "lim": 1000}
    # redact and include together are refused where they are used, not when migrating.
    assert fields["DELETE"] == {} and fields["INSERT"] == {}
    assert called == []


@pytest.mark.django_db(transaction=True)
def test_the_documented_limit_a_forged_claim_hides_a_change_in_its_transaction(tenant):
    # README, "Who writes the trail": the mark of the Python path is a plain setting, so whoever
    # holds the application role's SQL can set it in a transaction of its own.
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A-1")
        with connection.cursor() as cursor:
            cursor.execute(trail.claim_sql(), ["|test_invoices|"])
            cursor.execute("UPDATE test_invoices SET paid = true WHERE id = %s", [invoice.pk])
    assert logs(operation="UPDATE") == []
    # The mark lasts one transaction: the next change is recorded again.
    with run_as(tenant), connection.cursor() as cursor:
        cursor.execute("UPDATE test_invoices SET paid = false WHERE id = %s", [invoice.pk])
    assert [e.operation for e in logs(operation="UPDATE")] == ["UPDATE"]
