"""`manage.py better_tenant`: init, migrate, add-table, seed and check, run as the app role."""

import dataclasses
import importlib.util
import io
import json
import uuid
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from better_tenant import inspection, run_as_system
from better_tenant.management.commands.better_tenant import migrations_app_for
from better_tenant.models import Tenant
from better_tenant.operations import EnableTenantRLS
from better_tenant.sql import POLICY_TENANT
from better_tenant.testing import connected_as_owner

ROOT = Path(__file__).resolve().parents[2]


def run(*args, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    call_command("better_tenant", *args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def as_owner(*statements):
    with connected_as_owner(), connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def fetch(query, params=()):
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def app_role() -> str:
    """The role the suite connects as, whatever DATABASE_URL names."""
    return fetch("SELECT session_user")[0][0]


def owner_role() -> str:
    return connection.settings_dict["TEST"]["OWNER"]["USER"]


def system_role() -> str:
    from better_tenant.conf import tenant_settings

    return tenant_settings.SYSTEM_ROLE


def audit_admin_role() -> str:
    from better_audit.integrity import admin_role

    return admin_role()


# --- seed ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_seed_creates_a_tenant_and_prints_its_id():
    out, _ = run("seed", "--name", "Acme Corp", "--slug", "acme-corp")
    first, second = out.splitlines()
    with run_as_system():
        tenant = Tenant.objects.get(slug="acme-corp")
    assert first == "Created tenant: Acme Corp (acme-corp)"
    assert second == str(tenant.pk)


@pytest.mark.django_db
def test_seed_derives_the_slug_from_the_name():
    out, _ = run("seed", "--name", "Globex Industries")
    assert out.startswith("Created tenant: Globex Industries (globex-industries)")
    with run_as_system():
        assert Tenant.objects.filter(slug="globex-industries").exists()


@pytest.mark.django_db
def test_seed_if_missing_leaves_an_existing_tenant_alone():
    out, _ = run("seed", "--name", "Acme", "--slug", "acme", "--if-missing")
    tenant_id = out.splitlines()[1]
    again, _ = run("seed", "--name", "Another name", "--slug", "acme", "--if-missing")
    assert again.splitlines() == ["Tenant already exists: Acme (acme)", tenant_id]
    with run_as_system():
        names = list(Tenant.objects.filter(slug="acme").values_list("name", flat=True))
    assert names == ["Acme"]


@pytest.mark.django_db
def test_seed_refuses_a_duplicate_slug_without_if_missing():
    run("seed", "--name", "Acme", "--slug", "acme")
    with pytest.raises(CommandError, match=r"--slug: .*'acme' already exists"):
        run("seed", "--name", "Acme again", "--slug", "acme")
    with run_as_system():
        assert Tenant.objects.filter(slug="acme").count() == 1


def membership(role: str, member: str) -> tuple[bool, bool] | None:
    """``(inherits, may SET ROLE)`` of ``member`` in ``role`` as the server records the grant.

    PostgreSQL 16+ records both on the grant (``pg_auth_members``); before, a member inherits
    unless the member role itself is NOINHERIT, and every member may SET ROLE.
    """
    if server_major() >= 16:
        rows = fetch(
            "SELECT m.inherit_option, m.set_option FROM pg_auth_members m "
            "WHERE m.roleid = (SELECT oid FROM pg_roles WHERE rolname = %s) "
            "AND m.member = (SELECT oid FROM pg_roles WHERE rolname = %s)",
            [role, member],
        )
    else:
        rows = fetch(
            "SELECT r.rolinherit, true FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
            "WHERE m.roleid = (SELECT oid FROM pg_roles WHERE rolname = %s) AND r.rolname = %s",
            [role, member],
        )
    return tuple(rows[0]) if rows else None


def server_major() -> int:
    return fetch("SELECT current_setting('server_version_num')::int / 10000")[0][0]


@pytest.mark.django_db(transaction=True)
def test_the_membership_is_granted_in_the_syntax_of_the_server():
    # PostgreSQL 16+: GRANT .. WITH INHERIT FALSE, SET TRUE, and the member role keeps INHERIT;
    # before: the member role is made NOINHERIT and granted plainly. Either way the member may
    # SET ROLE and holds none of the role's privileges until it does.
    from better_core.roles import membership_sql

    suffix = uuid.uuid4().hex[:8]
    member, role = f"member_{suffix}", f"switch_{suffix}"
    as_owner(
        f'CREATE ROLE "{member}" NOLOGIN INHERIT',
        f'CREATE ROLE "{role}" NOLOGIN',
        f'CREATE TABLE "t_{suffix}" (id int)',
        f'GRANT SELECT ON "t_{suffix}" TO "{role}"',
    )
    try:
        as_owner(membership_sql(member, role))
        as_owner(membership_sql(member, role))  # idempotent
        assert membership(role, member) == (False, True)
        [(inherits,)] = fetch("SELECT rolinherit FROM pg_roles WHERE rolname = %s", [member])
        assert inherits is (server_major() >= 16)
        assert fetch("SELECT pg_has_role(%s, %s, 'USAGE')", [member, role]) == [(False,)]
        assert fetch("SELECT pg_has_role(%s, %s, 'MEMBER')", [member, role]) == [(True,)]
        assert fetch("SELECT has_table_privilege(%s, %s, 'SELECT')", [member, f"t_{suffix}"]) == [
            (False,)
        ]
    finally:
        as_owner(
            f'DROP TABLE "t_{suffix}"',
            f'GRANT "{member}", "{role}" TO CURRENT_USER',
            f'DROP OWNED BY "{member}", "{role}"',
            f'DROP ROLE "{member}", "{role}"',
        )


@pytest.mark.django_db
@pytest.mark.parametrize("slug", ["Not OK", "-edge", "a--b", "x" * 64])
def test_seed_rejects_a_bad_slug_naming_the_flag(slug):
    with pytest.raises(CommandError, match=r"--slug: .*not a valid tenant slug"):
        run("seed", "--name", "Acme", f"--slug={slug}")
    with run_as_system():
        assert not Tenant.objects.exists()


@pytest.mark.django_db
def test_seed_rejects_a_blank_name():
    with pytest.raises(CommandError, match="--name"):
        run("seed", "--name", "   ")


# --- init ----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_init_dry_run_prints_the_sql_and_changes_nothing():
    app = app_role()
    with connected_as_owner():
        out, _ = run("init", "--app-role", app, "--dry-run")
    assert out.startswith(f"-- better_tenant init: run as {owner_role()}")
    assert 'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "public"' in out
    assert "TRUNCATE" not in out
    assert "WITH INHERIT FALSE, SET TRUE" in out  # the NOINHERIT membership


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "message"),
    [
        ("bad role", r"--app-role: 'bad role' is not a role name"),
        ("x;DROP", r"--app-role: 'x;DROP' is not a role name"),
        ("no_such_role_here", r"--app-role: the role 'no_such_role_here' does not exist"),
        (system_role, "--app-role: {} is the system role"),
        (app_role, "--app-role: {} is the role running init"),
    ],
)
def test_init_rejects_bad_app_roles_naming_the_flag(role, message):
    if callable(role):
        role = role()
        message = message.format(role)
    with pytest.raises(CommandError, match=message):
        run("init", "--app-role", role)


