"""PostgreSQL role SQL shared by the apps: owner/app roles, NOLOGIN roles entered by SET ROLE."""

from __future__ import annotations


def qn(name: str) -> str:
    """Quote an SQL identifier (schema-qualified names are quoted part by part)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def literal(value: str) -> str:
    """Quote an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def ensure_role_sql(role: str, hint: str = "") -> str:
    """Create the NOLOGIN ``role`` if it is missing, with a clear error when that is refused."""
    advice = f"Create it once as a superuser: CREATE ROLE {qn(role)} NOLOGIN;"
    if hint:
        advice += " " + hint
    return f"""DO $better$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {literal(role)}) THEN
    BEGIN
      CREATE ROLE {qn(role)} NOLOGIN NOSUPERUSER NOBYPASSRLS;
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE EXCEPTION USING
        MESSAGE = 'the role ' || {literal(role)} || ' does not exist and '
                  || current_user || ' may not create it',
        HINT = {literal(advice)};
    END;
  END IF;
END
$better$;"""


def bootstrap_roles_sql(owner: str, app: str, *switch_roles: str) -> str:
    """Superuser SQL creating the owner and app roles and the NOLOGIN roles the app may enter.

    The owner owns the tables and runs migrations; the app role is LOGIN, NOSUPERUSER,
    NOBYPASSRLS and NOINHERIT, owns nothing, and is a non-inheriting member of each switch role.
    Idempotent.
    """
    parts = [
        f"""DO $better$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {literal(owner)}) THEN
    CREATE ROLE {qn(owner)} LOGIN CREATEDB CREATEROLE NOSUPERUSER;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {literal(app)}) THEN
    CREATE ROLE {qn(app)} LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT NOCREATEDB NOCREATEROLE;
  END IF;
END
$better$;"""
    ]
    for role in switch_roles:
        parts += [ensure_role_sql(role), membership_sql(app, role)]
    return "\n".join(parts)


def membership_sql(app: str, role: str) -> str:
    """Let ``app`` SET ROLE to ``role`` without inheriting its privileges or policies.

    PostgreSQL 16 can say so on the grant (INHERIT FALSE); older servers need the app role itself
    to be NOINHERIT, in which case its table privileges must be granted to it directly.
    """
    return f"""DO $better$
BEGIN
  IF EXISTS (
    SELECT 1 FROM pg_auth_members m
    WHERE m.roleid = (SELECT oid FROM pg_roles WHERE rolname = {literal(role)})
      AND m.member = (SELECT oid FROM pg_roles WHERE rolname = {literal(app)})
  ) THEN
    RETURN;
  END IF;
  IF current_setting('server_version_num')::int >= 160000 THEN
    EXECUTE 'GRANT ' || quote_ident({literal(role)}) || ' TO ' || quote_ident({literal(app)})
            || ' WITH INHERIT FALSE, SET TRUE';
  ELSE
    EXECUTE 'ALTER ROLE ' || quote_ident({literal(app)}) || ' NOINHERIT';
    EXECUTE 'GRANT ' || quote_ident({literal(role)}) || ' TO ' || quote_ident({literal(app)});
  END IF;
END
$better$;"""


def grant_privileges_sql(
    owner: str | None, app: str, system_role: str, schema: str = "public"
) -> str:
    """Grant table DML (never TRUNCATE) and sequence use to the app and system roles.

    Covers the tables that exist now and, when ``owner`` is given, those the owner creates later.
    """
    roles = f"{qn(app)}, {qn(system_role)}"
    statements = [
        f"GRANT USAGE ON SCHEMA {qn(schema)} TO {roles};",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {qn(schema)} TO {roles};",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {qn(schema)} TO {roles};",
    ]
    if owner:
        statements += [
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {qn(owner)} IN SCHEMA {qn(schema)} "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {roles};",
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {qn(owner)} IN SCHEMA {qn(schema)} "
            f"GRANT USAGE, SELECT ON SEQUENCES TO {roles};",
        ]
    return "\n".join(statements)
