"""`better_tenant check` names views, materialized views and functions that bypass RLS."""

import dataclasses
import io
import json
import uuid

import pytest
from django.core.management import call_command
from django.db import connection

from better_tenant import inspection, sql
from better_tenant.testing import connected_as_owner

BYPASS_CODES = {
    "view_bypasses_rls",
    "matview_bypasses_rls",
    "function_bypasses_rls",
    "function_may_bypass_rls",
    "runtime_bypass_grant",
}
TENANT = "tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid"


def as_owner(*statements):
    with connected_as_owner(), connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def owner_name():
    with connected_as_owner(), connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        return cursor.fetchone()[0]


def app_name():
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        return cursor.fetchone()[0]


def server_version():
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version_num')::int")
        return cursor.fetchone()[0]


def needs(version, feature):
    if server_version() < version:
        pytest.skip(f"{feature} needs PostgreSQL {version // 10000}+")


def check():
    """The check's JSON report (it exits 1 when it finds an error)."""
    out = io.StringIO()
    try:
        call_command("better_tenant", "check", "--json", stdout=out)
    except SystemExit as exc:
        assert exc.code == 1
    return json.loads(out.getvalue())


def findings(report, section):
    return {f["code"]: f for f in report["findings"] if f["section"] == section}


def bypasses(report):
    return [f for f in report["findings"] if f["code"] in BYPASS_CODES]


def fix_sql(hint):
    """The first SQL statement a hint gives (quoted in backticks when prose surrounds it)."""
    return hint.split("`")[1] if "`" in hint else hint


@pytest.fixture
def suffix():
    return uuid.uuid4().hex[:8]


@pytest.fixture
def drop(transactional_db):
    """Statements that undo what a test created, run as the owner afterwards, last first."""
    statements = []
    yield statements
    as_owner(*reversed(statements))


@pytest.fixture
def unforced(drop, suffix):
    """A tenant table with row-level security that its owner skips: no FORCE."""
    name = f"byp_open_{suffix}"
    as_owner(
        f'CREATE TABLE "{name}" (id bigserial PRIMARY KEY, '
        "tenant_id uuid NOT NULL REFERENCES tenants(id), secret text)",
        f'ALTER TABLE "{name}" ENABLE ROW LEVEL SECURITY',
        f'CREATE POLICY t ON "{name}" FOR ALL USING ({TENANT}) WITH CHECK ({TENANT})',
    )
    drop.append(f'DROP TABLE IF EXISTS "{name}" CASCADE')
    return name


# --- a database without bypasses -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_clean_database_reports_no_bypass():
    report = check()
    assert bypasses(report) == []
    assert "no_rls_bypass" in findings(report, "views and functions")


@pytest.mark.django_db
def test_the_suites_own_lookup_function_is_exempt_and_says_why():
    # It reads the tenants table past the tenant policy on purpose: one id for one identifier.
    report = check()
    exempt = [f["message"] for f in report["findings"] if f["code"] == "bypass_exempt"]
    assert exempt == [
        # better_audit's writers of the trail (better_audit.trail), declared by its app config.
        "SECURITY DEFINER FUNCTION better_audit_capture() is exempt: better_audit's capture "
        "trigger: writes entries of the rows a statement changed",
        "SECURITY DEFINER FUNCTION better_audit_write(jsonb,boolean) is exempt: better_audit's "
        "entry writer: inserts entries of the tenant in scope only",
        f"SECURITY DEFINER FUNCTION {sql.LOOKUP_SIGNATURE} is exempt: better_tenant's identifier "
        "lookup (better_tenant.lookup): it returns the id of the tenant with exactly that slug "
        "or id, and nothing else",
    ]


def test_views_and_functions_that_keep_rls_are_not_bypasses(drop, suffix):
    # The table is FORCEd, so its owner is filtered too: the owner's view and SECURITY DEFINER
    # function see no more than their reader would.
    view, function = f"byp_forced_v_{suffix}", f"byp_forced_f_{suffix}"
    as_owner(
        f'CREATE VIEW "{view}" AS SELECT id, title FROM test_notes',
        f'CREATE FUNCTION "{function}"() RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER '
        "AS $$ BEGIN RETURN (SELECT count(*) FROM test_notes); END $$",
    )
    drop += [f'DROP VIEW IF EXISTS "{view}"', f'DROP FUNCTION IF EXISTS "{function}"()']
    report = check()
    assert bypasses(report) == []
    assert "no_rls_bypass" in findings(report, "views and functions")


