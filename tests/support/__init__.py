"""Helpers shared by the test packages: a real Celery worker and concurrent request runners."""