def superuser_name():
    # The bootstrap superuser of the cluster: "postgres" in most installs, not in all.
    return fetch("SELECT rolname FROM pg_roles WHERE rolsuper ORDER BY oid LIMIT 1")[0][0]


@pytest.mark.django_db
def test_init_refuses_a_superuser_app_role():
    name = superuser_name()
    with pytest.raises(CommandError, match=f"--app-role: {name} is a superuser"):
        run("init", "--app-role", name)


@pytest.mark.django_db
def test_init_needs_the_app_role_when_it_cannot_tell():
    with pytest.raises(CommandError, match="--app-role is required"):
        run("init")


@pytest.mark.django_db(transaction=True)
def test_init_as_owner_grants_dml_but_never_truncate():
    table = f"init_probe_{uuid.uuid4().hex[:8]}"
    app, system = app_role(), system_role()
    as_owner(
        f'CREATE TABLE "{table}" (id bigserial PRIMARY KEY)',
        f'REVOKE ALL ON "{table}" FROM "{app}", "{system}"',
    )
    try:
        privileges = (
            "SELECT has_table_privilege(%s, %s, 'SELECT'), has_table_privilege(%s, %s, 'DELETE'),"
            " has_table_privilege(%s, %s, 'TRUNCATE')"
        )
        args = [app, table] * 3
        assert fetch(privileges, args) == [(False, False, False)]
        with connected_as_owner():
            out, _ = run("init", "--app-role", app)
        assert f"✓ {app} may SET ROLE {system}" in out
        assert fetch(privileges, args) == [(True, True, False)]
        assert fetch(privileges, [system, table] * 3) == [(True, True, False)]
        # Run twice: init is idempotent.
        with connected_as_owner():
            run("init", "--app-role", app)
        assert fetch("SELECT pg_has_role(%s, %s, 'USAGE')", [app, system]) == [(False,)]
    finally:
        as_owner(f'DROP TABLE IF EXISTS "{table}"')


