"""Tenant scopes: transaction-local settings, nesting, savepoints, async and decorators."""

import asyncio
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections, transaction

from better_tenant import get_context, get_tenant, no_tenant, run_as, run_as_system
from better_tenant.context import require_tenant_id
from better_tenant.errors import CrossTenantWrite
from better_tenant.exceptions import InvalidTenantId, ScopeConflict, TenantScopeRequired
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db


def db_tenant() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT better_tenant_current()::text, current_user")
        setting, user = cursor.fetchone()
    return setting or "", user


def test_run_as_sets_the_database_and_the_context(tenant):
    with run_as(tenant) as ctx:
        assert ctx.tenant_id == tenant.pk
        assert get_context().tenant_id == tenant.pk
        assert get_tenant() == tenant
        assert db_tenant()[0] == str(tenant.pk)
    assert get_context().tenant_id is None
    assert get_tenant() is None


def test_accepts_uuid_string_and_instance(tenant):
    for value in (tenant, tenant.pk, str(tenant.pk)):
        with run_as(value):
            assert get_context().tenant_id == tenant.pk


@pytest.mark.parametrize("bad", ["acme", "", None, 42, "1' OR '1'='1"])
def test_rejects_values_that_are_not_tenant_ids(bad):
    with pytest.raises(InvalidTenantId, match="not a tenant id"):
        run_as(bad)


def test_nested_scopes_restore_the_outer_tenant(tenant, other_tenant):
    with run_as(tenant):
        Note.objects.create(title="outer")
        with run_as(other_tenant):
            Note.objects.create(title="inner")
            assert db_tenant()[0] == str(other_tenant.pk)
            assert list(Note.objects.values_list("title", flat=True)) == ["inner"]
        # The inner savepoint was released, which keeps set_config values: the scope restores them.
        assert db_tenant()[0] == str(tenant.pk)
        assert list(Note.objects.values_list("title", flat=True)) == ["outer"]


def test_inner_exception_restores_outer_tenant_and_rolls_back_inner_writes(tenant, other_tenant):
    with run_as(tenant):
        with pytest.raises(RuntimeError), run_as(other_tenant):
            Note.objects.create(title="lost")
            raise RuntimeError("boom")
        assert get_context().tenant_id == tenant.pk
        assert db_tenant()[0] == str(tenant.pk)
    with run_as(other_tenant):
        assert not Note.objects.exists()


def test_caught_database_error_inside_scope_does_not_leak_the_inner_tenant(tenant, other_tenant):
    with run_as(tenant):
        with run_as(other_tenant):
            with pytest.raises(CrossTenantWrite), transaction.atomic():
                Note.objects.create(title="x", tenant_id=tenant.pk)  # refused by WITH CHECK
            Note.objects.create(title="kept")
        assert db_tenant()[0] == str(tenant.pk)
        assert not Note.objects.filter(title="kept").exists()
    with run_as(other_tenant):
        assert Note.objects.filter(title="kept").exists()


def test_system_mode_switches_role_and_back(tenant, other_tenant):
    from django.db import connection

    from better_tenant.conf import tenant_settings

    # Whatever roles the suite runs as (DATABASE_URL, SYSTEM_ROLE), not fixed names.
    with connection.cursor() as cursor:
        cursor.execute("SELECT session_user")
        app_role = cursor.fetchone()[0]
    system_role = tenant_settings.SYSTEM_ROLE
    with run_as(tenant):
        Note.objects.create(title="a")
    with run_as(other_tenant):
        Note.objects.create(title="b")
    with run_as_system() as ctx:
        assert ctx.is_system
        assert db_tenant()[1] == system_role
        assert Note.objects.count() == 2
        with run_as(tenant):
            assert db_tenant()[1] == app_role
            assert Note.objects.count() == 1
        assert db_tenant()[1] == system_role
        assert Note.objects.count() == 2
    assert db_tenant()[1] == app_role
    assert Note.objects.count() == 0


def test_no_tenant_scope_hides_rows_inside_a_tenant(tenant):
    with run_as(tenant):
        Note.objects.create(title="a")
        with no_tenant():
            assert Note.objects.count() == 0
        assert Note.objects.count() == 1


def test_decorator_form_enters_a_fresh_scope_per_call(tenant, other_tenant):
    @run_as(tenant)
    def visible():
        return get_context().tenant_id

    assert visible() == tenant.pk
    assert visible() == tenant.pk
    with run_as(other_tenant):
        assert visible() == tenant.pk
        assert get_context().tenant_id == other_tenant.pk


def test_require_tenant_id_explains_what_to_do():
    with pytest.raises(TenantScopeRequired, match="run_as"):
        require_tenant_id()


@pytest.mark.django_db(transaction=True)
def test_setting_reads_empty_after_the_transaction_and_default_gives_null():
    # A transaction-local set leaves '' (not NULL) for the session: the NULLIF in the column default
    # and the policy is what makes that safe.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('app.current_tenant', %s, true)", [str(uuid.uuid4())])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('app.current_tenant', true), "
            "NULLIF(current_setting('app.current_tenant', true), '')::uuid"
        )
        assert cursor.fetchone() == ("", None)


@pytest.mark.django_db(transaction=True)
def test_async_with_scopes_switch_tenants_in_sequence(tenant, other_tenant):
    for t in (tenant, other_tenant):
        with run_as(t):
            Note.objects.create(title=str(t.pk))

    async def main():
        seen = []
        for t in (tenant, other_tenant, tenant):
            async with run_as(t):
                seen.append(([n.title async for n in Note.objects.all()], get_context().tenant_id))
            seen.append(await Note.objects.acount())
        await sync_to_async(connections.close_all)()
        return seen

    a, b = str(tenant.pk), str(other_tenant.pk)
    expected = [([a], tenant.pk), 0, ([b], other_tenant.pk), 0, ([a], tenant.pk), 0]
    assert asyncio.run(main()) == expected


@pytest.mark.django_db(transaction=True)
def test_concurrent_scopes_on_one_connection_are_refused(tenant, other_tenant):
    async def read(t):
        async with run_as(t):
            await asyncio.sleep(0.01)
            return await Note.objects.acount()

    async def main():
        return await asyncio.gather(read(tenant), read(other_tenant), return_exceptions=True)

    results = asyncio.run(main())
    asyncio.run(sync_to_async(connections.close_all)())
    assert any(isinstance(r, ScopeConflict) for r in results), results
    assert get_context().tenant_id is None


@pytest.mark.django_db(transaction=True)
def test_async_decorator(tenant):
    @run_as(tenant)
    async def count():
        return await Note.objects.acount(), get_context().tenant_id

    with run_as(tenant):
        Note.objects.create(title="x")

    async def main():
        result = await count()
        await sync_to_async(connections.close_all)()
        return result

    assert asyncio.run(main()) == (1, tenant.pk)
