"""ASYNC_WRITE: entries leave through Celery after commit; failures reach ON_ERROR."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import transaction
from django.test import override_settings

import better_audit as audit
from better_audit import tasks
from better_tenant import run_as
from tests.support.audit import logs
from tests.testapp.celery import app
from tests.testapp.models import Invoice, Label

pytestmark = pytest.mark.django_db

ASYNC = {"TABLES": ["test_invoices", "test_labels"], "ASYNC_WRITE": True}
errors: list[tuple[BaseException, object]] = []


def record_error(exc, entry):
    errors.append((exc, entry))


@pytest.fixture(autouse=True)
def eager_celery():
    """Tasks run in-process (the worker path is the same task body)."""
    errors.clear()
    saved = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = saved


def test_entries_are_written_only_after_commit(tenant, django_capture_on_commit_callbacks):
    with override_settings(BETTER_AUDIT=ASYNC):
        with django_capture_on_commit_callbacks() as callbacks, run_as(tenant):
            invoice = Invoice.objects.create(number="A-1")
            invoice.paid = True
            invoice.save()
            assert logs() == []
        assert len(callbacks) == 2
        for callback in callbacks:
            callback()
    insert, update = logs()
    assert (insert.operation, update.operation) == ("INSERT", "UPDATE")
    assert update.diff == {"changed_fields": ["paid"]}
    assert insert.tenant_id == update.tenant_id == tenant.pk


def test_nothing_is_sent_for_a_rolled_back_change(django_capture_on_commit_callbacks):
    with (
        override_settings(BETTER_AUDIT=ASYNC),
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        Label.objects.create(name="gone")
        raise RuntimeError
    assert callbacks == []
    assert logs() == []


def test_per_call_async_write_overrides_the_setting(django_capture_on_commit_callbacks):
    with override_settings(BETTER_AUDIT=ASYNC):
        audit.capture_log("test_labels", "INSERT", "sync", after={"id": "sync"}, async_write=False)
        assert [r.record_id for r in logs()] == ["sync"]
    with django_capture_on_commit_callbacks(execute=True):
        audit.capture_log("test_labels", "INSERT", "async", after={"id": "async"}, async_write=True)
        assert len(logs()) == 1
    assert [r.record_id for r in logs()] == ["sync", "async"]


def test_a_broker_failure_goes_to_on_error(django_capture_on_commit_callbacks):
    settings = {**ASYNC, "ON_ERROR": "tests.audit.test_async_write.record_error"}
    with (
        override_settings(BETTER_AUDIT=settings),
        mock.patch.object(tasks.write_entries, "apply_async", side_effect=ConnectionError("down")),
        django_capture_on_commit_callbacks(execute=True),
    ):
        Label.objects.create(name="a")
    assert logs() == []
    [(exc, entry)] = errors
    assert isinstance(exc, ConnectionError)
    assert (entry.table_name, entry.operation) == ("test_labels", "INSERT")


def test_a_failed_write_in_the_task_goes_to_on_error_and_after_hooks_run_on_success():
    written = []
    audit.on_after_log(lambda entry: written.append(entry.record_id))
    entry = audit.capture_log("test_labels", "INSERT", "ok", after={"id": "ok"}, async_write=False)
    payload = dict(entry.as_dict(), id="00000000-0000-0000-0000-000000000001", record_id="x")
    broken = dict(payload, id="00000000-0000-0000-0000-000000000002", severity="urgent")
    settings = {**ASYNC, "ON_ERROR": record_error}
    with override_settings(BETTER_AUDIT=settings):
        assert tasks.write_entries.delay([payload], "default").get() == 1
        # Redelivery writes nothing twice.
        assert tasks.write_entries.delay([payload], "default").get() == 0
        assert tasks.write_entries.delay([broken], "default").get() == 0
    assert sorted(r.record_id for r in logs()) == ["ok", "x"]
    assert written == ["ok", "x"]
    [(_, failed)] = errors
    assert failed.severity == "urgent"


def test_system_check_asks_for_on_error_with_async_writes():
    from better_audit.checks import check_configuration

    with override_settings(BETTER_AUDIT=ASYNC):
        assert [m.id for m in check_configuration()] == ["better_audit.W002"]
    with override_settings(BETTER_AUDIT={**ASYNC, "ON_ERROR": record_error}):
        assert check_configuration() == []