@pytest.mark.django_db(transaction=True)
def test_init_makes_the_app_role_a_noinherit_member_of_the_audit_admin_role(settings):
    # Fresh roles, created by the owner, so that init really grants (the suite's app role is a
    # member of the usual roles already) and the owner may drop them afterwards.
    suffix = uuid.uuid4().hex[:8]
    app, system, admin = (f"init_{kind}_{suffix}" for kind in ("app", "system", "admin"))
    settings.BETTER_TENANT = {"SYSTEM_ROLE": system}
    settings.BETTER_AUDIT = {**settings.BETTER_AUDIT, "INTEGRITY": {"ADMIN_ROLE": admin}}
    as_owner(f'CREATE ROLE "{app}" NOLOGIN NOINHERIT')
    try:
        with connected_as_owner():
            dry, _ = run("init", "--app-role", app, "--dry-run")
        assert f"quote_ident('{admin}') || ' TO ' || quote_ident('{app}')" in dry
        assert membership(admin, app) is None
        with connected_as_owner():
            out, _ = run("init", "--app-role", app)
        assert f"✓ {app} may SET ROLE {admin} (better_audit's admin role" in out
        assert membership(admin, app) == (False, True)
        assert membership(system, app) == (False, True)
        # A member that does not inherit: the admin role's DELETE never applies by itself.
        assert fetch("SELECT pg_has_role(%s, %s, 'USAGE')", [app, admin]) == [(False,)]
    finally:
        as_owner(
            f'GRANT "{app}", "{system}" TO CURRENT_USER',
            f'DROP OWNED BY "{app}", "{system}"',
            f'DROP ROLE IF EXISTS "{app}", "{system}", "{admin}"',
        )


@pytest.mark.django_db
def test_init_refuses_the_audit_admin_role_as_app_role():
    admin = audit_admin_role()
    with pytest.raises(CommandError, match=rf"--app-role: {admin} is better_audit's"):
        run("init", "--app-role", admin)


# --- migrate / add-table -------------------------------------------------------------------------


