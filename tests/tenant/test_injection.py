"""SQL injected into tenant A's request, run as the application role, reaches no row of tenant B.

Each attack runs inside A's scope exactly as injected SQL would (the application's own connection
and role), then the test asserts that B's rows are neither read, written nor referenced, and that
neither system mode nor the audit admin path was entered.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from better_audit.integrity import admin_role
from better_tenant import keys, run_as, run_as_system
from better_tenant.conf import tenant_settings
from better_tenant.sql import ENTER_FUNCTION, KEY_SEQUENCES, SETTING, SYSTEM_FUNCTION
from tests.support.tenants import unsigned_context
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_connection() -> Iterator[None]:
    # Injected session state must not reach the next test on this connection.
    connection.close()
    yield
    connection.close()


@pytest.fixture
def victims(tenant_factory: Any) -> dict[str, Any]:
    a, b = tenant_factory(), tenant_factory()
    with run_as(a):
        Note.objects.create(title="a-note")
    with run_as(b):
        note = Note.objects.create(title="b-note", body="b's secret")
    return {"a": a, "b": b, "b_note": note.pk}


def raw(query: str, params: Any = None) -> list[tuple] | None:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else None


def attempt(query: str, params: Any = None) -> str | None:
    """Run an injected statement in a savepoint; the database error it met, if any.

    Constraints are checked at once: a deferred foreign key would otherwise fail only when the
    whole scope commits.
    """
    try:
        with transaction.atomic():
            raw("SET CONSTRAINTS ALL IMMEDIATE")
            raw(query, params)
    except DatabaseError as exc:
        return str(exc)
    return None


def read(query: str, params: Any = None) -> list[tuple]:
    """The rows a read returns; none where the role may not read the table at all."""
    try:
        with transaction.atomic():
            return raw(query, params) or []
    except DatabaseError as exc:
        assert "permission denied" in str(exc), exc
        return []


def b_rows_seen(victims: dict[str, Any]) -> list[tuple]:
    """Every way a read could reach B's rows, from inside the current scope."""
    b = str(victims["b"].pk)
    seen = read("SELECT title FROM test_notes WHERE title = 'b-note'")
    seen += read("SELECT title FROM test_notes WHERE tenant_id = %s", [b])
    seen += read("SELECT slug FROM tenants WHERE id = %s", [b])
    seen += read("SELECT id::text FROM audit_logs WHERE tenant_id = %s", [b])
    return seen


def writes_to_b(victims: dict[str, Any]) -> list[str]:
    """Try to write B's rows; the attempts that changed something or were not refused."""
    b, note = str(victims["b"].pk), victims["b_note"]
    landed = []
    if (
        attempt(
            "INSERT INTO test_notes (tenant_id, title, body, score, created) "
            "VALUES (%s, 'planted', '', 0, now())",
            [b],
        )
        is None
    ):
        landed.append("insert into B")
    for statement in (
        "UPDATE test_notes SET body = 'defaced' WHERE tenant_id = %s",
        "DELETE FROM test_notes WHERE tenant_id = %s",
        "UPDATE tenants SET name = 'pwned' WHERE id = %s",
    ):
        with transaction.atomic(), connection.cursor() as cursor:
            try:
                cursor.execute(statement, [b])
            except DatabaseError:
                continue
            if cursor.rowcount:
                landed.append(statement)
    # A row of A that points at B's note (referenced, not read).
    if (
        attempt(
            "INSERT INTO test_comments (tenant_id, note_id, text) "
            "VALUES (better_tenant_current(), %s, 'ref')",
            [note],
        )
        is None
    ):
        landed.append("comment of A referencing B's note")
    return landed


def assert_b_untouched(victims: dict[str, Any]) -> None:
    with run_as_system():
        rows = raw(
            "SELECT title, body FROM test_notes WHERE tenant_id = %s ORDER BY title",
            [str(victims["b"].pk)],
        )
        name = raw("SELECT name FROM tenants WHERE id = %s", [str(victims["b"].pk)])
    assert rows == [("b-note", "b's secret")]
    assert name == [(victims["b"].name,)]


def other_backend(conninfo_params: dict[str, Any]) -> psycopg.Connection:
    return psycopg.connect(**conninfo_params)


def app_params() -> dict[str, Any]:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    return params


def b_value_from_another_backend(victims: dict[str, Any]) -> str:
    """B's genuine context value, as a second backend of the same role holds it."""
    with other_backend(app_params()) as other, other.transaction(), other.cursor() as cursor:
        cursor.execute(f"SELECT {ENTER_FUNCTION}(%s)", [keys.proof(str(victims["b"].pk))])
        cursor.execute("SELECT current_setting(%s)", [SETTING])
        (value,) = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM test_notes")
        assert cursor.fetchone() == (1,)  # B's value works where it was made
    return value


