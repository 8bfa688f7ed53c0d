"""Tests of better_console."""
