"""Celery tasks run as the sender's tenant: a real worker on Redis, and eager mode."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import IntegrityError

from better_core import celery as core_celery
from better_tenant import celery as tenant_celery
from better_tenant import get_context, run_as, run_as_system
from better_tenant.celery import HEADER, send_on_commit
from tests.support.celery_worker import TIMEOUT, eager_tasks, worker_fixture
from tests.testapp.celery import app
from tests.testapp.models import Note
from tests.testapp.tasks import create_note, create_note_retrying, note_summary

worker = worker_fixture(
    doc="A solo-pool worker on a queue of its own, on the test database as the app role."
)


def titles_of(tenant: Any) -> list[str]:
    with run_as(tenant):
        return sorted(Note.objects.values_list("title", flat=True))


def summary(tenant: Any, titles: list[str], is_system: bool = False) -> dict[str, Any]:
    return {
        "tenant_id": str(tenant.pk) if tenant else None,
        "is_system": is_system,
        "titles": titles,
    }


@pytest.fixture
def two_tenants(tenant_factory: Any) -> tuple[Any, Any]:
    a, b = tenant_factory(), tenant_factory()
    with run_as(a):
        Note.objects.create(title="a-1")
        Note.objects.create(title="a-2")
    with run_as(b):
        Note.objects.create(title="b-1")
    return a, b


# --- real worker ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_task_sent_in_a_tenant_sees_exactly_that_tenants_rows(worker, two_tenants):
    a, b = two_tenants
    with run_as(a):
        from_a = worker.send(note_summary)
    with run_as(b):
        from_b = worker.send(note_summary)
    assert from_a.get(timeout=TIMEOUT) == summary(a, ["a-1", "a-2"])
    assert from_b.get(timeout=TIMEOUT) == summary(b, ["b-1"])


@pytest.mark.django_db(transaction=True)
def test_task_without_a_tenant_sees_nothing_and_cannot_insert(worker, two_tenants):
    assert worker.run(note_summary) == summary(None, [])

    result = worker.send(create_note, "orphan")
    with pytest.raises(IntegrityError, match="no tenant in scope for an insert into test_notes"):
        result.get(timeout=TIMEOUT)
    assert result.state == "FAILURE"
    with run_as_system():
        assert not Note.objects.filter(title="orphan").exists()


@pytest.mark.django_db(transaction=True)
def test_system_mode_is_not_carried_but_an_explicit_header_is(worker, two_tenants):
    _, b = two_tenants
    with run_as_system():
        assert Note.objects.count() == 3
        implicit = worker.send(note_summary)
        addressed = worker.send(note_summary, headers={HEADER: str(b.pk)})
    assert implicit.get(timeout=TIMEOUT) == summary(None, [])
    assert addressed.get(timeout=TIMEOUT) == summary(b, ["b-1"])


@pytest.mark.django_db(transaction=True)
def test_task_creates_its_row_in_the_senders_tenant(worker, two_tenants):
    a, b = two_tenants
    with run_as(a):
        created = worker.run(create_note, "made-by-task")
    assert created["tenant_id"] == str(a.pk)
    # The solo worker runs one task at a time, so this one starts after the first committed.
    with run_as(a):
        assert "made-by-task" in worker.run(note_summary)["titles"]
    assert titles_of(a) == ["a-1", "a-2", "made-by-task"]
    assert titles_of(b) == ["b-1"]
    with run_as_system():
        assert str(Note.objects.get(title="made-by-task").tenant_id) == str(a.pk)


@pytest.mark.django_db(transaction=True)
def test_failing_task_rolls_back_its_writes_and_the_worker_goes_on(worker, two_tenants):
    a, _ = two_tenants
    with run_as(a):
        failed = worker.send(create_note, "doomed", True)
    with pytest.raises(RuntimeError, match="failed on purpose"):
        failed.get(timeout=TIMEOUT)
    with run_as(a):
        assert worker.run(note_summary) == summary(a, ["a-1", "a-2"])
    assert titles_of(a) == ["a-1", "a-2"]


@pytest.mark.django_db(transaction=True)
def test_retried_task_keeps_its_tenant_and_rolls_back_the_failed_attempt(worker, two_tenants):
    a, b = two_tenants
    with run_as(a):
        assert worker.run(create_note_retrying, "retry") == "retry-1"
        worker.run(note_summary)  # runs after the retried attempt has committed
    assert titles_of(a) == ["a-1", "a-2", "retry-1"]
    assert titles_of(b) == ["b-1"]


@pytest.mark.django_db(transaction=True)
def test_malformed_header_runs_the_task_with_no_tenant_and_logs_it(worker, two_tenants):
    a, _ = two_tenants
    with run_as(a):
        forged = worker.send(note_summary, headers={HEADER: "not-a-uuid"})
        assert forged.get(timeout=TIMEOUT) == summary(None, [])
        assert worker.run(note_summary) == summary(a, ["a-1", "a-2"])
    assert "'not-a-uuid', which is not a tenant UUID" in worker.log.read_text()


@pytest.mark.django_db(transaction=True)
def test_send_on_commit_sends_after_commit_with_the_tenant_and_never_on_rollback(
    worker, two_tenants
):
    a, _ = two_tenants
    committed_id, rolled_back_id = str(uuid.uuid4()), str(uuid.uuid4())
    with run_as(a):
        Note.objects.create(title="fresh")
        send_on_commit(note_summary.s().set(queue=worker.queue, task_id=committed_id))
    with pytest.raises(RuntimeError), run_as(a):
        send_on_commit(note_summary.s().set(queue=worker.queue, task_id=rolled_back_id))
        raise RuntimeError("roll back")
    assert app.AsyncResult(committed_id).get(timeout=TIMEOUT) == summary(a, ["a-1", "a-2", "fresh"])
    worker.run(note_summary)  # the queue is FIFO: anything sent before has run by now
    assert app.AsyncResult(rolled_back_id).state == "PENDING"


# --- eager mode ----------------------------------------------------------------------------------


@pytest.fixture
def eager() -> Iterator[None]:
    with eager_tasks(propagates=False):
        yield


@pytest.mark.django_db
def test_eager_task_runs_as_the_callers_tenant(eager, two_tenants):
    a, b = two_tenants
    with run_as(a):
        assert note_summary.delay().get() == summary(a, ["a-1", "a-2"])
        assert get_context().tenant_id == a.pk
    with run_as(b):
        created = create_note.delay("eager-b").get()
    assert created["tenant_id"] == str(b.pk)
    assert titles_of(b) == ["b-1", "eager-b"]


@pytest.mark.django_db
def test_eager_task_without_tenant_or_from_system_mode_sees_nothing(eager, two_tenants):
    assert note_summary.delay().get() == summary(None, [])
    with run_as_system():
        assert note_summary.delay().get() == summary(None, [])
        # The caller is back in system mode (role and all) once the task is done.
        assert get_context().is_system
        assert Note.objects.count() == 3
    _, b = two_tenants
    assert note_summary.apply_async(headers={HEADER: str(b.pk)}).get() == summary(b, ["b-1"])


@pytest.mark.django_db
def test_eager_failing_task_rolls_back_only_its_own_writes(eager, two_tenants):
    a, _ = two_tenants
    with run_as(a):
        Note.objects.create(title="caller")
        result = create_note.delay("doomed", fail=True)
        assert result.state == "FAILURE"
        assert isinstance(result.result, RuntimeError)
        assert sorted(Note.objects.values_list("title", flat=True)) == ["a-1", "a-2", "caller"]
        app.conf.task_eager_propagates = True
        with pytest.raises(RuntimeError, match="failed on purpose"):
            create_note.delay("doomed-too", fail=True)
        assert not Note.objects.filter(title__startswith="doomed").exists()
    assert titles_of(a) == ["a-1", "a-2", "caller"]


# --- wiring --------------------------------------------------------------------------------------


def test_connect_is_a_no_op_without_celery(monkeypatch):
    monkeypatch.setitem(sys.modules, "celery", None)
    assert tenant_celery.connect() is None


def test_scope_receivers_wrap_those_connected_later():
    from celery import signals

    def close_connections(**kwargs: Any) -> None:
        """Stands in for the Django fix-up's receivers, connected when the worker starts."""

    for signal in (signals.task_prerun, signals.task_postrun):
        signal.connect(close_connections, weak=False, dispatch_uid="test.close_connections")
    try:
        signals.celeryd_after_setup.send(sender="test", instance=None, conf=app.conf)
        prerun = [key[0] for key, _ in signals.task_prerun.receivers]
        postrun = [key[0] for key, _ in signals.task_postrun.receivers]
        assert prerun.index("test.close_connections") < prerun.index(core_celery.PRERUN_UID)
        assert postrun.index(core_celery.POSTRUN_UID) < postrun.index("test.close_connections")
    finally:
        for signal in (signals.task_prerun, signals.task_postrun):
            signal.disconnect(dispatch_uid="test.close_connections")