@pytest.fixture
def legacy_tables(transactional_db):
    """Two tables created outside TenantModel: a parent and a child with a plain foreign key."""
    suffix = uuid.uuid4().hex[:8]
    parent, child = f"legacy_parent_{suffix}", f"legacy_child_{suffix}"
    as_owner(
        f'CREATE TABLE "{parent}" (id bigserial PRIMARY KEY, '
        "tenant_id uuid NOT NULL REFERENCES tenants(id), name text NOT NULL DEFAULT '')",
        f'CREATE TABLE "{child}" (id bigserial PRIMARY KEY, '
        "tenant_id uuid NOT NULL REFERENCES tenants(id), "
        f'parent_id bigint NOT NULL REFERENCES "{parent}"(id))',
    )
    yield parent, child
    as_owner(f'DROP TABLE IF EXISTS "{child}"', f'DROP TABLE IF EXISTS "{parent}"')


def test_migrate_dry_run_prints_rls_sql_parents_first(legacy_tables):
    parent, child = legacy_tables
    out, _ = run("migrate", "--dry-run")
    assert f'ALTER TABLE "{parent}" ENABLE ROW LEVEL SECURITY;' in out
    assert f'ALTER TABLE "{child}" FORCE ROW LEVEL SECURITY;' in out
    assert f'CREATE POLICY "rls_tenant_{child}"' in out
    assert out.index(f"security on {parent}") < out.index(f"security on {child}")
    assert f'FOREIGN KEY (tenant_id, "parent_id") REFERENCES "{parent}" (tenant_id, "id")' in out
    # TenantModel tables are secured by their own migrations and are never proposed.
    assert "test_notes" not in out
    # The trigger function exists in the test database, so it is not repeated.
    assert "CREATE OR REPLACE FUNCTION" not in out


def test_migrate_writes_a_migration_file_that_secures_the_tables(legacy_tables, tmp_path):
    parent, child = legacy_tables
    out, _ = run("migrate", "-o", str(tmp_path))
    written = list(tmp_path.glob("*.py"))
    assert [p.name for p in written] == ["0001_tenant_rls_tables.py"]
    assert f"✓ wrote {written[0]}" in out
    assert "Move it into the migrations/ directory" in out

    spec = importlib.util.spec_from_file_location("generated_rls", written[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    migration = module.Migration
    assert [app for app, _name in migration.dependencies] == ["better_tenant"]
    operations = migration.operations
    assert all(isinstance(op, EnableTenantRLS) for op in operations)
    assert [op.options for op in operations] == [
        {"table": parent},
        {"table": child, "foreign_keys": [["parent_id", parent]]},
    ]

    # Applied as the owner, the operations leave tables that the check passes.
    as_owner(*(op.forward_sql() for op in operations))
    out, _ = run("check", "--json")
    report = json.loads(out)
    problems = [
        f for f in report["findings"] if f["section"] in (f"table {parent}", f"table {child}")
    ]
    assert problems and all(f["status"] == "ok" for f in problems), problems
    assert {f["code"] for f in problems} >= {"rls_enabled", "policy", "trigger", "composite_fk"}


def test_migrate_with_tables_and_a_named_file(legacy_tables, tmp_path):
    parent, _child = legacy_tables
    target = tmp_path / "0007_secure_parent.py"
    run("migrate", "--tables", parent, "-o", str(target))
    text = target.read_text()
    assert "better_tenant.operations.EnableTenantRLS(" in text
    assert f"table='{parent}'" in text
    with pytest.raises(CommandError, match="already exists"):
        run("migrate", "--tables", parent, "-o", str(target))


def test_migrate_reports_every_bad_table_at_once(legacy_tables):
    with pytest.raises(CommandError) as excinfo:
        run("migrate", "--tables", "no_such_table,test_countries,test_notes", "--dry-run")
    message = str(excinfo.value)
    assert "'no_such_table' does not exist" in message
    assert "test_countries has no tenant_id column" in message
    assert "test_notes is the table of testapp.Note, a TenantModel" in message


def test_add_table_prints_sql_for_one_table(legacy_tables):
    parent, child = legacy_tables
    out, err = run("add-table", child, "--dry-run")
    assert f'CREATE TRIGGER "set_tenant_id_trigger" BEFORE INSERT ON "{child}"' in out
    assert f'ADD CONSTRAINT "{child}_tenant_key" UNIQUE (tenant_id, "id")' in out
    # The parent has no UNIQUE (tenant_id, id) yet, so no composite key can point at it.
    assert "FOREIGN KEY" not in out
    assert f"{child}.parent_id -> {parent}.id: no composite key added" in err


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("missing_table", "add-table: the table 'missing_table' does not exist"),
        ("test_countries", "add-table: test_countries has no tenant_id column"),
        ("test_notes", "add-table: test_notes is the table of testapp.Note"),
        ("tenants", "add-table: tenants is the tenants table"),
    ],
)
def test_add_table_explains_what_is_wrong(table, message):
    with pytest.raises(CommandError, match=message):
        run("add-table", table, "--dry-run")


