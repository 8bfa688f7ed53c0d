"""Tenants with notes for the request tests: ``acme`` and ``globex``."""

import pytest

from better_tenant.models import Tenant
from tests.support.tenants import tenant_with_notes


@pytest.fixture
def acme() -> Tenant:
    return tenant_with_notes("Acme", "acme-1", "acme-2")


@pytest.fixture
def globex() -> Tenant:
    return tenant_with_notes("Globex", "globex-1")
