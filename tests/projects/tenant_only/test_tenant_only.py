"""better_tenant alone: init grants no audit role, no console path is exempt, checks pass."""

from __future__ import annotations

import io
import uuid

import pytest
from django.apps import apps
from django.core import checks
from django.core.management import call_command
from django.db import connection

from better_core.embedded import AUDIT_ADMIN_ROLE
from better_tenant import resolvers, run_as
from better_tenant.conf import tenant_settings
from better_tenant.keys import current_key, fingerprint
from better_tenant.middleware import ERROR_CODE
from better_tenant.registry import exempt_paths, registered_roles
from better_tenant.sql import KEY_SEQUENCES
from better_tenant.testing import assert_tenant_isolated, connected_as_owner
from tests.projects.tenant_only.models import Note

CONSOLE_PATH = "/.well-known/better/probe"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("better_tenant", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def fetch(query: str, params: list | tuple = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def as_owner(*statements: str) -> None:
    with connected_as_owner(), connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def is_member(role: str, member: str) -> bool:
    return bool(
        fetch(
            "SELECT 1 FROM pg_auth_members m "
            "WHERE m.roleid = (SELECT oid FROM pg_roles WHERE rolname = %s) "
            "AND m.member = (SELECT oid FROM pg_roles WHERE rolname = %s)",
            [role, member],
        )
    )


def test_only_better_tenant_of_the_apps_is_installed():
    names = ("tenant", "audit", "console", "webhooks", "mail")
    assert {name for name in names if apps.is_installed(f"better_{name}")} == {"tenant"}
    # Nothing registered a role for init or a path for the middleware to skip.
    assert registered_roles() == ()
    assert exempt_paths() == ()


@pytest.mark.django_db(transaction=True)
def test_init_grants_the_system_role_and_no_audit_role(settings):
    # Fresh roles, so that init really grants (the suite's app role has every membership).
    suffix = uuid.uuid4().hex[:8]
    app, system = f"init_app_{suffix}", f"init_system_{suffix}"
    settings.BETTER_TENANT = {**settings.BETTER_TENANT, "SYSTEM_ROLE": system}
    # better_audit's admin role exists on the server (roles are shared by every database), so
    # only init could have left the app role out of it.
    assert fetch("SELECT 1 FROM pg_roles WHERE rolname = %s", [AUDIT_ADMIN_ROLE]) == [(1,)]
    as_owner(f'CREATE ROLE "{app}" NOLOGIN NOINHERIT')
    try:
        with connected_as_owner():
            dry = run("init", "--app-role", app, "--dry-run")
            out = run("init", "--app-role", app)
        assert f"quote_ident('{system}') || ' TO ' || quote_ident('{app}')" in dry
        assert AUDIT_ADMIN_ROLE not in dry and "better_audit" not in dry
        owner = connection.settings_dict["TEST"]["OWNER"]["USER"]
        assert out.splitlines() == [
            f"✓ system role {system} exists",
            f"✓ {app} may SET ROLE {system} (for run_as_system) without inheriting it",
            "✓ granted SELECT, INSERT, UPDATE, DELETE on tables and sequence use in public to "
            f"{app} and {system}, also for tables {owner} creates later",
            f"✓ signed context: 1 live key(s) ({fingerprint(current_key())}), "
            f"readable by {owner} alone",
            f"✓ only {owner} may create temporary objects in this database",
        ]
        assert fetch(
            "SELECT bool_or(has_sequence_privilege(%s, n, 'SELECT,USAGE,UPDATE')) "
            "FROM unnest(%s::text[]) AS n",
            [app, list(KEY_SEQUENCES)],
        ) == [(False,)]
        assert is_member(system, app)
        assert not is_member(AUDIT_ADMIN_ROLE, app)
    finally:
        as_owner(
            f'GRANT "{app}", "{system}" TO CURRENT_USER',
            f'DROP OWNED BY "{app}", "{system}"',
            f'DROP ROLE IF EXISTS "{app}", "{system}"',
        )


@pytest.mark.django_db
def test_the_middleware_applies_to_the_console_prefix(client, tenant, other_tenant):
    assert resolvers.plan().applies_to(CONSOLE_PATH)
    with run_as(tenant):
        Note.objects.create(title="mine")
    with run_as(other_tenant):
        Note.objects.create(title="theirs")

    refused = client.get(CONSOLE_PATH)
    assert refused.status_code == tenant_settings.MISSING_TENANT_STATUS
    assert refused.json()["code"] == ERROR_CODE

    answered = client.get(CONSOLE_PATH, HTTP_X_TENANT_ID=str(tenant.pk))
    assert answered.status_code == 200
    assert answered.json() == {"tenant": str(tenant.pk), "titles": ["mine"]}


@pytest.mark.django_db
def test_the_tenant_table_is_isolated():
    assert_tenant_isolated(Note, {"title": "secret"})


@pytest.mark.django_db
def test_system_checks_pass_with_no_other_apps_ids():
    call_command("check", databases=["default"], stdout=io.StringIO())
    messages = checks.run_checks(databases=["default"])
    assert [m for m in messages if m.is_serious()] == []
    others = ("better_audit", "better_console", "better_webhooks", "better_mail")
    assert [m.id for m in messages if (m.id or "").startswith(others)] == []


@pytest.mark.django_db
def test_the_tenant_check_command_passes():
    out = run("check")
    assert out.rstrip().splitlines()[-1].startswith("0 errors, 0 warnings")
    assert "(1 tenant table)" in out
