"""Audit rows as the tests read them: in system mode, in the order they were written."""

from __future__ import annotations

from typing import Any

from better_audit.models import AuditLog
from better_tenant import run_as_system
from better_tenant.shortcuts import system_scope


def logs(**filters: Any) -> list[AuditLog]:
    """Audit rows matching ``filters``, read in system mode (every tenant and no tenant)."""
    with run_as_system():
        rows = list(AuditLog.objects.filter(**filters))
    return sorted(rows, key=lambda row: (row.timestamp, _numeric(row.record_id)))


def _numeric(value: str) -> Any:
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


# --- fixture rows -------------------------------------------------------------------------------
#
# The application role cannot insert into audit_logs: entries come from the capture triggers and
# better_audit_write(), which stamp the time. Tests that need rows of their own (an old timestamp,
# a chosen actor) write them as a test-only role with an INSERT policy of its own, which the app
# role may SET ROLE to without inheriting it.

FIXTURE_ROLE = "better_test_audit_rows"


def fixture_role_sql(app_user: str) -> str:
    from better_core.roles import literal, membership_sql, qn

    role = qn(FIXTURE_ROLE)
    return "\n".join(
        [
            f"""DO $fixture$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {literal(FIXTURE_ROLE)}) THEN
    CREATE ROLE {role} NOLOGIN;
  END IF;
END $fixture$;""",
            f"GRANT SELECT, INSERT ON audit_logs TO {role};",
            "DROP POLICY IF EXISTS test_fixture_rows ON audit_logs;",
            f"CREATE POLICY test_fixture_rows ON audit_logs FOR ALL TO {role} "
            "USING (true) WITH CHECK (true);",
            membership_sql(app_user, FIXTURE_ROLE),
        ]
    )


def install_fixture_role(django_db_blocker: Any) -> None:
    """As the owner of each test database that has audit_logs, let the app role write rows."""
    from django.db import connections

    from better_tenant.testing import connected_as_owner

    app_users = {alias: connections[alias].settings_dict["USER"] for alias in connections}
    with django_db_blocker.unblock(), connected_as_owner():
        for alias in connections:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT to_regclass('audit_logs') IS NOT NULL")
                if cursor.fetchone()[0]:
                    cursor.execute(fixture_role_sql(app_users[alias]))


def add_rows(*rows: AuditLog, using: str = "default") -> list[AuditLog]:
    """Insert audit rows as they are given (any tenant, any time), as the fixture role."""
    from django.db import connections, transaction

    # The role switch is transaction-local: without better_tenant, system_scope() opens none.
    with (
        system_scope(using=using),
        transaction.atomic(using=using),
        connections[using].cursor() as cursor,
    ):
        cursor.execute("SELECT current_setting('role')")
        (previous,) = cursor.fetchone()
        cursor.execute("SELECT set_config('role', %s, true)", [FIXTURE_ROLE])
        AuditLog.objects.using(using).bulk_create(rows)
        cursor.execute("SELECT set_config('role', %s, true)", [previous])
    return list(rows)
