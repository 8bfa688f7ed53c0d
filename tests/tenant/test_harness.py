"""The harness runs tests as an application role that cannot bypass RLS."""

import pytest
from django.db import connection


@pytest.mark.django_db
def test_tests_run_as_a_role_without_rls_bypass_or_ownership():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rolsuper, rolbypassrls, rolinherit FROM pg_roles WHERE rolname = current_user"
        )
        superuser, bypass, _inherit = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) = current_user"
        )
        owned = cursor.fetchone()[0]
        cursor.execute(
            "SELECT bool_or(has_table_privilege(current_user, c.oid, 'TRUNCATE')) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
            "AND c.relkind = 'r'"
        )
        truncate = cursor.fetchone()[0]
    assert (superuser, bypass, owned, truncate) == (False, False, 0, False)
