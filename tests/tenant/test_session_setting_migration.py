"""Migrations 0002 and 0003 rewrite the policies installed before them; migrating back restores
them."""

import pytest
from django.core.management import call_command
from django.db import connection

from better_tenant import run_as
from better_tenant.sql import (
    CURRENT_FUNCTION,
    CURRENT_TENANT_V1,
    CURRENT_TENANT_V2,
    KEY_SEQUENCES,
    LOOKUP_SIGNATURE,
    SETTING,
    STAMP_SETTING,
    rewrite_current_tenant_sql,
)
from better_tenant.testing import connected_as_owner
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)

# How PostgreSQL prints the policy of a TenantModel table before 0002 (it did so in 0001).
V1_POLICY = (
    "(tenant_id = (NULLIF(current_setting('app.current_tenant'::text, true), ''::text))::uuid)"
)


def fetch(query, params=()):
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def snapshot():
    """Everything that reads the tenant setting: policies, column defaults, trigger functions."""
    policies = fetch(
        """SELECT c.relname, p.polname, pg_get_expr(p.polqual, p.polrelid),
                  pg_get_expr(p.polwithcheck, p.polrelid)
           FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
           WHERE c.relnamespace = current_schema()::regnamespace
           ORDER BY 1, 2"""
    )
    defaults = fetch(
        """SELECT d.adrelid::regclass::text, pg_get_expr(d.adbin, d.adrelid)
           FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid
           WHERE c.relnamespace = current_schema()::regnamespace
             AND pg_get_expr(d.adbin, d.adrelid) LIKE %s
           ORDER BY 1""",
        [f"%{CURRENT_FUNCTION}%"],
    )
    functions = fetch(
        """SELECT proname, pg_get_functiondef(oid) FROM pg_proc
           WHERE proname IN ('set_tenant_id', 'set_tenant_id_if_scoped')
           ORDER BY 1"""
    )
    lookup = fetch("SELECT to_regprocedure(%s) IS NOT NULL", [LOOKUP_SIGNATURE])[0][0]
    keys = fetch("SELECT to_regclass(%s) IS NOT NULL", [KEY_SEQUENCES[0]])[0][0]
    return {
        "policies": policies,
        "defaults": defaults,
        "functions": functions,
        "lookup": lookup,
        "keys": keys,
    }


def mentions(state, text):
    rows = state["policies"] + state["defaults"] + state["functions"]
    return sorted({row[0] for row in rows if any(text in (part or "") for part in row[1:])})


def test_migrating_back_restores_the_old_reading_and_forward_again_the_new(tenant):
    app_role = fetch("SELECT current_user")[0][0]
    before = snapshot()
    tables = mentions(before, CURRENT_FUNCTION)
    # Every table that reads the tenant at all reads it through the function; the audit log and
    # the webhook and mail tables (OptionalTenantRLS, set_tenant_id_if_scoped) among them.
    assert {
        "tenants",
        "test_notes",
        "audit_logs",
        "set_tenant_id",
        "set_tenant_id_if_scoped",
    } <= set(tables)
    assert mentions(before, SETTING) == []
    try:
        with connected_as_owner():
            call_command("migrate", "better_tenant", "0001", verbosity=0)
            old = snapshot()
    finally:
        with connected_as_owner():
            call_command("migrate", "better_tenant", verbosity=0)
    assert mentions(old, STAMP_SETTING) == []
    assert mentions(old, CURRENT_FUNCTION) == []
    assert mentions(old, SETTING) == [t for t in tables if t != "tenants"]
    assert (before["keys"], old["keys"]) == (True, False)
    assert ("test_notes", "rls_tenant_test_notes", V1_POLICY, V1_POLICY) in old["policies"]
    read = [row for row in old["policies"] if row[1] == "rls_tenants_read"]
    assert read == [("tenants", "rls_tenants_read", "true", None)]
    assert "rls_tenants_owner" not in {row[1] for row in old["policies"]}
    assert old["lookup"] is False
    # Forward again gives exactly what the first migrate gave: nothing wrapped twice.
    after = snapshot()
    for key in before:
        changed = set(before[key]) ^ set(after[key]) if key not in ("lookup", "keys") else set()
        assert after[key] == before[key], sorted(changed)
    # The roles that read tenants got EXECUTE back from the migration itself.
    assert fetch(
        "SELECT has_function_privilege(%s, %s, 'EXECUTE')", [app_role, LOOKUP_SIGNATURE]
    ) == [(True,)]
    with run_as(tenant):
        Note.objects.create(title="after the round trip")
        assert Note.objects.count() == 1


def test_the_rewrite_leaves_what_it_already_rewrote_alone():
    before = snapshot()
    with connected_as_owner(), connection.cursor() as cursor:
        cursor.execute(rewrite_current_tenant_sql(CURRENT_TENANT_V1, CURRENT_TENANT_V2))
    assert snapshot() == before
