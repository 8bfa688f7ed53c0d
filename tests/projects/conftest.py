"""Harness of the test projects: run one project per process, with its own settings module."""

from __future__ import annotations

import pytest
from django.conf import settings

from better_tenant.testing import django_db_setup_with_roles as django_db_setup  # noqa: F401


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
