"""Parallel requests: one token per claimed link, and no more wrong codes than MAX_ATTEMPTS."""

from __future__ import annotations

from collections import Counter

import pytest
from django.test import Client

from better_console.magic_link import CODE_ALPHABET
from better_console.models import ConsoleSession, MagicLink
from tests.support.concurrency import run_threads
from tests.support.console import SENT, post

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _magic(configure):
    SENT.clear()
    configure(
        AUTO_APPROVE=False,
        THROTTLE=None,
        MAGIC_LINK={
            "ALLOWED_EMAILS": "admin@example.com",
            "SEND_CODE": "tests.support.console.capture_code",
        },
    )


def start() -> tuple[str, str]:
    response = post(Client(), "/console/session/init", {"email": "admin@example.com"})
    return response.json()["sessionId"], SENT[-1]["code"]


def test_parallel_claims_hand_out_one_token():
    session_id, code = start()
    post(Client(), "/console/session/verify", {"session_id": session_id, "code": code})
    answers: list[dict] = []
    problems: list[str] = []

    def claim(_: int) -> None:
        response = post(Client(), "/console/session/claim", {"session_id": session_id})
        assert response.status_code == 200
        answers.append(response.json())

    run_threads(8, claim, problems)

    assert problems == []
    assert Counter(answer["status"] for answer in answers) == {"claimed": 1, "already_claimed": 7}
    assert sum("sessionToken" in answer for answer in answers) == 1
    assert ConsoleSession.objects.count() == 1


def test_parallel_guesses_stop_at_max_attempts():
    session_id, code = start()
    guess = "".join(CODE_ALPHABET[(CODE_ALPHABET.index(c) + 1) % len(CODE_ALPHABET)] for c in code)
    statuses: list[int] = []
    problems: list[str] = []

    def attempt(_: int) -> None:
        response = post(
            Client(), "/console/session/verify", {"session_id": session_id, "code": guess}
        )
        statuses.append(response.status_code)

    run_threads(10, attempt, problems)

    assert problems == []
    assert Counter(statuses) == {401: 5, 429: 5}
    assert MagicLink.objects.get(session_id=session_id).failed_attempts == 5
