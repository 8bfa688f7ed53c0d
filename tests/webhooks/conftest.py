"""Fixtures of the webhook tests: a catalog, a local HTTP receiver and fast retries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from better_webhooks import events
from tests.support.webhooks import USER_SCHEMA, receiver  # noqa: F401 - the fixture


@pytest.fixture(autouse=True)
def catalog() -> Iterator[None]:
    """``user.created`` (JSON Schema) and ``ping`` (any object) in the catalog."""
    events.register_event("user.created", "A user was created", USER_SCHEMA)
    events.register_event("ping", "A test event")
    yield
    events.unregister_event("user.created")
    events.unregister_event("ping")


@pytest.fixture
def fast_retries(settings: Any) -> None:
    """Retries a few milliseconds apart, no jitter."""
    settings.BETTER_WEBHOOKS = {
        **settings.BETTER_WEBHOOKS,
        "RETRY_SCHEDULE": [0.01],
        "RETRY_JITTER": 0,
        "MAX_ATTEMPTS": 3,
    }
