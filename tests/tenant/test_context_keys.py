"""Rotating the context key with two live keys, and ``better_tenant check`` on app and database."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from better_tenant import keys, run_as
from better_tenant.hardening import PROBE_TENANT
from better_tenant.sql import ENTER_FUNCTION
from better_tenant.testing import connected_as_owner
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)

OLD = "old context key, long enough to be accepted 0001"
NEW = "new context key, long enough to be accepted 0002"


@pytest.fixture
def keyed(settings: Any) -> Iterator[Any]:
    """``keyed(key, fallbacks)``: the settings of the app and of ``init``, which then runs."""
    app_role = connection.settings_dict["USER"]

    def configure(key: str | None, fallbacks: list[str] | None = None, init: bool = True) -> None:
        settings.BETTER_TENANT = {
            **settings.BETTER_TENANT,
            "CONTEXT_KEY": key,
            "CONTEXT_KEY_FALLBACKS": fallbacks,
        }
        if not init:
            return
        with connected_as_owner():
            call_command("better_tenant", "init", "--app-role", app_role, stdout=io.StringIO())
        connection.close()

    before = dict(settings.BETTER_TENANT)
    yield configure
    settings.BETTER_TENANT = before
    configure(None)  # the suite's own keys again, derived from SECRET_KEY


def accepted(key_setting: str) -> bool:
    """Whether the database turns a proof signed with ``key_setting`` into a tenant."""
    key = keys.key_from_setting(key_setting)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SELECT {ENTER_FUNCTION}(%s)", [keys.proof(PROBE_TENANT, key)])
    except DatabaseError as exc:
        assert "no key installed in the database matches" in str(exc)
        return False
    return True


def findings() -> dict[str, list[str]]:
    out = io.StringIO()
    with contextlib.suppress(SystemExit):  # exit 1 when it finds an error; the report is read
        call_command("better_tenant", "check", "--json", stdout=out)
    found: dict[str, list[str]] = {}
    for finding in json.loads(out.getvalue())["findings"]:
        found.setdefault(finding["code"], []).append(finding["message"])
    return found


def test_a_key_rotates_with_two_live_keys(keyed, tenant_factory):
    tenant = tenant_factory()
    keyed(OLD)
    assert accepted(OLD) and not accepted(NEW)
    with run_as(tenant):
        Note.objects.create(title="signed with the old key")

    # Step 1, the database first: it accepts both while applications still sign with the old key.
    keyed(NEW, [OLD])
    assert accepted(OLD) and accepted(NEW)
    assert len(findings()["context_key"]) == 2
    # Step 2, the application signs with the new key.
    with run_as(tenant):
        assert Note.objects.get().title == "signed with the old key"

    # Step 3, the fallback goes: the old key is refused, and check says so for an app that
    # still signs with it.
    keyed(NEW, [])
    assert accepted(NEW) and not accepted(OLD)
    keyed(OLD, [], init=False)  # an application deployed with the stale key
    problems = findings()
    assert "context_key_mismatch" in problems and "context_key" not in problems


def test_init_writes_the_keys_in_no_statement_text():
    from tests.support.wire import wire

    with connected_as_owner():
        connection.ensure_connection()
        with wire() as sent:
            keys.install(connection)
    secrets = [str(value) for value in keys.halves(keys.current_key())]
    texts = [m for m in sent if m.startswith(("Query", "Parse"))]
    assert texts and not any(secret in text for text in texts for secret in secrets)
    # The key halves went as bound values of setval($1, $2, true).
    assert sum("setval" in m for m in texts) == 2 and any(m.startswith("Bind") for m in sent)
