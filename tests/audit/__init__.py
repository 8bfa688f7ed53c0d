"""Tests of better_audit."""
