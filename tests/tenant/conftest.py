"""Tenants with notes for the request tests: ``acme`` and ``globex``, and ``make`` for more."""

import uuid

import pytest

from better_tenant import run_as
from better_tenant.api import create_tenant
from tests.testapp.models import Note


def make(name: str, *titles: str):
    """A new tenant named ``name`` (a unique slug) holding notes with ``titles``."""
    suffix = uuid.uuid4().hex[:8]
    tenant = create_tenant(f"{name} {suffix}", f"{name.lower()}-{suffix}")
    with run_as(tenant):
        for title in titles:
            Note.objects.create(title=title)
    return tenant


@pytest.fixture
def acme():
    return make("Acme", "acme-1", "acme-2")


@pytest.fixture
def globex():
    return make("Globex", "globex-1")
