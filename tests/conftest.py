"""Test harness: the test database is migrated as the owner; tests run as the app role."""

from better_tenant.testing import django_db_setup_with_roles as django_db_setup  # noqa: F401
