"""pytest plugin and helpers for testing code that uses better_tenant.

Loaded automatically through the ``pytest11`` entry point. Fixtures: ``tenant_factory``,
``tenant``, ``other_tenant``, ``as_tenant``, ``as_system`` and ``assert_tenant_isolated``.
``django_db_setup_with_roles`` creates and migrates the test database as the owner role and runs
the tests as the application role; enable it in a ``conftest.py`` with
``from better_tenant.testing import django_db_setup_with_roles as django_db_setup`` and set
``DATABASES[alias]["TEST"]["OWNER"] = {"USER": ..., "PASSWORD": ...}``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest


@contextlib.contextmanager
def connected_as_owner(aliases: list[str] | None = None) -> Iterator[None]:
    """Reconnect the given aliases (default: all with a TEST OWNER) as their owner role."""
    from django.db import connections

    swapped = []
    for alias in aliases or list(connections):
        conn = connections[alias]
        owner = (conn.settings_dict.get("TEST") or {}).get("OWNER")
        if not owner:
            continue
        saved = {key: conn.settings_dict.get(key) for key in owner}
        conn.close()
        conn.settings_dict.update(owner)
        swapped.append((conn, saved))
    try:
        yield
    finally:
        for conn, saved in swapped:
            conn.close()
            conn.settings_dict.update(saved)


@pytest.fixture(scope="session")
def django_db_setup_with_roles(
    request: pytest.FixtureRequest,
    django_test_environment: None,
    django_db_blocker: Any,
    django_db_keepdb: bool,
    django_db_createdb: bool,
    django_db_modify_db_settings: None,
) -> Iterator[None]:
    """Create and migrate the test databases as the owner; tests then connect as the app role."""
    from django.db import connections
    from django.test import TransactionTestCase
    from django.test.utils import setup_databases, teardown_databases

    from better_tenant.conf import tenant_settings
    from better_tenant.registry import registered_roles
    from better_tenant.sql import grant_privileges_sql, membership_sql, revoke_temporary_sql

    keepdb = django_db_keepdb and not django_db_createdb
    app_users = {alias: connections[alias].settings_dict["USER"] for alias in connections}
    with django_db_blocker.unblock(), connected_as_owner():
        db_cfg = setup_databases(
            verbosity=request.config.option.verbose, interactive=False, keepdb=keepdb
        )
        for alias in connections:
            conn = connections[alias]
            owner = (conn.settings_dict.get("TEST") or {}).get("OWNER")
            if owner:
                with conn.cursor() as cursor:
                    cursor.execute(
                        grant_privileges_sql(
                            owner.get("USER"), app_users[alias], tenant_settings.SYSTEM_ROLE
                        )
                    )
                    # The roles of the apps' privileged paths (their migrations made them).
                    for role in registered_roles():
                        cursor.execute(membership_sql(app_users[alias], role.role_name()))
                    # As `better_tenant init` does: nothing temporary for the app role.
                    cursor.execute(revoke_temporary_sql())

    with django_db_blocker.unblock():
        refusal = _bypassing_role()
        if refusal and not keepdb:
            with connected_as_owner():
                teardown_databases(db_cfg, verbosity=request.config.option.verbose)
    if refusal:
        # One line instead of isolation tests failing (or, worse, passing) one by one.
        pytest.exit(refusal, returncode=pytest.ExitCode.USAGE_ERROR)

    # Django empties tables between transactional tests with TRUNCATE, which the app role may
    # not do (TRUNCATE ignores RLS); run that cleanup as the owner.
    # _fixture_teardown is private to Django, so the stubs leave it out.
    original_teardown = TransactionTestCase._fixture_teardown  # type: ignore[attr-defined]

    def _fixture_teardown(self: Any) -> None:
        with connected_as_owner():
            original_teardown(self)

    TransactionTestCase._fixture_teardown = _fixture_teardown  # type: ignore[attr-defined]
    yield
    TransactionTestCase._fixture_teardown = original_teardown  # type: ignore[attr-defined]
    if not keepdb:
        with django_db_blocker.unblock(), connected_as_owner():
            teardown_databases(db_cfg, verbosity=request.config.option.verbose)


def _bypassing_role() -> str | None:
    """One line saying why the tests cannot run, when a connection's role ignores RLS."""
    from django.db import connections

    for alias in connections:
        conn = connections[alias]
        if conn.vendor != "postgresql":
            continue
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles "
                "WHERE rolname = current_user"
            )
            user, superuser, bypass = cursor.fetchone()
        conn.close()
        if superuser or bypass:
            what = "a superuser" if superuser else "a role with BYPASSRLS"
            return (
                f"The tests of database {alias!r} connect as {user}, {what}: row-level security "
                "would not apply, so tenant isolation cannot be tested. Connect as an application "
                "role without SUPERUSER and BYPASSRLS (DATABASES[alias]['USER'])."
            )
    return None


