"""Test project with better_console alone."""
