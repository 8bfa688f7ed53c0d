"""Harness of the example's tests: its own settings, a test database migrated as the owner."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings

from better_tenant.testing import django_db_setup_with_roles as django_db_setup  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    # Under another project's settings the example's app, URLs and audit rules are missing.
    module = getattr(settings, "SETTINGS_MODULE", None) or ""
    if module != "example_project.tests.settings":
        raise pytest.UsageError(
            "The example's tests run with its own settings: pytest example_project/tests "
            "--ds=example_project.tests.settings --confcutdir=example_project/tests "
            "(or run tests/test_example.py)."
        )


@pytest.fixture(autouse=True)
def _clear_caches() -> Iterator[None]:
    """Slug and id lookups are cached; a rolled-back test must not leave answers behind."""
    from django.core.cache import caches

    for cache in caches.all():
        cache.clear()
    yield
