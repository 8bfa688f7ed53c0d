"""Test project with better_audit alone (and Django's admin)."""
