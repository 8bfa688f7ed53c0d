"""Harness of the test projects: run one project per process, with its own settings module."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

from better_tenant.testing import django_db_setup_with_roles  # noqa: F401


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup_with_roles: None, django_db_blocker: Any) -> None:  # noqa: F811
    """The harness's databases, and a role the tests write audit rows of their own with."""
    from django.apps import apps

    if apps.is_installed("better_audit"):
        from tests.support.audit import install_fixture_role

        install_fixture_role(django_db_blocker)


def pytest_configure(config: pytest.Config) -> None:
    # Under the main suite's settings every app is installed, which is what these projects avoid.
    module = getattr(settings, "SETTINGS_MODULE", None) or ""
    if not module.startswith("tests.projects."):
        raise pytest.UsageError(
            "The test projects run one at a time with their own settings: "
            "pytest tests/projects/<name> --ds=tests.projects.<name>.settings "
            "--confcutdir=tests/projects (or run tests/test_projects.py)."
        )


@pytest.fixture(autouse=True)
def _clear_caches():
    """Cached lookups must not outlive a rolled-back test."""
    from django.core.cache import caches

    for cache in caches.all():
        cache.clear()
    yield
