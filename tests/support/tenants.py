"""Tenants holding notes (tests.testapp.models.Note), for the request tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from better_tenant import run_as
from better_tenant.api import create_tenant
from better_tenant.models import Tenant
from tests.testapp.models import Note


def tenant_with_notes(name: str, *titles: str) -> Tenant:
    """A new tenant named ``name`` (a unique slug) holding notes with ``titles``."""
    suffix = uuid.uuid4().hex[:8]
    tenant = create_tenant(f"{name} {suffix}", f"{name.lower()}-{suffix}")
    with run_as(tenant):
        for title in titles:
            Note.objects.create(title=title)
    return tenant


@contextmanager
def unsigned_context(settings: Any) -> Iterator[None]:
    """The opt-out for a while: ``SIGNED_CONTEXT`` False and the database's functions to match.

    For clients that set the plain setting themselves (the published reference server).
    """
    from django.db import connection

    from better_tenant.sql import context_functions_sql
    from better_tenant.testing import connected_as_owner

    def install(signed: bool) -> None:
        with connected_as_owner(), connection.cursor() as cursor:
            cursor.execute(context_functions_sql(signed))
        connection.close()

    before = getattr(settings, "BETTER_TENANT", {})
    settings.BETTER_TENANT = {**before, "SIGNED_CONTEXT": False}
    install(False)
    try:
        yield
    finally:
        install(True)
        settings.BETTER_TENANT = before


@contextmanager
def temporary_objects_allowed() -> Iterator[None]:
    """Let the application role create temporary objects for a while (``better_tenant init``
    revokes that from it), for tests of what SQL that does so meets."""
    from django.db import connection

    from better_tenant.testing import connected_as_owner

    role = connection.ops.quote_name(connection.settings_dict["USER"])

    def grant(verb: str) -> None:
        with connected_as_owner(), connection.cursor() as cursor:
            database = connection.ops.quote_name(connection.settings_dict["NAME"])
            to = "TO" if verb == "GRANT" else "FROM"
            cursor.execute(f"{verb} TEMPORARY ON DATABASE {database} {to} {role}")
        connection.close()

    grant("GRANT")
    try:
        yield
    finally:
        grant("REVOKE")
