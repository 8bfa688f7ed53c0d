"""Fixtures of the no_tenant project: console sessions and a webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from better_console.testing import console_auth  # noqa: F401
from tests.projects.no_tenant.receiver import Receiver, receiving


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as receiver:
        yield receiver
