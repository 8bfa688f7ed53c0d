"""Carry the sender's tenant to Celery tasks and run them under run_as in the worker."""

from __future__ import annotations


def connect() -> None:
    """Connect the Celery signal receivers when Celery is installed."""
