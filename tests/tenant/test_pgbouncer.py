"""Through a real PgBouncer in transaction mode, each scope binds to the backend it runs on.

PgBouncer hands a server connection to a client for one transaction: consecutive statements of
one Django connection land on different backends. The context ``better_tenant_enter()`` writes
names the backend and transaction it was made in, so each statement must carry its own, and a
value from an earlier statement must be worth nothing. Needs the ``pgbouncer`` binary (Debian's
package); with ``BETTER_REQUIRE_PGBOUNCER=1`` (CI) a missing one fails instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection, connections
from django.db.backends.postgresql.base import DatabaseWrapper

from better_tenant import run_as
from better_tenant.sql import SETTING
from tests.support.pgbouncer import pgbouncer_binary, running_pgbouncer
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)
ALIAS = "pgbouncer"


@pytest.fixture
def pgbouncer() -> Iterator[DatabaseWrapper]:
    """A PgBouncer (transaction mode, two server connections) before the test database, and a
    Django connection through it registered as the alias ``pgbouncer``."""
    if pgbouncer_binary() is None:
        message = "pgbouncer is not installed (Debian: apt-get install pgbouncer)"
        if os.environ.get("BETTER_REQUIRE_PGBOUNCER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    params = connection.get_connection_params()
    users = [connection.settings_dict["USER"], params.get("user")]
    with running_pgbouncer(params.get("host"), params.get("port"), users) as listen:
        settings_dict = {**connection.settings_dict, "HOST": "127.0.0.1", "PORT": listen}
        wrapper = DatabaseWrapper(settings_dict, alias=ALIAS)
        connections[ALIAS] = wrapper
        try:
            yield wrapper
        finally:
            wrapper.close()
            del connections[ALIAS]


def backend_and_count(using: str) -> tuple[int, int, str]:
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"SELECT pg_backend_pid(), count(*), current_setting('{SETTING}', true) FROM test_notes"
        )
        return cursor.fetchone()


def busy(listen: int, user: str, dbname: str) -> psycopg.Connection:
    """A second client holding a transaction open, so PgBouncer gives the first another backend."""
    other = psycopg.connect(host="127.0.0.1", port=listen, user=user, dbname=dbname)
    other.execute("SELECT 1")  # BEGIN (psycopg) and a statement: the server stays assigned
    return other


def test_each_statement_binds_to_the_backend_it_lands_on(pgbouncer, tenant_factory):
    acme, globex = tenant_factory(), tenant_factory()
    for owner, count in ((acme, 3), (globex, 2)):
        with run_as(owner):
            Note.objects.bulk_create([Note(title=f"n{i}") for i in range(count)])
    settings = pgbouncer.settings_dict
    seen: list[tuple[int, int, str]] = []
    with run_as(acme, using=ALIAS, atomic=False):
        for round_no in range(6):
            # Every other statement, another client holds one of the two server connections.
            holder = (
                busy(settings["PORT"], settings["USER"], settings["NAME"]) if round_no % 2 else None
            )
            try:
                seen.append(backend_and_count(ALIAS))
            finally:
                if holder is not None:
                    holder.close()
    assert {count for _, count, _ in seen} == {3}
    assert len({pid for pid, _, _ in seen}) >= 2, seen
    # The context an earlier statement held, replayed later: another transaction (perhaps
    # another backend) reads nothing with it.
    _, _, context = seen[-1]
    with connections[ALIAS].cursor() as cursor:
        cursor.execute(
            "SELECT set_config(%s, %s, false), (SELECT count(*) FROM test_notes)",
            [SETTING, context],
        )
        assert cursor.fetchone()[1] == 0
    # A scope that is one transaction stays on one backend and sees the tenant throughout.
    with run_as(globex, using=ALIAS):
        first = backend_and_count(ALIAS)
        second = backend_and_count(ALIAS)
    assert first[:2] == second[:2] and first[1] == 2


def test_the_orm_through_pgbouncer_reads_and_writes_the_tenant(pgbouncer: Any, tenant_factory):
    acme = tenant_factory()
    with run_as(acme, using=ALIAS, atomic=False):
        Note.objects.using(ALIAS).create(title="via pgbouncer")
        titles = list(Note.objects.using(ALIAS).values_list("title", flat=True))
    assert titles == ["via pgbouncer"]
    with run_as(acme):
        assert Note.objects.get().title == "via pgbouncer"
