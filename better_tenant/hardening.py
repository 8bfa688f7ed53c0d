"""What ``better_tenant check`` verifies of the signed context and of an injected statement's reach.

The mode (signed or the unsigned opt-out), that the database accepts the application's live keys,
that no role but the owner reads the keys, and that the application role can leave nothing behind
on a connection for a later request to run: no temporary objects (the temporary schema is
searched first, so a temp view named like a tenant table would run in another tenant's request)
and no CREATE on a schema of its search_path.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from better_tenant import keys, sql
from better_tenant.inspection import ERROR, OK, WARNING, Finding

SECTION = "signed context"
# A tenant id no tenant has: the check enters it and reads it back.
PROBE_TENANT = str(uuid.UUID(int=0))


def context_mode(cursor: Any) -> str | None:
    """``"signed"``, ``"unsigned"`` or None (not installed), read from the database."""
    cursor.execute(
        "SELECT p.prosecdef FROM pg_proc p WHERE p.oid = to_regprocedure(%s)",
        [f"{sql.CURRENT_FUNCTION}()"],
    )
    row = cursor.fetchone()
    if row is None:
        return None
    return "signed" if row[0] else "unsigned"


def _probe(raw: psycopg.Connection, key: bytes) -> str | None:
    """None when the database turns a proof signed with ``key`` into the probe tenant, else why
    not. Runs in a transaction of its own that is rolled back."""
    try:
        with raw.transaction(force_rollback=True), psycopg.Cursor(raw) as cursor:
            cursor.execute(f"SELECT {sql.ENTER_FUNCTION}(%s)", [keys.proof(PROBE_TENANT, key)])
            cursor.execute(f"SELECT {sql.CURRENT_FUNCTION}()::text")
            row = cursor.fetchone()
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]
    if row is None or row[0] != PROBE_TENANT:
        return f"the proof was accepted but {sql.CURRENT_FUNCTION}() read {row and row[0]!r}"
    return None


def context_findings(connection: Any, role: str) -> list[Finding]:
    """Judge the signed context and the role's reach (``connection``: a Django connection)."""
    from better_tenant.conf import tenant_settings

    found: list[Finding] = []
    with connection.cursor() as cursor:
        mode = context_mode(cursor)
        wanted = "signed" if tenant_settings.SIGNED_CONTEXT else "unsigned"
        if mode is None:
            return [
                Finding(
                    ERROR,
                    SECTION,
                    "context_missing",
                    f"{sql.CURRENT_FUNCTION}() is not installed",
                    "Run `manage.py migrate better_tenant`.",
                )
            ]
        if mode != wanted:
            found.append(
                Finding(
                    ERROR,
                    SECTION,
                    "context_mode_mismatch",
                    f"the database is in {mode} mode but BETTER_TENANT['SIGNED_CONTEXT'] asks "
                    f"for {wanted}: every scope reads as no tenant",
                    "Run `manage.py better_tenant init` as the owner to install the functions "
                    "of the configured mode.",
                )
            )
        elif mode == "signed":
            found.append(
                Finding(
                    OK,
                    SECTION,
                    "context_signed",
                    "signed mode: policies verify a MAC bound to the backend and transaction",
                )
            )
        else:
            found.append(
                Finding(
                    WARNING,
                    SECTION,
                    "context_unsigned",
                    "unsigned mode: a statement injected into a tenant's request can name "
                    "another tenant with set_config",
                    "Set BETTER_TENANT['SIGNED_CONTEXT'] = True and run `better_tenant init`.",
                )
            )
        cursor.execute(
            "SELECT string_agg(n, ', ') FROM unnest(%s::text[]) AS n "
            "WHERE to_regclass(n) IS NOT NULL "
            "AND has_sequence_privilege(%s, to_regclass(n), 'SELECT,USAGE,UPDATE')",
            [list(sql.KEY_SEQUENCES), role],
        )
        exposed = cursor.fetchone()[0]
        if exposed:
            found.append(
                Finding(
                    ERROR,
                    SECTION,
                    "context_keys_exposed",
                    f"{role} holds a privilege on the key sequences {exposed}: it can read or "
                    "replace the keys and sign any tenant",
                    "Run `manage.py better_tenant init` as the owner (it revokes them).",
                )
            )
        found += _reach(cursor, role)
    if mode == "signed" and wanted == "signed":
        connection.ensure_connection()
        live = keys.live_keys()
        for index, key in enumerate(live):
            which = "CONTEXT_KEY" if index == 0 else "the fallback key"
            problem = _probe(connection.connection, key)
            if problem is None:
                found.append(
                    Finding(
                        OK,
                        SECTION,
                        "context_key",
                        f"the database accepts {which} (fingerprint {keys.fingerprint(key)})",
                    )
                )
            else:
                found.append(
                    Finding(
                        ERROR,
                        SECTION,
                        "context_key_mismatch",
                        f"the database refuses {which} (fingerprint {keys.fingerprint(key)}): "
                        f"{problem}",
                        "Run `manage.py better_tenant init` as the owner with the same "
                        "BETTER_TENANT['CONTEXT_KEY'] (or SECRET_KEY) as the application: it "
                        "installs the keys and this version's functions.",
                    )
                )
    return found


def _reach(cursor: Any, role: str) -> list[Finding]:
    """What the role could leave on a connection for later requests to run."""
    found = []
    cursor.execute("SELECT has_database_privilege(%s, current_database(), 'TEMP')", [role])
    if cursor.fetchone()[0]:
        found.append(
            Finding(
                WARNING,
                SECTION,
                "temp_privilege",
                f"{role} may create temporary tables, views and functions: an injected "
                "statement could leave a temp view named like a tenant table on the connection, "
                "which a later request of another tenant would run",
                "Run `manage.py better_tenant init` as the database owner (it revokes TEMPORARY "
                "from PUBLIC), or as a superuser: REVOKE TEMPORARY ON DATABASE <db> FROM PUBLIC;",
            )
        )
    cursor.execute(
        "SELECT string_agg(quote_ident(s), ', ') FROM unnest(current_schemas(false)) AS s "
        "WHERE has_schema_privilege(%s, s, 'CREATE')",
        [role],
    )
    schemas = cursor.fetchone()[0]
    if schemas:
        found.append(
            Finding(
                WARNING,
                SECTION,
                "schema_create",
                f"{role} may create objects in {schemas} on its search_path: an injected "
                "statement could add a function or operator that later statements pick up",
                f"As the schema's owner: REVOKE CREATE ON SCHEMA {schemas} FROM PUBLIC, {role};",
            )
        )
    if not found:
        found.append(
            Finding(
                OK,
                SECTION,
                "reach",
                f"{role} can create no temporary or schema objects for later requests to run",
            )
        )
    return found
