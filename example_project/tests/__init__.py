"""Tests of the example project, run with its own settings (example_project.tests.settings)."""
