"""The proof and the statement in one libpq pipeline: results, errors, and psycopg's own path."""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest
from django.db import DatabaseError, connection
from psycopg.pq import PipelineStatus, TransactionStatus

from better_tenant import pipeline, run_as, statements
from better_tenant.api import create_tenant
from tests.support.wire import wire
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def acme():
    suffix = uuid.uuid4().hex[:6]
    tenant = create_tenant(f"Acme {suffix}", f"acme-{suffix}")
    with run_as(tenant):
        Note.objects.bulk_create([Note(title=f"Acme-{n}") for n in range(3)])
    return tenant


@pytest.fixture(params=["direct", "psycopg"])
def path(request, monkeypatch):
    """Each test runs on the direct path and on psycopg's Pipeline, which takes over where
    psycopg lacks what the direct path uses."""
    if request.param == "psycopg":
        monkeypatch.setattr(pipeline, "SUPPORTED", False)
    else:
        assert pipeline.SUPPORTED, "this psycopg and libpq run the direct path"
    calls = []
    original = pipeline.execute
    monkeypatch.setattr(pipeline, "execute", lambda *a: calls.append(a) or original(*a))
    return request.param, calls


def idle_and_out_of_pipeline() -> bool:
    pgconn = connection.connection.pgconn
    return (
        pgconn.transaction_status == TransactionStatus.IDLE
        and pgconn.pipeline_status == PipelineStatus.OFF
    )


def test_a_scoped_query_returns_its_rows_in_one_round_trip(acme, path):
    name, calls = path
    connection.ensure_connection()
    with run_as(acme, atomic=False), connection.cursor() as cursor, wire() as sent:
        cursor.execute("SELECT title FROM test_notes WHERE title LIKE %s ORDER BY title", ["Acme%"])
        rows = cursor.fetchall()
        description = [column.name for column in cursor.description]
        rowcount = cursor.rowcount
    assert rows == [("Acme-0",), ("Acme-1",), ("Acme-2",)]
    assert description == ["title"] and rowcount == 3
    assert [m.split()[0] for m in sent if m.startswith(("Parse", "Sync", "Query"))] == [
        "Parse",
        "Parse",
        "Sync",
    ]
    assert len(calls) == (1 if name == "direct" else 0)
    assert idle_and_out_of_pipeline()


def test_a_write_reports_its_rowcount_and_status(acme, path):
    connection.ensure_connection()
    with run_as(acme, atomic=False), connection.cursor() as cursor:
        cursor.execute("UPDATE test_notes SET title = title || '!' WHERE title <> %s", ["none"])
        assert cursor.rowcount == 3
        assert cursor.cursor.statusmessage == "UPDATE 3"
    with run_as(acme):
        assert sorted(Note.objects.values_list("title", flat=True)) == [
            "Acme-0!",
            "Acme-1!",
            "Acme-2!",
        ]


def test_a_failing_statement_raises_its_own_error_and_the_connection_goes_on(acme, path):
    connection.ensure_connection()
    with run_as(acme, atomic=False):
        with pytest.raises(DatabaseError) as raised, connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")
        assert isinstance(raised.value.__cause__, psycopg.errors.UndefinedTable)
        assert idle_and_out_of_pipeline()
        assert Note.objects.count() == 3


def test_a_refused_proof_raises_and_the_statement_does_not_run(acme, path, settings):
    connection.ensure_connection()
    settings.BETTER_TENANT = {**settings.BETTER_TENANT, "CONTEXT_KEY": "x" * 40}
    with run_as(acme, atomic=False):
        with (
            pytest.raises(DatabaseError, match="no key installed") as raised,
            connection.cursor() as cursor,
        ):
            cursor.execute("UPDATE test_notes SET title = 'lost'")
        assert isinstance(raised.value.__cause__, psycopg.errors.InsufficientPrivilege)
        assert idle_and_out_of_pipeline()
    settings.BETTER_TENANT = {k: v for k, v in settings.BETTER_TENANT.items() if k != "CONTEXT_KEY"}
    with run_as(acme):
        assert "lost" not in Note.objects.values_list("title", flat=True)


def test_a_cursor_binding_on_the_server_sends_its_statement_as_it_is(acme, path):
    connection.ensure_connection()
    raw = connection.connection
    cursor_class = statements.cursor_class(psycopg.Cursor)
    with run_as(acme, atomic=False), cursor_class(raw) as cursor:
        cursor.execute("SELECT count(*) FROM test_notes")
        assert cursor.fetchone() == (3,)
        assert cursor.pgresult is not None
    assert idle_and_out_of_pipeline()


def test_inside_a_transaction_the_proof_joins_it(acme, path):
    from django.db import transaction

    name, calls = path
    with run_as(acme, atomic=False), transaction.atomic():
        assert Note.objects.count() == 3
        assert Note.objects.count() == 3
        assert connection.connection.pgconn.transaction_status == TransactionStatus.INTRANS
    # The second query carries nothing: the transaction already holds the tenant.
    assert len(calls) == (1 if name == "direct" else 0)


def test_this_psycopg_runs_the_direct_path():
    # noxfile.py's psycopg_oldest session runs these tests on the oldest psycopg admitted.
    oldest = os.environ.get("BETTER_OLDEST_PSYCOPG")
    assert oldest is None or psycopg.__version__.startswith(f"{oldest}.")
    assert pipeline.SUPPORTED