def test_add_table_refuses_a_table_that_already_has_rls(legacy_tables):
    parent, _child = legacy_tables
    as_owner(EnableTenantRLS(table=parent).forward_sql())
    with pytest.raises(CommandError, match=f"{parent} already has row-level security"):
        run("add-table", parent, "--dry-run")


def test_add_table_needs_an_output_or_dry_run(legacy_tables):
    with pytest.raises(CommandError, match="Pass -o FILE"):
        run("add-table", legacy_tables[0])


@pytest.mark.django_db
def test_migrate_with_nothing_to_do():
    out, _ = run("migrate", "--dry-run")
    assert out.startswith("Nothing to do")


def test_migration_directory_is_matched_to_its_app():
    assert migrations_app_for(ROOT / "tests" / "testapp" / "migrations") == "testapp"
    assert migrations_app_for(ROOT / "better_tenant" / "migrations") == "better_tenant"
    assert migrations_app_for(ROOT / "tests") is None


# --- check ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_check_passes_on_the_healthy_database():
    out, _ = run("check")
    lines = out.splitlines()
    assert f"✓ role {app_role()}: 2 checks passed" in lines
    assert any(line.startswith("✓ table test_notes:") for line in lines)
    assert any(line.startswith("✓ smoke test:") for line in lines)
    assert "✗" not in out
    assert lines[-1].startswith("0 errors, ")


@pytest.mark.django_db
def test_check_json_lists_every_finding():
    out, _ = run("check", "--json")
    report = json.loads(out)
    assert report["ok"] is True and report["errors"] == 0
    tables = {"test_notes", "test_comments", "test_invoices", "test_memberships"}
    assert tables <= set(report["tables"])
    codes = {(f["section"], f["code"]) for f in report["findings"]}
    assert ("table test_comments", "composite_fk") in codes
    assert ("table tenants", "tenants_policies") in codes
    assert ("smoke test", "isolation") in codes
    assert ("smoke test", "tenants_write_blocked") in codes


@pytest.mark.django_db
def test_check_smoke_test_leaves_nothing_behind():
    with run_as_system():
        before = Tenant.objects.count()
    run("check")
    with run_as_system():
        assert Tenant.objects.count() == before


@pytest.mark.django_db
def test_check_verbose_lists_passing_checks_too():
    out, _ = run("check", "-v", "2")
    assert "    ✓ row-level security enabled and forced" in out
    assert "    ✓ trigger set_tenant_id_trigger" in out