def injections(victims: dict[str, Any]) -> dict[str, str]:
    """The statements an attacker injects inside A's scope (no parameters: they are literals)."""
    b = str(victims["b"].pk)
    system_role, audit_role = tenant_settings.SYSTEM_ROLE, admin_role()
    now = int(time.time())
    return {
        "set_config local": f"SELECT set_config('{SETTING}', '{b}', true)",
        "set_config session": f"SELECT set_config('{SETTING}', '{b}', false)",
        "SET": f"SET {SETTING} = '{b}'",
        "SET LOCAL": f"SET LOCAL {SETTING} = '{b}'",
        "forged MAC": f"SELECT set_config('{SETTING}', '{b}|{'0' * 64}', true)",
        "A's MAC on B's id": (
            f"SELECT set_config('{SETTING}', '{b}|' || split_part(current_setting("
            f"'{SETTING}'), '|', 2), true)"
        ),
        "A's MAC on system": (
            f"SELECT set_config('{SETTING}', 'system|' || split_part(current_setting("
            f"'{SETTING}'), '|', 2), true)"
        ),
        "SET ROLE system": f'SET ROLE "{system_role}"',
        "SET LOCAL ROLE system": f'SET LOCAL ROLE "{system_role}"',
        "set_config role system": f"SELECT set_config('role', '{system_role}', true)",
        "SET ROLE audit admin": f'SET ROLE "{audit_role}"',
        "forged proof": f"SELECT {ENTER_FUNCTION}('{b}|{now}|{'a' * 64}')",
        "forged system proof": f"SELECT {ENTER_FUNCTION}('system|{now}|{'b' * 64}')",
        "SET SESSION AUTHORIZATION": "SET SESSION AUTHORIZATION DEFAULT",
    }


