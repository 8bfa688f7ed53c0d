"""The context functions run as the owner: no search_path can put another object in their place."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction

from better_tenant import keys, run_as, sql
from better_tenant.testing import connected_as_owner
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)

FUNCTIONS = [
    f"{sql.CURRENT_FUNCTION}()",
    f"{sql.SYSTEM_FUNCTION}()",
    f"{sql.HOLDS_FUNCTION}(text)",
    f"{sql.ENTER_FUNCTION}(text)",
]
# What a body may call or write without pg_catalog: SQL's own syntax, not names looked up.
SYNTAX = {"coalesce", "GREATEST", "OPERATOR", "IF", "AND", "OR", "NOT"}
SHADOW = "better_shadow"


def sources() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.oid::regprocedure::text, p.prosrc, p.prosecdef, p.proconfig "
            "FROM pg_proc p WHERE p.oid = ANY (%s::regprocedure[])",
            [FUNCTIONS],
        )
        rows = cursor.fetchall()
    assert len(rows) == len(FUNCTIONS)
    assert all(definer and config is None for _, _, definer, config in rows)
    return {name: source for name, source, _, _ in rows}


def test_every_name_in_the_definer_functions_is_qualified():
    for name, source in sources().items():
        code = re.sub(r"'(?:[^']|'')*'", "''", source)
        calls = set(re.findall(r"(?<![\w.])([A-Za-z_]\w*)\s*\(", code))
        assert calls <= SYNTAX, (name, calls - SYNTAX)
        # Every operator is spelled OPERATOR(pg_catalog.x); casts and types name pg_catalog.
        # (RAISE's options and plpgsql's assignment are syntax.)
        bare = re.sub(
            r"OPERATOR\(pg_catalog\.[^)\s]+\)|::pg_catalog\.|:=|(ERRCODE|MESSAGE|HINT) =", " ", code
        )
        assert not re.search(r"[=<>!|+*/#%~^&@-]|::", bare), (name, bare)
        declared = code.split("DECLARE", 1)[1].split("BEGIN", 1)[0]
        for line in filter(str.strip, declared.splitlines()):
            assert re.match(r"\s*\w+ pg_catalog\.\w+( := .*)?;$", line), (name, line)


@pytest.fixture
def shadows() -> Iterator[None]:
    """A schema of look-alikes for what the functions call, each raising when it runs."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        (app_role,) = cursor.fetchone()
    with connected_as_owner(), connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {SHADOW} CASCADE; CREATE SCHEMA {SHADOW}")
        for signature, returns in [
            ("sha512(bytea)", "bytea"),
            ("substr(text, integer, integer)", "text"),
            ("octet_length(text)", "integer"),
            ("current_setting(text, boolean)", "text"),
            ("encode(bytea, text)", "text"),
            ("hashtextextended(text, bigint)", "bigint"),
            ("starts_with(text, text)", "boolean"),
            ("set_config(text, text, boolean)", "text"),
            ("split_part(text, text, integer)", "text"),
            ("pg_sequence_last_value(regclass)", "bigint"),
            ("eq(text, text)", "boolean"),
            ("cat(text, text)", "text"),
            ("cat(bytea, bytea)", "bytea"),
        ]:
            cursor.execute(
                f"CREATE FUNCTION {SHADOW}.{signature} RETURNS {returns} LANGUAGE plpgsql "
                "AS $$BEGIN RAISE EXCEPTION 'shadowed'; END$$"
            )
        cursor.execute(
            f"CREATE OPERATOR {SHADOW}.= (LEFTARG = text, RIGHTARG = text, "
            f"FUNCTION = {SHADOW}.eq);"
            f"CREATE OPERATOR {SHADOW}.|| (LEFTARG = text, RIGHTARG = text, "
            f"FUNCTION = {SHADOW}.cat);"
            f"CREATE OPERATOR {SHADOW}.|| (LEFTARG = bytea, RIGHTARG = bytea, "
            f"FUNCTION = {SHADOW}.cat);"
            f"GRANT USAGE ON SCHEMA {SHADOW} TO {app_role}"
        )
    try:
        yield
    finally:
        connection.close()
        with connected_as_owner(), connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA {SHADOW} CASCADE")
        connection.close()


def shadowed(statement: str, params: Any = None) -> Any:
    """Run ``statement`` with the look-alikes first on the search_path."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL search_path = {SHADOW}, pg_catalog, public")
        cursor.execute(statement, params)
        return cursor.fetchall()


def test_look_alikes_first_on_the_search_path_are_never_called(tenant_factory, shadows):
    a, b = tenant_factory(), tenant_factory()
    with run_as(b):
        Note.objects.create(title="b-note")
    with run_as(a):
        Note.objects.create(title="a-note")
        # The policy's check, the system and marker checks: the verdicts of pg_catalog.
        assert shadowed("SELECT title FROM test_notes") == [("a-note",)]
        assert shadowed(f"SELECT {sql.SYSTEM_FUNCTION}(), {sql.HOLDS_FUNCTION}('x')") == [
            (False, False)
        ]
        # Entering B with a proof the database accepts, then a forged one.
        assert shadowed(f"SELECT {sql.ENTER_FUNCTION}(%s)", [keys.proof(str(b.pk))]) == [
            (str(b.pk),)
        ]
        assert shadowed("SELECT title FROM test_notes") == [("b-note",)]
        forged = f"{uuid.uuid4()}|{keys.proof(str(a.pk)).split('|', 1)[1]}"
        with pytest.raises(DatabaseError, match="no key installed"), transaction.atomic():
            shadowed(f"SELECT {sql.ENTER_FUNCTION}(%s)", [forged])
        with pytest.raises(DatabaseError, match="malformed context proof"), transaction.atomic():
            shadowed(f"SELECT {sql.ENTER_FUNCTION}(%s)", ["not a proof"])
