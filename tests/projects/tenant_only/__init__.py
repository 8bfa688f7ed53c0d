"""Test project with better_tenant alone."""