# --- views ---------------------------------------------------------------------------------------


def test_view_owned_by_the_owner_of_an_unforced_table_is_named_with_its_fix(unforced, suffix):
    view = f"byp_view_{suffix}"
    as_owner(f'CREATE VIEW "{view}" AS SELECT * FROM "{unforced}"')
    owner, app = owner_name(), app_name()
    found = findings(check(), f"view {view}")
    bypass = found["view_bypasses_rls"]
    assert bypass["status"] == "error"
    assert bypass["message"] == (
        f"reads {unforced} as {owner}, who owns it, and an owner skips its policies without "
        "FORCE ROW LEVEL SECURITY: whoever may read this view sees every tenant's rows"
    )
    if server_version() >= 150000:
        assert fix_sql(bypass["hint"]) == f"ALTER VIEW {view} SET (security_invoker = true);"
    else:
        assert fix_sql(bypass["hint"]).startswith(f"ALTER VIEW {view} OWNER TO <a role without")
    assert bypass["hint"].endswith(f"or `DROP VIEW {view};`")
    # The owner's default privileges granted it to the application role.
    grant = found["runtime_bypass_grant"]
    assert grant["status"] == "error"
    assert grant["message"].startswith(f"{app} may read it (SELECT granted to {app})")
    assert grant["hint"] == f'REVOKE SELECT ON {view} FROM "{app}";'
    # The revoke it names takes the grant away, and with it this finding.
    as_owner(fix_sql(grant["hint"]))
    found = findings(check(), f"view {view}")
    assert "view_bypasses_rls" in found and "runtime_bypass_grant" not in found


def test_the_security_invoker_fix_clears_the_view(unforced, suffix):
    needs(150000, "security_invoker")
    view = f"byp_view_{suffix}"
    as_owner(f'CREATE VIEW "{view}" AS SELECT * FROM "{unforced}"')
    hint = findings(check(), f"view {view}")["view_bypasses_rls"]["hint"]
    as_owner(fix_sql(hint))
    assert findings(check(), f"view {view}") == {}


def test_view_over_a_security_invoker_view_over_a_tenant_table(unforced, suffix):
    # The inner view reads as whoever reads it; read from the outer view, that is the outer
    # view's owner, who skips the policies of the unforced table.
    needs(150000, "security_invoker")
    inner, outer = f"byp_inner_{suffix}", f"byp_outer_{suffix}"
    as_owner(
        f'CREATE VIEW "{inner}" WITH (security_invoker = true) AS SELECT * FROM "{unforced}"',
        f'CREATE VIEW "{outer}" AS SELECT id FROM "{inner}"',
    )
    owner = owner_name()
    report = check()
    assert findings(report, f"view {inner}") == {}
    message = findings(report, f"view {outer}")["view_bypasses_rls"]["message"]
    assert message.startswith(f"reads {unforced} (through {inner}) as {owner}, who owns it")


def test_view_over_a_bypassing_view_is_named_too(unforced, suffix):
    inner, outer = f"byp_inner_{suffix}", f"byp_outer_{suffix}"
    as_owner(
        f'CREATE VIEW "{inner}" AS SELECT * FROM "{unforced}"',
        f'CREATE VIEW "{outer}" AS SELECT id FROM "{inner}"',
    )
    report = check()
    assert "view_bypasses_rls" in findings(report, f"view {inner}")
    assert findings(report, f"view {outer}")["view_bypasses_rls"]["message"].startswith(
        f"reads {inner}, which shows every tenant's rows (see its finding)"
    )


# --- materialized views --------------------------------------------------------------------------


