"""The console tables: their indexes, the model permissions and the purge of expired rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from better_console import purge_expired
from better_console.models import ConsoleSession, MagicLink
from better_console.testing import session_token

pytestmark = pytest.mark.django_db


def indexed_columns(table: str) -> dict[tuple[str, ...], bool]:
    """Indexed column lists, True where one of their indexes is unique."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    found: dict[tuple[str, ...], bool] = {}
    for c in constraints.values():
        if c["index"] or c["unique"]:
            columns = tuple(c["columns"])
            found[columns] = found.get(columns, False) or bool(c["unique"])
    return found


def test_the_lookups_are_indexed():
    sessions = indexed_columns("better_console_sessions")
    assert sessions[("token_hash",)] is True
    assert ("expires_at",) in sessions and ("session_id",) in sessions
    links = indexed_columns("better_console_magic_links")
    assert links[("session_id",)] is True
    assert ("expires_at",) in links


def test_the_console_levels_are_model_permissions():
    codenames = [codename for codename, _ in ConsoleSession._meta.permissions]
    assert codenames == ["console_read", "console_write", "console_admin"]


def test_purge_deletes_only_expired_rows():
    session_token("read")
    session_token("read", lifetime=3600)
    ConsoleSession.objects.filter(
        pk=ConsoleSession.objects.order_by("created_at", "id").first().pk
    ).update(expires_at=timezone.now() - timedelta(seconds=1))
    now = timezone.now()
    MagicLink.objects.create(
        session_id="sess_old", email="a@example.com", code_hash="0" * 64, expires_at=now
    )
    MagicLink.objects.create(
        session_id="sess_new",
        email="a@example.com",
        code_hash="0" * 64,
        expires_at=now + timedelta(minutes=5),
    )
    assert purge_expired() == (1, 1)
    assert ConsoleSession.objects.count() == 1
    assert list(MagicLink.objects.values_list("session_id", flat=True)) == ["sess_new"]
