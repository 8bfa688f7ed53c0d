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


def bypassing_role_url() -> str | None:
    """A DATABASE_URL of a role that bypasses RLS on this server, when one can be had: the owner
    role when it does, else the bootstrap superuser ``postgres`` when it may connect without a
    password (the embedded servers over their socket, a trust-authenticated local server)."""
    from urllib.parse import quote

    import psycopg

    settings = connection.settings_dict
    owner = settings["TEST"]["OWNER"]
    candidates = [(owner["USER"], owner.get("PASSWORD") or ""), ("postgres", "")]
    with connection.cursor() as cursor:
        for user, password in candidates:
            cursor.execute(
                "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = %s", [user]
            )
            row = cursor.fetchone()
            if not (row and row[0]):
                continue
            host = settings.get("HOST") or "localhost"
            params = {"host": host, "port": settings.get("PORT") or None, "dbname": "postgres"}
            try:
                psycopg.connect(user=user, password=password, connect_timeout=5, **params).close()
            except psycopg.OperationalError:
                continue  # the role exists but this run cannot sign in as it
            port = f":{settings['PORT']}" if settings.get("PORT") else ""
            secret = f":{quote(password, safe='')}" if password else ""
            who = f"{quote(user, safe='')}{secret}"
            if host.startswith("/"):
                # A socket directory travels as ?host=, which the URL parser passes through.
                return f"postgres://{who}@/{settings['NAME']}?host={quote(host, safe='/')}"
            return f"postgres://{who}@{host}{port}/{settings['NAME']}"
    return None


@pytest.mark.django_db
def test_a_run_as_a_role_that_bypasses_rls_stops_with_one_line():
    import os
    import subprocess
    import sys

    url = bypassing_role_url()
    if url is None:
        pytest.skip("no role that bypasses RLS is at hand on this server")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DATABASE_OWNER_URL": url,
        "BETTER_TEST_DB": f"test_refusal_{os.getpid()}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests/tenant/test_harness.py"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, output
    refusals = [line for line in output.splitlines() if "row-level security" in line]
    assert len(refusals) == 1 and "would not apply" in refusals[0], output
    assert " passed" not in output and " failed" not in output


def test_the_refusal_names_what_is_wrong(monkeypatch):
    from better_tenant import testing

    class Cursor:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def execute(self, *args):
            pass

        def fetchone(self):
            return ("app", False, True)

    class Conn:
        vendor = "postgresql"

        def cursor(self):
            return Cursor()

        def close(self):
            pass

    class Handler:
        def __iter__(self):
            return iter(["default"])

        def __getitem__(self, alias):
            return Conn()

    monkeypatch.setattr("django.db.connections", Handler())
    line = testing._bypassing_role()
    assert "connect as app, a role with BYPASSRLS" in line and "\n" not in line
