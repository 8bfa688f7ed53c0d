"""The registry: roles init and the harness let the app role enter, paths the middleware skips."""

from __future__ import annotations

import uuid

import pytest
from django.apps import apps
from django.core.management import CommandError
from django.db import connection

from better_core.roles import ensure_role_sql
from better_tenant import registry, resolvers
from better_tenant.testing import connected_as_owner
from tests.tenant.test_command import app_role, as_owner, fetch, membership, run
from tests.tenant.test_middleware import BASE, assert_not_resolved, assert_sees

CONSOLE_PATH = "/.well-known/better/console/health"


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch):
    """What a test registers is gone afterwards, and what it unregisters comes back."""
    monkeypatch.setattr(registry, "_roles", dict(registry._roles))
    monkeypatch.setattr(registry, "_exempt_paths", dict(registry._exempt_paths))
    resolvers.plan.cache_clear()
    yield
    resolvers.plan.cache_clear()


@pytest.fixture
def fresh_roles():
    """Names of an app role (created NOINHERIT, as init expects) and of roles init creates."""
    suffix = uuid.uuid4().hex[:8]
    names = {kind: f"reg_{kind}_{suffix}" for kind in ("app", "system", "extra", "admin")}
    as_owner(f'CREATE ROLE "{names["app"]}" NOLOGIN NOINHERIT')
    yield names
    quoted = ", ".join(f'"{name}"' for name in names.values())
    existing = [
        f'"{name}"'
        for (name,) in fetch(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [list(names.values())]
        )
    ]
    as_owner(
        f"GRANT {', '.join(existing)} TO CURRENT_USER",
        f"DROP OWNED BY {', '.join(existing)}",
        f"DROP ROLE IF EXISTS {quoted}",
    )


def register_extra(name: str) -> registry.RegisteredRole:
    return registry.register_role(
        "tests.extra",
        lambda: name,
        label="the test app's reviewer role",
        purpose="for reviews",
        setting="TEST_REVIEWER_ROLE",
        ensure_sql=ensure_role_sql,
    )


# --- the roles -----------------------------------------------------------------------------------


def test_registering_a_key_again_replaces_the_role():
    registry.register_role("tests.twice", "first", label="a role")
    registry.register_role("tests.twice", "second", label="a role")
    names = [r.role_name() for r in registry.registered_roles() if r.key == "tests.twice"]
    assert names == ["second"]
    registry.unregister_role("tests.twice")
    registry.unregister_role("tests.twice")
    assert "tests.twice" not in {r.key for r in registry.registered_roles()}


def test_better_audit_registers_its_admin_role_from_the_settings(settings):
    (role,) = [r for r in registry.registered_roles() if r.key == "better_audit.admin"]
    settings.BETTER_AUDIT = {
        **settings.BETTER_AUDIT,
        "INTEGRITY": {"ADMIN_ROLE": "audit_admin_elsewhere"},
    }
    assert role.role_name() == "audit_admin_elsewhere"
    assert role.describe() == "better_audit's admin role, for purge, seal and verify"


@pytest.mark.django_db(transaction=True)
def test_init_creates_and_grants_a_registered_role_and_says_so(settings, fresh_roles):
    app, extra = fresh_roles["app"], fresh_roles["extra"]
    settings.BETTER_TENANT = {"SYSTEM_ROLE": fresh_roles["system"]}
    settings.BETTER_AUDIT = {
        **settings.BETTER_AUDIT,
        "INTEGRITY": {"ADMIN_ROLE": fresh_roles["admin"]},
    }
    register_extra(extra)
    with connected_as_owner():
        dry, _ = run("init", "--app-role", app, "--dry-run")
    assert f'CREATE ROLE "{extra}" NOLOGIN' in dry
    assert fetch("SELECT 1 FROM pg_roles WHERE rolname = %s", [extra]) == []
    with connected_as_owner():
        out, _ = run("init", "--app-role", app)
    lines = out.splitlines()
    assert lines[1:4] == [
        f"✓ {app} may SET ROLE {fresh_roles['system']} (for run_as_system) without inheriting it",
        f"✓ {app} may SET ROLE {fresh_roles['admin']} (better_audit's admin role, for purge, "
        "seal and verify) without inheriting it",
        f"✓ {app} may SET ROLE {extra} (the test app's reviewer role, for reviews) without "
        "inheriting it",
    ]
    assert membership(extra, app) == (False, True)
    assert membership(fresh_roles["admin"], app) == (False, True)


