"""Differential tests: our console endpoints against the published reference server."""