# --- fixtures for tenant-aware tests ------------------------------------------------------------


@pytest.fixture
def tenant_factory(db: None) -> Callable[..., Any]:
    """Create tenants (in system mode): ``tenant_factory(name=None, slug=None)``."""
    from better_tenant.api import create_tenant

    def make(name: str | None = None, slug: str | None = None) -> Any:
        suffix = uuid.uuid4().hex[:8]
        return create_tenant(name or f"Tenant {suffix}", slug or f"tenant-{suffix}")

    return make


@pytest.fixture
def tenant(tenant_factory: Callable[..., Any]) -> Any:
    """A fresh tenant."""
    return tenant_factory()


@pytest.fixture
def other_tenant(tenant_factory: Callable[..., Any]) -> Any:
    """A second fresh tenant, for isolation tests."""
    return tenant_factory()


@pytest.fixture
def as_tenant() -> Callable[..., Any]:
    """``with as_tenant(t): ...`` runs the block as tenant ``t`` (same as ``run_as``)."""
    from better_tenant.context import run_as

    return run_as


@pytest.fixture
def as_system() -> Callable[..., Any]:
    """``with as_system(): ...`` runs the block in system mode (same as ``run_as_system``)."""
    from better_tenant.context import run_as_system

    return run_as_system


class IsolationError(AssertionError):
    """A tenant could see or change another tenant's row."""


def assert_tenant_isolated(
    model: Any,
    create: Callable[[], Any] | dict[str, Any] | None = None,
    *,
    tenants: tuple[Any, Any] | None = None,
) -> None:
    """Prove that rows of ``model`` written as one tenant are invisible to another.

    ``create`` makes one row in the current tenant: a callable, or field values for
    ``model.objects.create``. Two throwaway tenants are made unless ``tenants`` is given. Every
    probe runs in a savepoint that is rolled back, so nothing is left behind. Raises
    ``IsolationError`` naming the first leak.
    """
    from django.db import DatabaseError, connection, transaction

    from better_tenant.api import create_tenant
    from better_tenant.context import no_tenant, run_as

    def make_row() -> Any:
        if callable(create):
            return create()
        return model.objects.create(**(create or {}))

    with transaction.atomic():
        sid = connection.savepoint()
        try:
            if tenants is None:
                suffix = uuid.uuid4().hex[:8]
                tenants = (
                    create_tenant(f"Isolation A {suffix}", f"isolation-a-{suffix}"),
                    create_tenant(f"Isolation B {suffix}", f"isolation-b-{suffix}"),
                )
            first, second = tenants
            with run_as(first):
                row = make_row()
                pk = row.pk
            table = model._meta.db_table
            with run_as(second):
                if model._default_manager.filter(pk=pk).exists():
                    raise IsolationError(
                        f"{table}: another tenant's row is visible through the ORM."
                    )
                with connection.cursor() as cursor:
                    cursor.execute(
                        f'SELECT count(*) FROM "{table}" WHERE tenant_id = %s',
                        [str(getattr(first, "pk", first))],
                    )
                    if cursor.fetchone()[0]:
                        raise IsolationError(
                            f"{table}: another tenant's rows are visible to raw SQL."
                        )
                if model._default_manager.filter(pk=pk).update(
                    tenant_id=getattr(second, "pk", second)
                ):
                    raise IsolationError(f"{table}: another tenant's row could be updated.")
                if model._default_manager.filter(pk=pk).delete()[0]:
                    raise IsolationError(f"{table}: another tenant's row could be deleted.")
                if not callable(create):
                    values = {**(create or {}), "tenant_id": getattr(first, "pk", first)}
                    try:
                        with transaction.atomic():
                            model._default_manager.create(**values)
                    except DatabaseError:
                        pass
                    else:
                        raise IsolationError(
                            f"{table}: a row could be written into another tenant."
                        )
            with no_tenant():
                if model._default_manager.filter(pk=pk).exists():
                    raise IsolationError(f"{table}: a row is visible with no tenant in scope.")
            with run_as(first):
                if not model._default_manager.filter(pk=pk).exists():
                    raise IsolationError(f"{table}: the owning tenant cannot see its own row.")
        finally:
            # No savepoint id outside a transaction, where rolling back to one does nothing.
            if sid is not None:
                transaction.savepoint_rollback(sid)


@pytest.fixture(name="assert_tenant_isolated")
def assert_tenant_isolated_fixture(db: None) -> Callable[..., None]:
    """The ``assert_tenant_isolated`` helper, with database access enabled."""
    return assert_tenant_isolated
