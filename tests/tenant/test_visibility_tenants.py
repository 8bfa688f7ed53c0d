"""The tenants table: a tenant sees its own row only; identifiers resolve through one function."""

import io
import uuid

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from better_tenant import api, get_tenant, no_tenant, run_as, run_as_system
from better_tenant.lookup import resolve_to_id
from better_tenant.models import Tenant
from better_tenant.sql import LOOKUP_FUNCTION, LOOKUP_SIGNATURE
from tests.support.tenants import temporary_objects_allowed

pytestmark = pytest.mark.django_db


def raw(query, params=()):
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def execute(query, params=()):
    with connection.cursor() as cursor:
        cursor.execute(query, params)


def lookup(identifier):
    return raw(f"SELECT {LOOKUP_FUNCTION}(%s)", [identifier])[0][0]


@pytest.fixture
def acme(tenant_factory):
    return tenant_factory("Acme", "acme")


@pytest.fixture
def globex(tenant_factory):
    return tenant_factory("Globex", "globex")


# --- who sees which rows -------------------------------------------------------------------------


def test_a_tenant_lists_only_its_own_row(acme, globex):
    with run_as(acme):
        assert list(Tenant.objects.values_list("name", "slug")) == [("Acme", "acme")]
        assert raw("SELECT name FROM tenants WHERE slug = 'globex'") == []
        assert not Tenant.objects.filter(pk=globex.pk).exists()
        assert get_tenant() == acme
    with run_as(globex):
        assert list(Tenant.objects.values_list("slug", flat=True)) == ["globex"]


def test_code_outside_any_tenant_sees_no_tenant(acme, globex):
    # Least privilege: no scope, no rows, as for every tenant table.
    assert Tenant.objects.count() == 0
    assert raw("SELECT count(*) FROM tenants") == [(0,)]
    with no_tenant():
        assert Tenant.objects.count() == 0


def test_system_mode_sees_every_tenant(acme, globex):
    with run_as_system():
        assert sorted(Tenant.objects.values_list("slug", flat=True)) == ["acme", "globex"]


def test_the_api_reads_any_tenant_from_any_scope(acme, globex):
    with run_as(acme):
        assert api.get_tenant_by_slug("globex") == globex
        assert api.get_tenant(globex.pk) == globex
        assert api.get_tenant(acme.pk) == acme
        # The scope is unchanged afterwards: still Acme's row only.
        assert list(Tenant.objects.values_list("slug", flat=True)) == ["acme"]
    assert api.get_tenant_by_slug("acme") == acme
    assert [t.slug for t in api.list_tenants()] == ["acme", "globex"]


# --- resolving identifiers -----------------------------------------------------------------------


def test_slugs_and_ids_resolve_outside_and_inside_scopes(acme, globex):
    assert resolve_to_id("globex") == globex.pk
    assert resolve_to_id(str(acme.pk).upper()) == acme.pk
    with run_as(acme):
        # The middleware of a request may resolve another identifier inside a scope.
        assert resolve_to_id("globex") == globex.pk
        assert resolve_to_id(str(globex.pk)) == globex.pk
    assert resolve_to_id("initech") is None
    assert resolve_to_id(str(uuid.uuid4())) is None


@pytest.mark.parametrize(
    "identifier", ["acm%", "%", "_cme", "acme_", "ACME", " acme", "acme ", "a.*", "^acme$", ""]
)
def test_the_function_matches_exactly_never_as_a_pattern(acme, identifier):
    assert lookup(identifier) is None


def test_the_function_resolves_exact_slugs_and_canonical_ids(acme):
    assert lookup("acme") == acme.pk
    assert lookup(str(acme.pk)) == acme.pk
    assert lookup(None) is None
    # A string shaped like an id is an id, never a slug.
    assert lookup(str(uuid.uuid4())) is None


