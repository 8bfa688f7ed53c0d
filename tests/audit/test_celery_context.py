"""Celery tasks run in the audit context of their sender: eager mode and a real worker on Redis."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.authtoken.models import Token

from better_audit.celery import HEADER, InvalidContextHeader, context_from_header
from better_audit.context import audit_context, get_audit_context, merge_audit_context
from better_core import celery as core_celery
from tests.audit.tasks import audit_snapshot, nested_snapshot
from tests.support.celery_worker import TIMEOUT, eager_tasks, worker_fixture
from tests.testapp.celery import app

SNAPSHOT = "tests.audit.tasks.audit_snapshot"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "better_audit.middleware.AuditContextMiddleware",
]


def expected(
    task_id: str,
    actor_id: str | None = None,
    correlation_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    task: str = SNAPSHOT,
    **fields: Any,
) -> dict[str, Any]:
    return {
        "actor_id": actor_id,
        "label": None,
        "reason": None,
        "description": None,
        "compliance": [],
        "correlation_id": correlation_id or task_id,
        "metadata": {**(metadata or {}), "task": task, "task_id": task_id},
        **fields,
    }


# --- the publish side, without a broker ---------------------------------------------------------


def publish_headers(headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """What before_task_publish leaves in the headers of a message sent now."""
    headers = dict(headers or {})
    core_celery.add_headers(headers=headers)
    return headers


def test_header_carries_the_context_with_the_actor_resolved_at_send_time():
    assert publish_headers() == {}
    who = ["lazy-1"]
    with audit_context(actor=lambda: who[0], reason="import", metadata={"file": "a.csv"}) as ctx:
        sent = publish_headers()
        who[0] = "lazy-2"
        assert publish_headers()[HEADER]["actor_id"] == "lazy-2"
    assert sent[HEADER] == {
        "actor_id": "lazy-1",
        "label": None,
        "reason": "import",
        "description": None,
        "compliance": [],
        "metadata": {"file": "a.csv"},
        "correlation_id": ctx.correlation_id,
    }


def test_explicit_header_is_kept_and_the_setting_turns_propagation_off(settings):
    explicit = {HEADER: {"actor_id": "addressed"}}
    with audit_context(actor_id="sender"):
        assert publish_headers(explicit) == explicit
        settings.BETTER_AUDIT = {"CELERY": False}
        assert publish_headers() == {}


def test_failing_actor_still_sends_the_task_without_the_actor(caplog):
    with audit_context(actor=lambda: 1 / 0, reason="kept"), caplog.at_level(logging.ERROR):
        header = publish_headers()[HEADER]
    assert header["actor_id"] is None
    assert header["reason"] == "kept"
    assert "the task is sent without an actor" in caplog.text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("u-1", "expected a dict"),
        ({"actor_id": 7}, "actor_id must be a string"),
        ({"compliance": "gdpr"}, "compliance must be a list"),
        ({"metadata": ["x"]}, "metadata must be an object"),
    ],
)
def test_invalid_header_values_are_refused(value, message):
    with pytest.raises(InvalidContextHeader, match=message):
        context_from_header(value)


def test_header_round_trip():
    with audit_context(actor_id="u", compliance=["soc2"], metadata={"n": 1}, label="L") as ctx:
        rebuilt = context_from_header(ctx.as_dict())
    assert rebuilt == ctx


# --- eager mode ---------------------------------------------------------------------------------


@pytest.fixture
def eager() -> Iterator[None]:
    with eager_tasks(propagates=True):
        yield


def test_eager_task_runs_in_the_callers_context_and_leaves_it_unchanged(eager):
    with audit_context(actor_id="u-1", reason="sync", metadata={"k": "v"}) as caller:
        result = audit_snapshot.delay()
        assert get_audit_context() is caller
    assert result.get() == expected(
        result.id, "u-1", caller.correlation_id, {"k": "v"}, reason="sync"
    )
    assert get_audit_context() is None


def test_eager_task_without_context_has_no_actor_and_its_id_as_correlation(eager):
    result = audit_snapshot.delay()
    assert result.get() == expected(result.id)
    assert get_audit_context() is None


def test_eager_task_with_an_explicit_or_invalid_header(eager, caplog):
    with audit_context(actor_id="caller"):
        addressed = audit_snapshot.apply_async(
            headers={HEADER: {"actor_id": "addressed", "correlation_id": "c-1"}}
        )
        with caplog.at_level(logging.ERROR, logger="better_audit.celery"):
            forged = audit_snapshot.apply_async(headers={HEADER: {"actor_id": ["admin"]}})
    assert addressed.get() == expected(addressed.id, "addressed", "c-1")
    assert forged.get() == expected(forged.id)
    assert f"Task {SNAPSHOT}[{forged.id}] has an invalid {HEADER} header" in caplog.text


def test_merged_context_reaches_the_eager_task(eager):
    with audit_context(actor_id="u-2") as base, merge_audit_context(compliance=["gdpr"]):
        result = audit_snapshot.delay()
    assert result.get() == expected(result.id, "u-2", base.correlation_id, compliance=["gdpr"])


@pytest.mark.urls("tests.audit.urls")
@pytest.mark.django_db
def test_task_sent_from_a_drf_view_carries_the_token_user(eager, settings):
    settings.MIDDLEWARE = list(MIDDLEWARE)
    user = get_user_model().objects.create_user("carol")
    key = Token.objects.create(user=user).key
    response = Client().post("/drf/token", headers={"Authorization": f"Token {key}"})
    assert response.status_code == 200, response.content
    task = response.json()["task"]
    assert task["actor_id"] == str(user.pk)
    assert task["metadata"]["path"] == "/drf/token"
    assert task["correlation_id"] == response["X-Request-ID"]


# --- a real worker ------------------------------------------------------------------------------


worker = worker_fixture(
    queue_prefix="better-audit-test",
    include=["tests.audit.tasks"],
    doc="A solo-pool worker on a queue of its own that also loads the audit test tasks.",
)


def test_worker_runs_the_task_in_the_senders_context(worker):
    with audit_context(
        actor_id="u-7", reason="export", compliance=["gdpr"], metadata={"rows": 10}
    ) as sender:
        result = worker.send(audit_snapshot)
    assert result.get(timeout=TIMEOUT) == expected(
        result.id,
        "u-7",
        sender.correlation_id,
        {"rows": 10},
        reason="export",
        compliance=["gdpr"],
    )


def test_worker_task_without_context_and_no_leak_between_tasks(worker):
    who = ["lazy-9"]
    with audit_context(actor=lambda: who[0]):
        first = worker.send(audit_snapshot)
    second = worker.send(audit_snapshot)
    assert first.get(timeout=TIMEOUT)["actor_id"] == "lazy-9"
    # The solo worker runs the second task right after the first, in the same thread.
    assert second.get(timeout=TIMEOUT) == expected(second.id)


def test_context_travels_through_a_task_sent_by_a_task(worker):
    with audit_context(actor_id="u-8") as sender:
        outer = worker.send(nested_snapshot)
    body = outer.get(timeout=TIMEOUT)
    assert body["outer"] == expected(
        outer.id, "u-8", sender.correlation_id, task="tests.audit.tasks.nested_snapshot"
    )
    inner = app.AsyncResult(body["inner_id"]).get(timeout=TIMEOUT)
    assert inner == expected(body["inner_id"], "u-8", sender.correlation_id)


@pytest.mark.urls("tests.audit.urls")
@pytest.mark.django_db(transaction=True)
def test_worker_task_sent_from_a_request_carries_the_token_user(worker, settings):
    settings.MIDDLEWARE = list(MIDDLEWARE)
    user = get_user_model().objects.create_user("dave")
    key = Token.objects.create(user=user).key
    response = Client().post(
        f"/drf/token?queue={worker.queue}",
        headers={"Authorization": f"Token {key}", "X-Request-ID": "req-77"},
    )
    assert response.status_code == 200, response.content
    task = response.json()["task"]
    assert task["actor_id"] == str(user.pk)
    assert task["correlation_id"] == "req-77"
    assert task["metadata"]["method"] == "POST"
    assert task["metadata"]["task"] == SNAPSHOT