@pytest.fixture
def broken_tables(transactional_db):
    """Tenant tables with the mistakes the check must catch, created as the owner."""
    suffix = uuid.uuid4().hex[:6]
    names = {
        "open": f"chk_open_{suffix}",
        "seed": f"chk_seed_{suffix}",
        "child": f"chk_child_{suffix}",
    }
    open_, seed, child = names["open"], names["seed"], names["child"]
    seed_expr = (
        "((tenant_id)::text = current_setting('app.current_tenant', true) "
        "OR current_setting('app.bypass_rls', true) = 'true')"
    )
    tenant_expr = "tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid"
    as_owner(
        # A tenant_id column and no row-level security at all.
        f'CREATE TABLE "{open_}" (id bigserial PRIMARY KEY, tenant_id uuid REFERENCES tenants(id))',
        # The seed's policy shape (cast + OR bypass), no trigger, no system policy, a global
        # unique, no index led by tenant_id, and TRUNCATE for the app role.
        f'CREATE TABLE "{seed}" (id bigserial PRIMARY KEY, '
        "tenant_id uuid NOT NULL REFERENCES tenants(id), code text UNIQUE)",
        f'ALTER TABLE "{seed}" ENABLE ROW LEVEL SECURITY',
        f'ALTER TABLE "{seed}" FORCE ROW LEVEL SECURITY',
        f'CREATE POLICY seed_policy ON "{seed}" FOR ALL USING {seed_expr} WITH CHECK {seed_expr}',
        f'GRANT TRUNCATE ON "{seed}" TO "{app_role()}"',
        # Correct RLS, but a plain foreign key into another tenant table.
        f'CREATE TABLE "{child}" (id bigserial PRIMARY KEY, '
        "tenant_id uuid NOT NULL REFERENCES tenants(id), "
        "note_id bigint REFERENCES test_notes(id))",
        f'ALTER TABLE "{child}" ENABLE ROW LEVEL SECURITY',
        f'ALTER TABLE "{child}" FORCE ROW LEVEL SECURITY',
        f'CREATE POLICY t ON "{child}" FOR ALL USING ({tenant_expr}) WITH CHECK ({tenant_expr})',
        f'CREATE POLICY s ON "{child}" FOR ALL TO better_tenant_system USING (true) '
        "WITH CHECK (true)",
        f'CREATE TRIGGER set_tenant_id_trigger BEFORE INSERT ON "{child}" '
        "FOR EACH ROW EXECUTE FUNCTION set_tenant_id()",
        f'CREATE INDEX ON "{child}" (tenant_id, id)',
        f'REVOKE DELETE ON "{child}" FROM better_tenant_system',
    )
    yield names
    as_owner(*(f'DROP TABLE IF EXISTS "{name}"' for name in names.values()))


def test_check_catches_broken_tables(broken_tables):
    out = io.StringIO()
    with pytest.raises(SystemExit) as excinfo:
        call_command("better_tenant", "check", "--json", stdout=out)
    assert excinfo.value.code == 1
    report = json.loads(out.getvalue())
    assert report["ok"] is False

    def codes(table, status):
        return {
            f["code"]
            for f in report["findings"]
            if f["section"] == f"table {table}" and f["status"] == status
        }

    assert codes(broken_tables["open"], "error") == {"rls_missing"}
    assert codes(broken_tables["seed"], "error") == {
        "policy_casts_column",
        "policy_or_bypass",
        "system_policy_missing",
        "trigger_missing",
        "runtime_truncate",
    }
    assert codes(broken_tables["seed"], "warning") == {
        "tenant_index_missing",
        "unique_without_tenant",
    }
    assert codes(broken_tables["child"], "error") == {"plain_fk", "system_privileges"}
    # The healthy tables stay healthy next to the broken ones.
    assert codes("test_notes", "error") == set()
    by_code = {f["code"]: f for f in report["findings"]}
    assert "index on tenant_id" in by_code["policy_casts_column"]["message"]
    assert "app.bypass_rls" in by_code["policy_or_bypass"]["message"]
    assert "another tenant's row" in by_code["plain_fk"]["message"]