@pytest.mark.django_db(transaction=True)
def test_init_grants_no_role_that_is_not_registered(settings, fresh_roles):
    app, admin = fresh_roles["app"], fresh_roles["admin"]
    settings.BETTER_TENANT = {"SYSTEM_ROLE": fresh_roles["system"]}
    settings.BETTER_AUDIT = {**settings.BETTER_AUDIT, "INTEGRITY": {"ADMIN_ROLE": admin}}
    # As without better_audit installed: its ready() registers nothing.
    registry.unregister_role("better_audit.admin")
    with connected_as_owner():
        out, _ = run("init", "--app-role", app)
    assert "better_audit" not in out
    assert [line for line in out.splitlines() if "may SET ROLE" in line] == [
        f"✓ {app} may SET ROLE {fresh_roles['system']} (for run_as_system) without inheriting it"
    ]
    assert fetch("SELECT 1 FROM pg_roles WHERE rolname = %s", [admin]) == []
    assert membership(fresh_roles["system"], app) == (False, True)


@pytest.mark.django_db
def test_init_refuses_a_registered_role_as_app_role():
    register_extra("reg_reviewer")
    with pytest.raises(
        CommandError,
        match=(
            r"--app-role: reg_reviewer is the test app's reviewer role \(TEST_REVIEWER_ROLE\); "
            "name the role the application connects as"
        ),
    ):
        run("init", "--app-role", "reg_reviewer")


@pytest.mark.django_db
def test_the_harness_lets_the_app_role_enter_every_registered_role():
    roles = [role.role_name() for role in registry.registered_roles()]
    assert roles, "better_audit registers its admin role"
    for role in roles:
        assert membership(role, app_role()) == (False, True), role
    with connection.cursor() as cursor:
        for role in roles:
            cursor.execute(f'SET ROLE "{role}"')
            cursor.execute("SELECT current_user")
            assert cursor.fetchone() == (role,)
            cursor.execute("RESET ROLE")


# --- the paths -----------------------------------------------------------------------------------


@pytest.fixture
def middleware(settings):
    """The tenant middleware alone, resolving from the header, with no EXEMPT_PATHS."""
    settings.BETTER_TENANT = {"HEADER": BASE["HEADER"]}
    settings.MIDDLEWARE = ["better_tenant.middleware.TenantMiddleware"]
    return settings


@pytest.mark.urls("tests.testapp.urls")
@pytest.mark.django_db
def test_a_registered_prefix_is_skipped_and_other_paths_are_resolved(client, middleware, acme):
    assert_not_resolved(client.get("/public/state"))
    registry.register_exempt_path("/public/")
    registry.register_exempt_path("/public/")
    skipped = client.get("/public/state", headers={"X-Tenant-ID": acme.slug})
    assert skipped.status_code == 200, skipped.content
    assert skipped.json()["tenant_id"] is None
    assert skipped.json()["visible_notes"] == 0
    assert_not_resolved(client.get("/notes"))
    assert_sees(
        client.get("/notes", headers={"X-Tenant-ID": acme.slug}), acme, ["acme-1", "acme-2"]
    )

    registry.unregister_exempt_path("/public/")
    assert_not_resolved(client.get("/public/state"))


def test_a_prefix_must_be_a_path():
    with pytest.raises(ValueError, match="starts with '/'"):
        registry.register_exempt_path("public/")


def test_the_console_declares_its_protocol_path_while_installed(monkeypatch, middleware):
    assert "/.well-known/better/" in registry.exempt_paths()
    assert not resolvers.plan().applies_to(CONSOLE_PATH)

    # As without better_console installed: no path of its own is skipped.
    installed = apps.get_app_configs

    def without_console():
        return [config for config in installed() if config.name != "better_console"]

    monkeypatch.setattr(apps, "get_app_configs", without_console)
    resolvers.plan.cache_clear()
    assert registry.exempt_paths() == ()
    assert resolvers.plan().applies_to(CONSOLE_PATH)


def test_an_app_config_with_a_bad_prefix_is_named(monkeypatch):
    config = apps.get_app_config("testapp")
    monkeypatch.setattr(config, registry.EXEMPT_PATHS_ATTRIBUTE, ("status/",), raising=False)
    with pytest.raises(ValueError, match=r"TestappConfig\.tenant_exempt_paths.*'status/'"):
        registry.exempt_paths()