def test_the_function_returns_an_id_and_nothing_else(acme):
    rows = raw(
        """SELECT p.prorettype::regtype::text, p.proretset, p.prosecdef, p.provolatile,
                  p.proconfig, pg_get_userbyid(p.proowner) = pg_get_userbyid(c.relowner)
           FROM pg_proc p, pg_class c
           WHERE p.oid = to_regprocedure(%s) AND c.oid = 'tenants'::regclass""",
        [LOOKUP_SIGNATURE],
    )
    assert rows == [("uuid", False, True, "s", ["search_path=pg_catalog, pg_temp"], True)]
    assert raw("SELECT count(*) FROM pg_proc WHERE proname = %s", [LOOKUP_FUNCTION]) == [(1,)]


def test_execute_is_granted_to_the_app_role_not_to_public():
    assert raw(
        "SELECT has_function_privilege(current_user, %s, 'EXECUTE')", [LOOKUP_SIGNATURE]
    ) == [(True,)]
    public = raw(
        "SELECT count(*) FROM pg_proc p, aclexplode(p.proacl) a "
        "WHERE p.oid = to_regprocedure(%s) AND a.grantee = 0",
        [LOOKUP_SIGNATURE],
    )
    assert public == [(0,)]


@pytest.mark.django_db(transaction=True)
def test_objects_the_caller_creates_are_never_looked_up(acme):
    # pg_temp comes first for tables on any search_path that does not name it; the function's
    # own search_path and its schema-qualified table leave the caller's tables out. (The role may
    # create no temporary table at all after `better_tenant init`; allowed here to show that.)
    with temporary_objects_allowed(), transaction.atomic():
        execute("CREATE TEMP TABLE tenants (id uuid, slug text) ON COMMIT DROP")
        execute("INSERT INTO tenants VALUES (%s, 'evil'), (%s, 'acme')", [uuid.uuid4()] * 2)
        execute("SET LOCAL search_path = pg_temp, public")
        assert lookup("evil") is None
        assert lookup("acme") == acme.pk


def test_the_app_role_cannot_replace_the_function():
    with (
        pytest.raises(DatabaseError, match=r"must be owner|permission denied"),
        transaction.atomic(),
    ):
        execute(
            f"CREATE OR REPLACE FUNCTION {LOOKUP_FUNCTION}(identifier text) RETURNS uuid "
            "LANGUAGE sql AS 'SELECT NULL::uuid'"
        )


def test_the_owner_policy_names_only_the_owner():
    rows = raw(
        """SELECT pol.polroles = ARRAY[c.relowner]::oid[], pol.polcmd
           FROM pg_policy pol JOIN pg_class c ON c.oid = pol.polrelid
           WHERE c.oid = 'tenants'::regclass AND pol.polname = 'rls_tenants_owner'"""
    )
    assert rows == [(True, "r")]


# --- the migration -------------------------------------------------------------------------------


def test_sqlmigrate_shows_the_policy_and_the_function():
    out = io.StringIO()
    call_command("sqlmigrate", "better_tenant", "0002", stdout=out)
    text = out.getvalue()
    assert 'CREATE POLICY "rls_tenants_owner" ON "tenants" FOR SELECT TO CURRENT_USER' in text
    assert (
        'ALTER POLICY "rls_tenants_read" ON "tenants" USING (id = (SELECT better_tenant_current()))'
        in text
    )
    assert f"CREATE FUNCTION {LOOKUP_FUNCTION}(identifier text) RETURNS uuid" in text
    assert "SECURITY DEFINER\nSET search_path = pg_catalog, pg_temp" in text
    assert f"REVOKE ALL ON FUNCTION {LOOKUP_SIGNATURE} FROM PUBLIC;" in text
    assert " LIKE " not in text.upper()
    back = io.StringIO()
    call_command("sqlmigrate", "better_tenant", "0002", backwards=True, stdout=back)
    assert f"DROP FUNCTION IF EXISTS {LOOKUP_SIGNATURE};" in back.getvalue()
    assert 'ALTER POLICY "rls_tenants_read" ON "tenants" USING (true);' in back.getvalue()