def test_check_text_output_names_the_problem_and_the_fix(broken_tables):
    out = io.StringIO()
    with pytest.raises(SystemExit) as excinfo:
        call_command("better_tenant", "check", stdout=out)
    assert excinfo.value.code == 1
    text = out.getvalue()
    open_ = broken_tables["open"]
    assert f"✗ table {open_}\n" in text
    assert "    ✗ has a tenant_id column but no row-level security" in text
    assert f"      → Run `manage.py better_tenant add-table {open_} -o <app>/migrations/`" in text
    assert "    ! no index led by tenant_id" in text
    summary = text.strip().splitlines()[-1]
    assert summary.startswith("8 errors, 2 warnings")


# --- the rules behind check, on facts a test database cannot produce ----------------------------


def role_facts(**overrides):
    values = {
        "name": "app",
        "superuser": False,
        "bypassrls": False,
        "system_role": "better_tenant_system",
        "system_role_exists": True,
        "can_set_system_role": True,
        "inherits_system_role": False,
    }
    return inspection.RoleFacts(**{**values, **overrides})


def status_by_code(findings):
    return {f.code: f.status for f in findings}


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"superuser": True}, "role_bypasses_rls"),
        ({"bypassrls": True}, "role_bypasses_rls"),
        ({"inherits_system_role": True}, "role_inherits_system"),
        ({"can_set_system_role": False}, "system_role_unreachable"),
        ({"system_role_exists": False, "can_set_system_role": False}, "system_role_missing"),
    ],
)
def test_role_rules(overrides, code):
    assert status_by_code(inspection.evaluate_role(role_facts(**overrides)))[code] == "error"


def test_a_well_set_up_role_passes():
    found = inspection.evaluate_role(role_facts())
    assert {f.status for f in found} == {"ok"}


@pytest.mark.django_db
def test_role_facts_come_from_the_catalogs():
    with connection.cursor() as cursor:
        app = inspection.inspect_role(cursor, system_role())
        superuser = inspection.inspect_role(cursor, system_role(), role=superuser_name())
    assert (app.name, app.superuser, app.can_set_system_role, app.inherits_system_role) == (
        app_role(),
        False,
        True,
        False,
    )
    assert superuser.superuser is True
    assert status_by_code(inspection.evaluate_role(superuser))["role_bypasses_rls"] == "error"


@pytest.mark.django_db
def test_table_owned_by_the_runtime_role_is_a_warning():
    app, system = app_role(), system_role()
    with connection.cursor() as cursor:
        facts = inspection.inspect_table(cursor, "test_notes", system)
    assert facts.owner == owner_role()
    healthy = inspection.evaluate_table(facts, app, system, ["test_notes"])
    assert {f.status for f in healthy} == {"ok"}
    owned = dataclasses.replace(facts, owner=app)
    found = inspection.evaluate_table(owned, app, system, ["test_notes"])
    assert status_by_code(found)["runtime_owns_table"] == "warning"


@pytest.mark.django_db
def test_the_installed_policy_has_none_of_the_slow_shapes():
    with connection.cursor() as cursor:
        facts = inspection.inspect_table(cursor, "test_notes", system_role())
    tenant_policy = next(p for p in facts.policies if p.applies_to_runtime)
    assert "tenant_id" in tenant_policy.using
    assert inspection.policy_problems(tenant_policy.using) == []
    assert inspection.policy_problems(tenant_policy.with_check) == []


def test_policy_shapes_that_defeat_the_index():
    cast = "((tenant_id)::text = current_setting('app.current_tenant'::text, true))"
    bypass = (
        "((tenant_id = (NULLIF(current_setting('app.current_tenant'::text, true), ''::text))::uuid)"
        " OR (current_setting('app.bypass_rls'::text, true) = 'true'::text))"
    )
    assert [code for code, _ in inspection.policy_problems(cast)] == ["policy_casts_column"]
    assert [code for code, _ in inspection.policy_problems(bypass)] == ["policy_or_bypass"]
    assert "the tenant_id index" in inspection.policy_problems(bypass)[0][1]


