"""The tenant travels with each statement: no transaction is opened that the code did not ask for.

These tests run in autocommit (``transaction=True``), as a view does under Django's defaults, and
read the wire protocol through libpq's own trace to count the round trips.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from django.db import DatabaseError, connection, connections, transaction
from psycopg.pq import TransactionStatus

from better_tenant import no_tenant, run_as, run_as_system
from better_tenant.api import create_tenant
from better_tenant.exceptions import SystemRoleUnavailable
from better_tenant.statements import UNKNOWN, settings_sql
from tests.support.tenants import temporary_objects_allowed
from tests.support.wire import wire
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tenants():
    made = []
    for name, count in (("Acme", 3), ("Globex", 2)):
        suffix = uuid.uuid4().hex[:6]
        tenant = create_tenant(f"{name} {suffix}", f"{name.lower()}-{suffix}")
        with run_as(tenant):
            Note.objects.bulk_create([Note(title=f"{name}-{n}") for n in range(count)])
        made.append(tenant)
    return made


def status() -> TransactionStatus:
    return connection.connection.pgconn.transaction_status


def one(query: str, params: list | None = None):
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchone()


def test_a_query_in_scope_is_one_round_trip_and_leaves_no_transaction(tenants):
    acme, _ = tenants
    connection.ensure_connection()
    with run_as(acme, atomic=False):
        assert not connection.in_atomic_block
        with wire() as sent:
            titles = sorted(Note.objects.values_list("title", flat=True))
        assert status() == TransactionStatus.IDLE
    assert titles == ["Acme-0", "Acme-1", "Acme-2"]
    # One pipeline: the proof bound to better_tenant_enter($1), then the statement, one Sync;
    # no BEGIN and no COMMIT.
    assert [m.split()[0] for m in sent if m.startswith(("Parse", "Sync", "Query"))] == [
        "Parse",
        "Parse",
        "Sync",
    ]
    enter, statement = (m for m in sent if m.startswith("Parse"))
    assert '"SELECT better_tenant_enter($1)"' in enter and "test_notes" in statement
    assert not any("BEGIN" in m or "COMMIT" in m for m in sent)
    # The proof travels as a bound value, never in the text of a statement.
    [bound] = [m for m in sent if m.startswith("Bind") and str(acme.pk) in m]
    assert not any(str(acme.pk) in m for m in sent if m.startswith("Parse"))
    assert bound


def test_the_settings_hold_for_the_statement_only(tenants):
    acme, globex = tenants
    with run_as(acme, atomic=False):
        assert one("SELECT better_tenant_current()::text") == (str(acme.pk),)
        assert Note.objects.count() == 3
        with run_as(globex, atomic=False):
            assert Note.objects.count() == 2
        assert Note.objects.count() == 3
    # A statement outside the scope: the implicit transaction took the settings with it.
    assert one("SELECT better_tenant_current()") == (None,)
    assert Note.objects.count() == 0


def test_multi_statement_raw_sql_runs_in_one_implicit_transaction_as_the_tenant(tenants):
    acme, _ = tenants
    with run_as(acme, atomic=False), connection.cursor() as cursor:
        cursor.execute("UPDATE test_notes SET body = 'seen'; SELECT count(*) FROM test_notes")
        # The cursor shows the first statement of the caller's string, as without a prefix.
        assert cursor.rowcount == 3
        assert cursor.nextset() is True
        assert cursor.fetchone() == (3,)
    with run_as_system():
        bodies = dict(Note.objects.values_list("title", "body"))
    assert {bodies[f"Acme-{n}"] for n in range(3)} == {"seen"}
    assert {bodies[f"Globex-{n}"] for n in range(2)} == {""}


def test_copy_to_reads_the_tenants_rows_in_a_transaction_of_its_own(tenants):
    acme, _ = tenants
    with run_as(acme, atomic=False), connection.cursor() as cursor:
        with cursor.copy("COPY (SELECT title FROM test_notes ORDER BY title) TO STDOUT") as copy:
            rows = [row for row in copy.rows()]
        assert status() == TransactionStatus.IDLE
    assert rows == [("Acme-0",), ("Acme-1",), ("Acme-2",)]
    # Outside any scope COPY sees nothing.
    with connection.cursor() as cursor, cursor.copy("COPY test_notes TO STDOUT") as copy:
        assert list(copy.rows()) == []


def test_statements_that_cannot_run_in_a_transaction_block_get_no_prefix(tenants):
    acme, _ = tenants
    with temporary_objects_allowed(), run_as(acme, atomic=False), connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE scratch (id int)")
        # VACUUM refuses to run inside a transaction block, which a prefixed string is.
        cursor.execute("VACUUM scratch")
        cursor.execute("DROP TABLE scratch")
        cursor.execute("SELECT count(*) FROM test_notes")
        assert cursor.fetchone() == (3,)


def test_iterator_uses_a_holdable_cursor_declared_with_the_tenant(tenants):
    acme, globex = tenants
    with run_as(acme, atomic=False):
        titles = [note.title for note in Note.objects.order_by("title").iterator(chunk_size=1)]
        assert status() == TransactionStatus.IDLE
    assert titles == ["Acme-0", "Acme-1", "Acme-2"]
    with run_as(globex, atomic=False):
        iterator = Note.objects.order_by("title").values_list("title", flat=True).iterator(1)
        first = next(iterator)
        # Another statement between two fetches does not disturb the held cursor's rows.
        assert Note.objects.count() == 2
        assert [first, *iterator] == ["Globex-0", "Globex-1"]


def test_executemany_inserts_into_the_tenant(tenants):
    acme, _ = tenants
    with run_as(acme, atomic=False), connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO test_notes (title, body, score, created) VALUES (%s, '', 0, now())",
            [("many-1",), ("many-2",)],
        )
        assert status() == TransactionStatus.IDLE
    with run_as(acme):
        assert Note.objects.filter(title__startswith="many-").count() == 2


def test_a_raw_psycopg_cursor_of_the_connection_carries_the_tenant(tenants):
    acme, _ = tenants
    connection.ensure_connection()
    with run_as(acme, atomic=False), connection.connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM test_notes")
        assert cursor.fetchone() == (3,)


def test_inside_atomic_the_settings_go_once_with_the_first_statement(tenants):
    acme, _ = tenants
    connection.ensure_connection()
    with run_as(acme, atomic=False), wire() as sent, transaction.atomic():
        assert Note.objects.count() == 3
        assert Note.objects.filter(title="Acme-1").count() == 1
        assert list(Note.objects.select_for_update().filter(title="Acme-2")) != []
    parsed = [m for m in sent if m.startswith(("Parse", "Query"))]
    # psycopg's own BEGIN, then the settings with the first statement, then none with them.
    assert "BEGIN" in parsed[0]
    entered = [i for i, m in enumerate(parsed) if "better_tenant_enter" in m]
    assert len(entered) == 1 and "COUNT(*)" in parsed[entered[0] + 1]


def test_a_rolled_back_savepoint_makes_the_next_statement_set_the_scope_again(tenants):
    acme, globex = tenants
    with run_as(acme, atomic=False), transaction.atomic():
        assert Note.objects.count() == 3
        with pytest.raises(RuntimeError), run_as(globex):
            # run_as opens a savepoint; the settings made in it go with its rollback.
            assert Note.objects.count() == 2
            raise RuntimeError
        assert Note.objects.count() == 3
        with transaction.atomic():
            assert Note.objects.count() == 3
            transaction.set_rollback(True)
        assert Note.objects.count() == 3
    with transaction.atomic():
        assert Note.objects.count() == 0


def test_leaving_system_mode_inside_a_transaction_leaves_the_role_before_any_statement(tenants):
    with temporary_objects_allowed(), transaction.atomic():
        with run_as_system():
            assert Note.objects.count() == 5
            system = one("SELECT current_user")[0]
        # Not a row statement, yet it must not run as the system role.
        with connection.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE made_after (id int) ON COMMIT DROP")
        owner = one(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'made_after'::regclass"
        )[0]
        assert owner == one("SELECT session_user")[0] != system
        assert Note.objects.count() == 0


def test_system_mode_in_autocommit_lasts_one_statement(tenants):
    app_role = one("SELECT current_user")[0]
    with run_as_system(atomic=False):
        assert Note.objects.count() == 5
        assert one("SELECT current_user")[0] != app_role
    assert one("SELECT current_user")[0] == app_role
    assert Note.objects.count() == 0


def test_no_tenant_inside_a_tenant_scope_hides_the_rows(tenants):
    acme, _ = tenants
    with run_as(acme, atomic=False):
        with no_tenant(atomic=False):
            assert Note.objects.count() == 0
        assert Note.objects.count() == 3


def test_server_side_binding_sets_the_scope_in_a_transaction_for_parameterised_statements(
    tenants,
):
    acme, _ = tenants
    settings = {**connection.settings_dict, "OPTIONS": {"server_side_binding": True}}
    binding = connections["default"].__class__(settings, alias="binding")
    connections["binding"] = binding
    try:
        with run_as(acme, atomic=False, using="binding"):
            assert Note.objects.using("binding").filter(title__startswith="Acme").count() == 3
            assert Note.objects.using("binding").count() == 3
            cursor_class = type(binding.connection.cursor())
            assert issubclass(cursor_class, psycopg.Cursor)
            assert not issubclass(cursor_class, psycopg.ClientCursor)
            assert binding.connection.pgconn.transaction_status == TransactionStatus.IDLE
        assert Note.objects.using("binding").count() == 0
    finally:
        binding.close()
        del connections["binding"]


def test_a_failed_statement_in_scope_does_not_leave_the_tenant_behind(tenants):
    acme, _ = tenants
    with run_as(acme, atomic=False):
        with pytest.raises(DatabaseError):
            one("SELECT 1/0 FROM test_notes")
        assert Note.objects.count() == 3
    assert one("SELECT better_tenant_current()") == (None,)


def test_the_settings_statement_changes_the_role_only_when_system_mode_changes():
    from better_tenant.context import TenantContext

    tenant = uuid.uuid4()
    text = settings_sql(TenantContext(tenant_id=tenant), None)
    # The tenant is in the bound proof, not in the statement.
    assert text == "SELECT better_tenant_enter(%s)"
    system = settings_sql(TenantContext(is_system=True), None)
    assert system.startswith("SELECT better_tenant_enter(%s), pg_catalog.set_config('role'")
    # Leaving system mode resets the role in the same statement.
    assert "set_config('role', 'none', true)" in settings_sql(None, TenantContext(is_system=True))
    # Staying in system mode leaves it; after a savepoint rollback either may hold, so both set it.
    system_held = TenantContext(is_system=True)
    assert "role" not in settings_sql(system_held, system_held)
    assert "set_config('role', 'none', true)" in settings_sql(
        TenantContext(tenant_id=tenant), UNKNOWN
    )
    assert "set_config('role', 'better" in settings_sql(system_held, UNKNOWN)


def test_a_view_under_the_middleware_sends_no_begin_or_commit(tenants, client, settings):
    acme, _ = tenants
    settings.BETTER_TENANT = {"HEADER": "X-Tenant-ID"}
    settings.MIDDLEWARE = ["better_tenant.middleware.TenantMiddleware"]
    settings.ROOT_URLCONF = "tests.testapp.urls"
    connection.ensure_connection()
    with wire() as sent:
        response = client.get("/notes", headers={"X-Tenant-ID": str(acme.pk)})
    assert response.status_code == 200
    assert sorted(response.json()["titles"]) == ["Acme-0", "Acme-1", "Acme-2"]
    assert not any("BEGIN" in m or "COMMIT" in m for m in sent)
    settings.BETTER_TENANT = {"HEADER": "X-Tenant-ID", "ATOMIC": True}
    with wire() as sent:
        response = client.get("/notes", headers={"X-Tenant-ID": str(acme.pk)})
    assert response.status_code == 200 and response.json()["in_atomic"] is True
    assert any("BEGIN" in m for m in sent) and any("COMMIT" in m for m in sent)


def test_a_system_role_that_cannot_be_entered_is_named_at_the_first_statement(tenants, settings):
    settings.BETTER_TENANT = {"HEADER": "X-Tenant-ID", "SYSTEM_ROLE": "better_no_such_role"}
    with pytest.raises(SystemRoleUnavailable, match="better_no_such_role"), run_as_system():
        Note.objects.count()
    # Nothing was left behind: the next statement runs as the app role with no tenant.
    assert Note.objects.count() == 0


def test_an_error_of_the_statement_itself_is_not_taken_for_the_system_role(tenants):
    with pytest.raises(DatabaseError, match="does not exist") as raised, run_as_system():
        one("SELECT count(*) FROM no_such_table")
    assert not isinstance(raised.value, SystemRoleUnavailable)


def test_prepared_statements_and_sql_cursors_carry_the_tenant(tenants):
    acme, _ = tenants
    with run_as(acme, atomic=False), connection.cursor() as cursor:
        cursor.execute("PREPARE titles AS SELECT count(*) FROM test_notes")
        cursor.execute("EXECUTE titles")
        assert cursor.fetchone() == (3,)
        cursor.execute("DEALLOCATE titles")
        cursor.execute("DECLARE held CURSOR WITH HOLD FOR SELECT title FROM test_notes")
        cursor.execute("FETCH ALL FROM held")
        assert len(cursor.fetchall()) == 3
        cursor.execute("CLOSE held")
