"""Without better_tenant: the tenancy shortcuts are plain transactions, audit rows no tenant's."""

from __future__ import annotations

import uuid
from contextlib import nullcontext

import pytest
from django.apps import apps
from django.db import connection, transaction

import better_audit as audit
from better_audit.models import AuditLog
from better_tenant import shortcuts
from better_tenant.registry import registered_roles
from tests.projects.no_tenant.models import Order

pytestmark = pytest.mark.django_db


def roles() -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, session_user")
        return cursor.fetchone()


def test_every_app_but_better_tenant_is_installed():
    names = ("tenant", "audit", "console", "webhooks", "mail")
    installed = {name for name in names if apps.is_installed(f"better_{name}")}
    assert installed == {"audit", "console", "webhooks", "mail"}
    assert shortcuts.tenancy_installed() is False
    # better_audit registers its admin role with better_tenant only when that is installed.
    assert registered_roles() == ()


def test_the_shortcuts_answer_for_code_that_runs_everywhere():
    assert shortcuts.current_tenant_id() is None
    assert shortcuts.in_system_mode() is True
    some = uuid.uuid4()
    assert shortcuts.to_tenant_id(str(some)) == some
    with pytest.raises(ValueError):
        shortcuts.to_tenant_id("acme")
    with pytest.raises(LookupError, match="needs better_tenant"):
        shortcuts.narrowed_scope(some)


def test_system_scope_is_a_plain_transaction():
    outer = connection.in_atomic_block
    with shortcuts.system_scope():
        assert connection.in_atomic_block
        # No role is entered: the block runs as the app role itself.
        current, session = roles()
        assert current == session
        Order.objects.create(number="kept")
    with pytest.raises(RuntimeError), shortcuts.system_scope():
        Order.objects.create(number="rolled back")
        raise RuntimeError
    assert connection.in_atomic_block == outer
    assert list(Order.objects.values_list("number", flat=True)) == ["kept"]


def test_tenant_scope_and_captured_scope_add_nothing_to_an_open_transaction():
    with transaction.atomic():
        # Any tenant's rows are the caller's to write: no savepoint, no scope to re-enter.
        assert isinstance(shortcuts.tenant_scope(uuid.uuid4()), nullcontext)
        assert isinstance(shortcuts.captured_scope()(), nullcontext)


def test_capture_writes_entries_with_no_tenant():
    with audit.audit_context(actor_id="ops-1"):
        order = Order.objects.create(number="A-1", total=5)
        order.total = 9
        order.save()
    insert, update = AuditLog.objects.filter(table_name="no_tenant_orders").order_by("timestamp")
    assert (insert.operation, update.operation) == ("INSERT", "UPDATE")
    assert insert.after_data == {"id": order.pk, "number": "A-1", "total": 5}
    assert update.diff == {"changed_fields": ["total"]}
    assert {(e.tenant_id, e.actor_id) for e in (insert, update)} == {(None, "ops-1")}
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM audit_logs WHERE tenant_id IS NULL")
        assert cursor.fetchone() == (2,)


def test_the_tables_with_a_tenant_id_have_no_tenant_policies():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.relrowsecurity FROM pg_class c "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' "
            "WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace ORDER BY 1"
        )
        tables = dict(cursor.fetchall())
    assert set(tables) == {
        "audit_logs",
        "mail_attempts",
        "mail_logs",
        "webhook_deliveries",
        "webhook_delivery_attempts",
        "webhook_endpoints",
        "webhook_messages",
    }
    # audit_logs has row-level security of its own, with no tenant in it: only the owner's
    # functions insert (better_audit.trail).
    assert tables.pop("audit_logs") is True
    assert not any(tables.values())