def test_smoke_values_fill_only_what_the_database_requires():
    from tests.testapp.models import Comment, Note

    values = inspection.smoke_values(Note)
    assert list(values) == ["title"] and values["title"].startswith("check-")
    assert values != inspection.smoke_values(Note)  # fresh values never collide on a unique key
    assert inspection.smoke_values(Comment) is None  # needs a note: a foreign key


def test_migration_written_into_an_app_depends_on_its_latest_migration(
    legacy_tables, tmp_path, monkeypatch
):
    from better_tenant.management.commands import better_tenant as command

    parent, _child = legacy_tables
    monkeypatch.setattr(command, "migrations_app_for", lambda directory: "testapp")
    loader = MigrationLoader(None, ignore_no_migrations=True)
    leaves = loader.graph.leaf_nodes("testapp")
    number = max(int(name[:4]) for _app, name in leaves) + 1

    out, _ = run("add-table", parent, "-o", str(tmp_path))
    (written,) = tmp_path.glob("*.py")
    assert written.name == f"{number:04d}_tenant_rls_{parent}.py"
    assert "for the app testapp" in out
    assert "Apply it with `manage.py migrate`" in out
    spec = importlib.util.spec_from_file_location("generated_app_rls", written)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert set(leaves) <= set(module.Migration.dependencies)
    assert [op.options for op in module.Migration.operations] == [{"table": parent}]


@pytest.mark.django_db(transaction=True)
def test_smoke_test_catches_a_policy_that_lets_tenants_see_each_other():
    healthy = json.loads(run("check", "--json")[0])
    (isolation,) = [f for f in healthy["findings"] if f["code"] == "isolation"]
    table = isolation["message"].split(":")[0]
    policy = f"rls_tenant_{table}"
    tenant_expr = f"tenant_id = {POLICY_TENANT}"
    as_owner(f'ALTER POLICY "{policy}" ON "{table}" USING (true) WITH CHECK (true)')
    try:
        out = io.StringIO()
        with pytest.raises(SystemExit):
            call_command("better_tenant", "check", "--json", stdout=out)
        report = json.loads(out.getvalue())
    finally:
        as_owner(
            f'ALTER POLICY "{policy}" ON "{table}" USING ({tenant_expr}) WITH CHECK ({tenant_expr})'
        )
    leaks = {f["message"] for f in report["findings"] if f["code"] == "isolation_leak"}
    assert f"{table}: tenant B sees tenant A's row through the ORM" in leaks
    assert f"{table}: tenant B could update tenant A's row" in leaks
    assert f"{table}: tenant B could delete tenant A's row" in leaks
    assert f"{table}: tenant B could insert a row carrying tenant A's id" in leaks
    assert f"{table}: the row is visible with no tenant in scope" in leaks
    assert f"{table}: run_as_system() cannot see the row" not in leaks
    structural = [f for f in report["findings"] if f["section"] == f"table {table}"]
    assert "policy_not_tenant" in {f["code"] for f in structural if f["status"] == "error"}
    # Restored: the check passes again.
    assert json.loads(run("check", "--json")[0])["ok"] is True


def test_migrate_dry_run_installs_a_missing_trigger_function_first(legacy_tables):
    parent, _child = legacy_tables
    # Renamed, not dropped: existing triggers point at the function by oid and keep working.
    as_owner("ALTER FUNCTION set_tenant_id() RENAME TO set_tenant_id_aside")
    try:
        out, _ = run("migrate", "--dry-run")
    finally:
        as_owner("ALTER FUNCTION set_tenant_id_aside() RENAME TO set_tenant_id")
    assert out.startswith("-- better_tenant: the set_tenant_id() function is missing")
    assert out.index("CREATE OR REPLACE FUNCTION set_tenant_id()") < out.index(
        f'ALTER TABLE "{parent}" ENABLE ROW LEVEL SECURITY'
    )
    # The tenants table already has its policies, so they are not created twice.
    assert "rls_tenants_read" not in out
