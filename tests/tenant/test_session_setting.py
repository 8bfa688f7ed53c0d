"""A tenant set at session level never outlives its transaction: later work reads no tenant."""

import json
import re
import uuid

import pytest
from django.db import IntegrityError, connection, transaction

from better_tenant import no_tenant, run_as, run_as_system
from better_tenant.errors import CrossTenantWrite
from better_tenant.models import Tenant
from better_tenant.sql import ENTER_FUNCTION, SETTING
from tests.support.celery_worker import eager_tasks
from tests.support.wire import wire
from tests.testapp.models import Note
from tests.testapp.tasks import note_summary

# Real commits: each scope is a transaction of its own, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


def raw(query, params=()):
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else None


@pytest.fixture(autouse=True)
def _fresh_connection():
    # The injected session state must not reach the next test on this connection.
    connection.close()
    yield
    connection.close()


@pytest.fixture
def data(tenant_factory):
    a, b, c = tenant_factory(), tenant_factory(), tenant_factory()
    for owner, titles in ((a, ["a1", "a2"]), (b, ["b1"]), (c, ["c1"])):
        with run_as(owner):
            for title in titles:
                Note.objects.create(title=title)
    return {"a": a, "b": b, "c": c}


def inject(tenant):
    """What injected SQL inside a scope does: set the tenant for the rest of the session."""
    raw("SELECT set_config(%s, %s, false)", [SETTING, str(tenant.pk)])


def titles():
    return sorted(Note.objects.values_list("title", flat=True))


def test_unscoped_work_after_the_scope_reads_no_tenant(data):
    a, b = data["a"], data["b"]
    with run_as(a):
        inject(b)
    # The session really holds B now; only the policies decide what it is worth.
    assert raw("SELECT current_setting(%s)", [SETTING]) == [(str(b.pk),)]
    assert titles() == []
    assert raw("SELECT count(*) FROM test_notes") == [(0,)]
    assert Tenant.objects.count() == 0
    # Another client behind PgBouncer runs plain transactions on the same server session.
    with transaction.atomic():
        assert raw("SELECT title FROM test_notes") == []
        assert raw("SELECT count(*) FROM tenants") == [(0,)]


def test_the_next_scoped_transaction_sees_its_own_tenant_only(data):
    a, b, c = data["a"], data["b"], data["c"]
    with run_as(a):
        inject(b)
    with run_as(c):
        assert titles() == ["c1"]
        assert raw("SELECT count(*) FROM test_notes WHERE tenant_id = %s", [b.pk]) == [(0,)]
        assert list(Tenant.objects.values_list("pk", flat=True)) == [c.pk]
    with run_as(a):
        assert titles() == ["a1", "a2"]
    with no_tenant():
        assert titles() == []
    with run_as_system():
        assert titles() == ["a1", "a2", "b1", "c1"]


def test_an_unscoped_insert_does_not_land_in_the_injected_tenant(data):
    a, b = data["a"], data["b"]
    with run_as(a):
        inject(b)
    with pytest.raises(IntegrityError, match="no tenant in scope"), transaction.atomic():
        Note.objects.create(title="smuggled")
    with pytest.raises(CrossTenantWrite), transaction.atomic():
        raw("INSERT INTO test_notes (title, score, tenant_id) VALUES ('x', 0, %s)", [b.pk])
    with run_as(b):
        assert titles() == ["b1"]


def test_copying_the_verified_context_into_the_session_does_not_help(data):
    a = data["a"]
    with run_as(a):
        # The value the scope's transaction holds, kept for the session: its MAC names that
        # transaction, so no later one honours it.
        raw("SELECT set_config(%s, current_setting(%s), false)", [SETTING] * 2)
    assert raw("SELECT current_setting(%s) LIKE %s", [SETTING, f"{a.pk}|%"]) == [(True,)]
    assert titles() == []
    with transaction.atomic():
        assert titles() == []


def test_an_untenanted_task_on_the_same_connection_reads_nothing(data):
    with run_as(data["a"]):
        inject(data["b"])
    with eager_tasks(propagates=True):
        result = note_summary.delay().get()
    assert (result["tenant_id"], result["titles"]) == (None, [])


def test_the_scope_enters_the_tenant_once_in_its_transaction(data):
    with wire() as sent, run_as(data["a"]):
        assert Note.objects.count() == 2
        assert Note.objects.count() == 2
    entered = [m for m in sent if m.startswith("Parse") and ENTER_FUNCTION in m]
    assert len(entered) == 1


def test_the_policy_still_uses_the_tenant_id_index(data):
    with run_as(data["a"]):
        raw("SET LOCAL enable_seqscan = off")
        plan = raw("EXPLAIN (FORMAT JSON) SELECT title FROM test_notes WHERE score >= 0")[0][0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    conditions = []
    nodes = [plan[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        conditions.append(node.get("Index Cond", ""))
        nodes += node.get("Plans", [])
    # The InitPlan that verifies the context, printed "$0" before PostgreSQL 17.
    assert any(
        re.search(r"tenant_id = (\$\d|\(InitPlan \d)", condition) for condition in conditions
    ), plan


def test_a_session_level_tenant_left_by_someone_else_reads_as_none():
    # Set at session level outside any scope (a pooled connection used by other code first).
    raw("SELECT set_config(%s, %s, false)", [SETTING, str(uuid.uuid4())])
    assert raw("SELECT count(*) FROM test_notes") == [(0,)]
    with pytest.raises(IntegrityError, match="no tenant in scope"), transaction.atomic():
        Note.objects.create(title="orphan")
