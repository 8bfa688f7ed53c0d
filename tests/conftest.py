"""Test harness: the test database is migrated as the owner; tests run as the app role."""

import pytest

from better_tenant.testing import django_db_setup_with_roles as django_db_setup  # noqa: F401

# Each project installs only some of the apps and needs its own settings: tests/test_projects.py
# runs them one by one in pytest subprocesses.
collect_ignore = ["projects"]


@pytest.fixture(autouse=True)
def _clear_caches():
    """Slug and id lookups are cached; a rolled-back test must not leave answers behind."""
    from django.core.cache import caches

    for cache in caches.all():
        cache.clear()
    yield
