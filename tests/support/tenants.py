"""Tenants holding notes (tests.testapp.models.Note), for the request tests."""

from __future__ import annotations

import uuid

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
