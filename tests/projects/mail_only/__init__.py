"""Test project with better_mail alone (and Django's admin)."""
