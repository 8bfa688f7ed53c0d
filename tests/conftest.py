"""Test harness: the test database is migrated as the owner; tests run as the app role."""

from typing import Any

import pytest

from better_tenant.testing import django_db_setup_with_roles  # noqa: F401


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup_with_roles: None, django_db_blocker: Any) -> None:  # noqa: F811
    """The harness's databases, and a role the tests write audit rows of their own with."""
    from django.apps import apps

    if apps.is_installed("better_audit"):
        from tests.support.audit import install_fixture_role

        install_fixture_role(django_db_blocker)


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