ATTACKS = [
    "set_config local",
    "set_config session",
    "SET",
    "SET LOCAL",
    "forged MAC",
    "A's MAC on B's id",
    "A's MAC on system",
    "SET ROLE system",
    "SET LOCAL ROLE system",
    "set_config role system",
    "SET ROLE audit admin",
    "forged proof",
    "forged system proof",
    "SET SESSION AUTHORIZATION",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_an_injected_statement_reaches_no_row_of_another_tenant(victims, attack):
    injected = injections(victims)[attack]
    with run_as(victims["a"]):
        raw(injected) if attack.startswith(("SET ROLE", "SET LOCAL ROLE")) else attempt(injected)
        assert b_rows_seen(victims) == []
        assert raw(f"SELECT {SYSTEM_FUNCTION}()") == [(False,)]
        assert writes_to_b(victims) == []
    # And after the scope, on the same connection, whatever the session kept.
    assert b_rows_seen(victims) == []
    assert writes_to_b(victims) == []
    assert_b_untouched(victims)


def test_a_forged_proof_is_refused_loudly(victims):
    b = str(victims["b"].pk)
    with run_as(victims["a"]):
        error = attempt(injections(victims)["forged proof"])
    assert error is not None and "context proof refused" in error
    stale = keys.proof(b, issued=1_700_000_000)
    with run_as(victims["a"]):
        error = attempt(f"SELECT {ENTER_FUNCTION}(%s)", [stale])
    assert error is not None and "from the database clock" in error


def test_b_genuine_value_replayed_from_another_backend_reads_nothing(victims):
    value = b_value_from_another_backend(victims)
    with run_as(victims["a"]):
        raw("SELECT set_config(%s, %s, true)", [SETTING, value])
        assert b_rows_seen(victims) == []
        assert writes_to_b(victims) == []
    assert_b_untouched(victims)


def test_b_genuine_value_replayed_from_an_earlier_transaction_reads_nothing(victims):
    with run_as(victims["b"]):
        ((value,),) = raw("SELECT current_setting(%s)", [SETTING])
        assert raw("SELECT count(*) FROM test_notes") == [(1,)]
    with run_as(victims["a"]):
        raw("SELECT set_config(%s, %s, true)", [SETTING, value])
        assert b_rows_seen(victims) == []
    raw("SELECT set_config(%s, %s, false)", [SETTING, value])
    assert b_rows_seen(victims) == []


def test_no_statement_text_of_another_backend_carries_a_proof_or_context(victims):
    b = str(victims["b"].pk)
    with other_backend(app_params()) as other:
        other.execute("BEGIN")
        other.execute(f"SELECT {ENTER_FUNCTION}(%s)", [keys.proof(b)])
        # Idle in its transaction: its last statement is what pg_stat_activity shows.
        with run_as(victims["a"]):
            texts = raw(
                "SELECT query FROM pg_stat_activity WHERE pid = %s", [other.info.backend_pid]
            )
        other.execute("ROLLBACK")
    assert texts == [(f"SELECT {ENTER_FUNCTION}($1)",)]


def test_the_keys_are_out_of_the_app_roles_reach(victims):
    halves = [str(value) for key in keys.live_keys() for value in keys.halves(key)]
    secrets = [key.hex() for key in keys.live_keys()] + halves
    with run_as(victims["a"]):
        for name in KEY_SEQUENCES:
            # Refused; PostgreSQL 18 answers NULL instead of an error here.
            assert read(f"SELECT pg_sequence_last_value('{name}')") in ([], [(None,)])
            for statement in (
                f"SELECT last_value FROM {name}",
                f"SELECT setval('{name}', 1)",
                f"SELECT nextval('{name}')",
                f"ALTER SEQUENCE {name} RESTART",
            ):
                error = attempt(statement) or ""
                assert "permission denied" in error or "must be owner" in error, statement
        seen = raw("SELECT last_value::text FROM pg_sequences WHERE sequencename LIKE 'better%%'")
        sources = raw(
            "SELECT coalesce(prosrc, '') || coalesce(array_to_string(proconfig, ','), '') "
            "FROM pg_proc"
        )
        settings = raw("SELECT coalesce(setting, '') FROM pg_settings")
    assert all(value is None for (value,) in seen or [])
    visible = " ".join(text for (text,) in (sources or []) + (settings or []))
    assert not any(secret in visible for secret in secrets)


def test_nothing_left_on_the_connection_runs_in_a_later_request(victims):
    with run_as(victims["a"]):
        # The temporary schema is searched first: a temp view named like a tenant table would
        # run in B's next request on this connection. The role may create nothing temporary.
        for statement in (
            "CREATE TEMP VIEW test_notes AS SELECT * FROM public.test_notes",
            "CREATE TEMP TABLE loot (title text)",
            "CREATE FUNCTION pg_temp.leak() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        ):
            assert "permission denied" in (attempt(statement) or ""), statement
    with run_as(victims["b"]):
        assert raw("SELECT title FROM test_notes") == [("b-note",)]


def test_the_audit_admin_role_alone_deletes_and_reads_nothing(victims):
    role = admin_role()
    with run_as(victims["b"]):
        Note.objects.filter(title="b-note").update(score=1)  # an audited change of B
    with run_as_system():
        before = raw("SELECT count(*) FROM audit_logs")
    with run_as(victims["a"]), connection.cursor() as cursor:
        cursor.execute(f'SET LOCAL ROLE "{role}"')
        cursor.execute("SELECT current_user")
        assert cursor.fetchone() == (role,)
        # The append-only trigger lets the admin role delete; its policy wants the marker.
        cursor.execute("DELETE FROM audit_logs")
        assert cursor.rowcount == 0
        cursor.execute("SELECT count(*) FROM audit_logs WHERE tenant_id = %s", [victims["b"].pk])
        assert cursor.fetchone() == (0,)
    with run_as_system():
        assert raw("SELECT count(*) FROM audit_logs") == before


def test_system_mode_and_scopes_still_work_with_their_proof(victims):
    with run_as_system():
        assert raw(f"SELECT {SYSTEM_FUNCTION}()") == [(True,)]
        titles = sorted(t for (t,) in raw("SELECT title FROM test_notes") or [])
    assert {"a-note", "b-note"} <= set(titles)
    with run_as(victims["b"]):
        assert raw("SELECT title FROM test_notes") == [("b-note",)]


def test_a_key_the_database_does_not_hold_is_refused(victims):
    stranger = uuid.uuid4().bytes * 2
    with run_as(victims["a"]):
        error = attempt(
            f"SELECT {ENTER_FUNCTION}(%s)", [keys.proof(str(victims["b"].pk), stranger)]
        )
    assert error is not None and "no key installed in the database matches" in error


def test_the_unsigned_opt_out_is_reported_and_its_limit_is_real(victims, settings):
    with unsigned_context(settings):
        out = io.StringIO()
        call_command("better_tenant", "check", "--json", stdout=out)
        codes = {finding["code"] for finding in json.loads(out.getvalue())["findings"]}
        assert "context_unsigned" in codes and "context_signed" not in codes
        # What the signed context closes: here the plain setting names B.
        with run_as(victims["a"]):
            attempt(injections(victims)["set_config local"])
            assert raw("SELECT title FROM test_notes") == [("b-note",)]
    out = io.StringIO()
    call_command("better_tenant", "check", "--json", stdout=out)
    codes = {finding["code"] for finding in json.loads(out.getvalue())["findings"]}
    assert {"context_signed", "context_key"} <= codes