def test_materialized_view_of_a_tenant_table_is_named_with_its_fix(drop, suffix):
    # Even over a FORCEd table: a materialized view stores rows and applies no RLS when read.
    matview = f"byp_mv_{suffix}"
    as_owner(f'CREATE MATERIALIZED VIEW "{matview}" AS SELECT id, title FROM test_notes')
    drop.append(f'DROP MATERIALIZED VIEW IF EXISTS "{matview}"')
    app = app_name()
    found = findings(check(), f"materialized view {matview}")
    bypass = found["matview_bypasses_rls"]
    assert bypass["status"] == "error"
    assert bypass["message"].startswith(
        "stores rows of test_notes, and a materialized view applies no row-level security"
    )
    assert found["runtime_bypass_grant"]["hint"] == f'REVOKE SELECT ON {matview} FROM "{app}";'
    assert fix_sql(bypass["hint"]) == f"DROP MATERIALIZED VIEW {matview};"
    as_owner(fix_sql(bypass["hint"]))
    assert findings(check(), f"materialized view {matview}") == {}


def test_materialized_view_over_a_view_over_a_tenant_table(drop, suffix):
    view, matview = f"byp_v_{suffix}", f"byp_mv_{suffix}"
    as_owner(
        f'CREATE VIEW "{view}" AS SELECT n.id, c.text FROM test_notes n '
        "JOIN test_comments c ON c.note_id = n.id",
        f'CREATE MATERIALIZED VIEW "{matview}" AS SELECT * FROM "{view}" WITH NO DATA',
    )
    drop += [f'DROP VIEW IF EXISTS "{view}"', f'DROP MATERIALIZED VIEW IF EXISTS "{matview}"']
    report = check()
    assert findings(report, f"view {view}") == {}  # its owner is filtered: the tables are FORCEd
    message = findings(report, f"materialized view {matview}")["matview_bypasses_rls"]["message"]
    assert message.startswith("stores rows of test_comments, test_notes, and a materialized view")


# --- functions -----------------------------------------------------------------------------------


def test_security_definer_function_naming_a_tenant_table(unforced, suffix, drop):
    function = f"byp_count_{suffix}"
    as_owner(
        f'CREATE FUNCTION "{function}"() RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER '
        f'AS $$ BEGIN RETURN (SELECT count(*) FROM "{unforced}"); END $$'
    )
    drop.append(f'DROP FUNCTION IF EXISTS "{function}"()')
    owner = owner_name()
    found = findings(check(), f"function {function}()")
    bypass = found["function_bypasses_rls"]
    assert bypass["status"] == "error"
    assert bypass["message"] == (
        f"SECURITY DEFINER, so it runs as its owner; it reads {unforced} as {owner}, who owns "
        "it, and an owner skips its policies without FORCE ROW LEVEL SECURITY (likely: its "
        "source names it, a text match the catalogs cannot confirm): whoever may call it sees "
        "every tenant's rows"
    )
    assert f"or `DROP FUNCTION {function}();`" in bypass["hint"]
    # Functions are executable by PUBLIC unless revoked.
    grant = found["runtime_bypass_grant"]
    assert grant["message"].startswith(f"{app_name()} may call it (EXECUTE granted to PUBLIC")
    assert grant["hint"] == f"REVOKE EXECUTE ON FUNCTION {function}() FROM PUBLIC;"
    as_owner(grant["hint"])
    assert "runtime_bypass_grant" not in findings(check(), f"function {function}()")
    assert fix_sql(bypass["hint"]) == f"ALTER FUNCTION {function}() SECURITY INVOKER;"
    as_owner(fix_sql(bypass["hint"]))
    assert findings(check(), f"function {function}()") == {}


def test_security_definer_sql_body_dependency_is_certain(unforced, suffix, drop):
    needs(140000, "BEGIN ATOMIC")
    function = f"byp_atomic_{suffix}"
    as_owner(
        f'CREATE FUNCTION "{function}"() RETURNS bigint LANGUAGE sql SECURITY DEFINER '
        f'BEGIN ATOMIC SELECT count(*) FROM "{unforced}"; END',
        f'REVOKE EXECUTE ON FUNCTION "{function}"() FROM PUBLIC',
    )
    drop.append(f'DROP FUNCTION IF EXISTS "{function}"()')
    found = findings(check(), f"function {function}()")
    assert (
        "(certain: a dependency recorded in pg_depend)"
        in (found["function_bypasses_rls"]["message"])
    )
    assert "runtime_bypass_grant" not in found  # revoked: the application cannot call it


