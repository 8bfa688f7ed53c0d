"""Fixtures of the differential tests: the reference servers."""

from tests.console.reference_server import reference_servers  # noqa: F401
