"""Fixtures of the better_audit tests: clean rule and hook lists after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from better_audit import enrichment, hooks


@pytest.fixture(autouse=True)
def _forget_rules_and_hooks() -> Iterator[None]:
    yield
    enrichment.registry.clear()
    hooks.clear()