def test_security_definer_function_calling_a_helper_that_reads_a_tenant_table(
    unforced, suffix, drop
):
    # A function that is not SECURITY DEFINER runs as its caller: here, the definer's owner.
    helper, function = f"byp_helper_{suffix}", f"byp_wrapper_{suffix}"
    as_owner(
        f'CREATE FUNCTION "{helper}"() RETURNS bigint LANGUAGE sql '
        f'AS $$ SELECT count(*) FROM "{unforced}" $$',
        f'CREATE FUNCTION "{function}"() RETURNS bigint LANGUAGE sql SECURITY DEFINER '
        f'AS $$ SELECT "{helper}"() $$',
    )
    drop += [f'DROP FUNCTION IF EXISTS "{helper}"()', f'DROP FUNCTION IF EXISTS "{function}"()']
    report = check()
    assert findings(report, f"function {helper}()") == {}  # it reads as its caller
    message = findings(report, f"function {function}()")["function_bypasses_rls"]["message"]
    assert f"it reads {unforced} as {owner_name()}, who owns it" in message
    assert f", inside {helper}() (likely: " in message


def test_security_definer_function_with_dynamic_sql_is_a_warning(unforced, suffix, drop):
    function = f"byp_dynamic_{suffix}"
    as_owner(
        f'CREATE FUNCTION "{function}"(t text) RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER '
        "AS $$ DECLARE n bigint; BEGIN EXECUTE format('SELECT count(*) FROM %I', t) INTO n; "
        "RETURN n; END $$"
    )
    drop.append(f'DROP FUNCTION IF EXISTS "{function}"(text)')
    found = findings(check(), f"function {function}(text)")
    warning = found["function_may_bypass_rls"]
    assert warning["status"] == "warning"
    assert "runs SQL built at run time (EXECUTE)" in warning["message"]
    assert "(possible, not proven)" in warning["message"]
    assert f"should it read {unforced}" in warning["message"]
    assert found["runtime_bypass_grant"]["status"] == "warning"


def test_exempt_function_is_accepted_by_name_only_in_the_suite_schema(
    unforced, suffix, monkeypatch, drop
):
    name, schema = f"byp_lookup_{suffix}", f"byp_schema_{suffix}"
    monkeypatch.setitem(inspection.EXEMPT_FUNCTIONS, name, "a narrow lookup, on purpose")
    body = (
        f'RETURNS bigint LANGUAGE sql SECURITY DEFINER AS $$ SELECT count(*) FROM "{unforced}" $$'
    )
    as_owner(
        f'CREATE FUNCTION "{name}"() {body}',
        f'CREATE SCHEMA "{schema}"',
        f'CREATE FUNCTION "{schema}"."{name}"() {body}',
    )
    drop += [f'DROP FUNCTION IF EXISTS "{name}"()', f'DROP SCHEMA IF EXISTS "{schema}" CASCADE']
    report = check()
    assert findings(report, f"function {name}()") == {}
    exempt = [f["message"] for f in report["findings"] if f["code"] == "bypass_exempt"]
    assert f"SECURITY DEFINER FUNCTION {name}() is exempt: a narrow lookup, on purpose" in exempt
    # The same name in another schema is judged as usual.
    assert "function_bypasses_rls" in findings(report, f"function {schema}.{name}()")


def test_check_text_output_shows_the_bypass_and_its_fix(unforced, suffix):
    view = f"byp_view_{suffix}"
    as_owner(f'CREATE VIEW "{view}" AS SELECT * FROM "{unforced}"')
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("better_tenant", "check", stdout=out)
    text = out.getvalue()
    assert f"✗ view {view}\n    ✗ reads {unforced} as " in text
    assert f"      → `ALTER VIEW {view} " in text
    assert f"      → REVOKE SELECT ON {view} FROM " in text


# --- owners a test database cannot make: judged on facts ----------------------------------------


def policy(name, roles, using, *, permissive=True, runtime=False):
    return inspection.PolicyFacts(
        name=name,
        command="ALL",
        permissive=permissive,
        roles=tuple(roles),
        using=using,
        with_check=using,
        applies_to_runtime=runtime,
        names_system_role="better_tenant_system" in roles,
    )


TENANT_POLICY = policy("rls_tenant_projects", ["public"], TENANT, runtime=True)
SYSTEM_POLICY = policy("rls_system_projects", ["better_tenant_system"], "true")


def role(name, *member_of, **flags):
    return inspection.OwnerFacts(name, member_of=frozenset({name, *member_of}), **flags)


def facts(*owners, version=160000, functions=(), policies=(TENANT_POLICY, SYSTEM_POLICY)):
    """A FORCEd tenant table owned by "owner", and a view over it owned by the first of owners."""
    table = inspection.GuardedTable(1, "projects", "owner", True, True, tuple(policies))
    view = inspection.RelationFacts(
        oid=2,
        name="report",
        relname="report",
        materialized=False,
        owner=owners[0].name,
        security_invoker=False,
        reads=(1,),
        runtime_grantees=("PUBLIC",),
    )
    return inspection.BypassFacts(
        tables={1: table},
        relations={2: view},
        functions={f.oid: f for f in functions},
        owners={o.name: o for o in [*owners, role("app")]},
        server_version=version,
        suite_schema="public",
        suite_owner="owner",
    )


def codes(found):
    return [f.code for f in found]


@pytest.mark.parametrize(
    ("owner", "flag", "reason"),
    [
        ("postgres", "superuser", "postgres, who is a superuser, which skips every policy"),
        ("etl", "bypassrls", "etl, who has BYPASSRLS, which skips every policy"),
    ],
)
def test_view_owned_by_a_superuser_or_bypassrls_role(owner, flag, reason):
    found = {
        f.code: f for f in inspection.evaluate_bypasses(facts(role(owner, **{flag: True})), "app")
    }
    assert found["view_bypasses_rls"].message.startswith(f"reads projects as {reason}")
    assert found["view_bypasses_rls"].hint.startswith(
        "`ALTER VIEW report SET (security_invoker = true);`"
    )
    assert found["runtime_bypass_grant"].hint == "REVOKE SELECT ON report FROM PUBLIC;"


def test_view_owned_by_a_role_that_a_policy_lets_see_every_tenant():
    owner = role("reports", "better_tenant_system")
    finding, grant = inspection.evaluate_bypasses(facts(owner), "app")
    assert finding.message.startswith(
        "reads projects as reports, who has the privileges of better_tenant_system, and its "
        "policy rls_system_projects for better_tenant_system does not filter by tenant"
    )
    assert grant.code == "runtime_bypass_grant"
    # Without those privileges, or under a restrictive tenant policy, the owner is filtered.
    assert codes(inspection.evaluate_bypasses(facts(role("reports")), "app")) == ["no_rls_bypass"]
    restrictive = policy("tenant_only", ["public"], TENANT, permissive=False, runtime=True)
    policies = (TENANT_POLICY, SYSTEM_POLICY, restrictive)
    found = inspection.evaluate_bypasses(facts(owner, policies=policies), "app")
    assert codes(found) == ["no_rls_bypass"]


def test_a_table_every_role_reads_whole_has_nothing_to_bypass():
    # The runtime role already reads every row (its own finding says so): a view shows no more.
    open_read = policy("read_all", ["public"], "true", runtime=True)
    found = inspection.evaluate_bypasses(
        facts(role("postgres", superuser=True), policies=(open_read,)), "app"
    )
    assert codes(found) == ["no_rls_bypass"]


def test_view_fix_before_postgresql_15_changes_the_owner():
    found = inspection.evaluate_bypasses(
        facts(role("postgres", superuser=True), version=140000), "app"
    )
    assert found[0].hint.startswith("`ALTER VIEW report OWNER TO <a role without SUPERUSER")


@pytest.mark.parametrize(
    ("schema", "owner", "code"),
    [
        ("public", "owner", "bypass_exempt"),
        ("public", "postgres", "function_bypasses_rls"),
        ("other", "owner", "function_bypasses_rls"),
    ],
)
def test_exemption_needs_the_suite_schema_and_owner(schema, owner, code):
    function = inspection.FunctionFacts(
        oid=3,
        schema=schema,
        name="tenant_lookup",
        signature="tenant_lookup(text)",
        owner=owner,
        security_definer=True,
        language="sql",
        source="SELECT id FROM projects WHERE slug = $1",
    )
    # Both candidate owners bypass row-level security; the view is left out.
    owners = [role("owner", superuser=True), role("postgres", superuser=True)]
    judged = dataclasses.replace(facts(*owners, functions=[function]), relations={})
    found = inspection.evaluate_bypasses(judged, "app", {"tenant_lookup": "slug to id"})
    assert codes(found)[0] == code
