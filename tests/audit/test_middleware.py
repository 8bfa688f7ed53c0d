"""AuditContextMiddleware and the actor extractors, through real requests (sync and async)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from typing import Any

import jwt
import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse
from django.test import AsyncClient, Client, RequestFactory
from rest_framework.authtoken.models import Token

from better_audit import extractors
from better_audit.context import audit_context, get_audit_context
from better_audit.extractors import (
    Deferred,
    from_bearer_token,
    from_cookie,
    from_header,
    from_user,
)
from better_audit.middleware import ERROR_CODE, AuditContextMiddleware
from tests.audit.urls import CALLS
from tests.support.concurrency import asgi_get, run_async, run_threads

pytestmark = [pytest.mark.urls("tests.audit.urls"), pytest.mark.django_db]

SECRET = "audit-test-secret-" + "0123456789abcdef" * 4
OTHER_KEY = "another-key-" + "fedcba9876543210" * 4
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "better_audit.middleware.AuditContextMiddleware",
]


@pytest.fixture(autouse=True)
def configure(settings):
    settings.MIDDLEWARE = list(MIDDLEWARE)
    # The tokens below are signed with SECRET, which verifies them.
    settings.BETTER_AUDIT = {"JWT_KEY": SECRET}
    CALLS.clear()
    return settings


def audit(settings, **values: Any) -> None:
    settings.BETTER_AUDIT = {"JWT_KEY": SECRET, **values}


def token(payload: dict[str, Any], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=algorithm)


def bearer(payload: dict[str, Any], **options: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(payload, **options)}"}


def actor_of(response: HttpResponse) -> str | None:
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["before"]["actor_id"] == body["after"]["actor_id"]
    return body["after"]["actor_id"]


@pytest.fixture
def user():
    return get_user_model().objects.create_user("alice", password="pw")


@pytest.fixture
def other_user():
    return get_user_model().objects.create_user("bob", password="pw")


# --- extractors on their own --------------------------------------------------------------------


def make_request(**headers: str):
    return RequestFactory().get("/context", headers=headers)


def test_without_a_key_a_bearer_token_names_no_actor_by_default(settings):
    audit(settings, JWT_KEY=None)
    # Anyone can sign a token with a key of their own: unverified, it would write any actor.
    forged = make_request(**bearer({"sub": "admin"}, key=OTHER_KEY))
    assert from_bearer_token(forged) is None
    assert from_bearer_token("user_id")(make_request(**bearer({"user_id": 7}))) is None


def test_bearer_token_is_decoded_without_verification_only_when_asked(settings):
    audit(settings, JWT_UNVERIFIED=True, JWT_KEY=None)
    request = make_request(**bearer({"sub": "user-42"}, key=OTHER_KEY))
    assert from_bearer_token(request) == "user-42"
    assert from_bearer_token("user_id")(make_request(**bearer({"user_id": 7}))) == "7"
    assert from_bearer_token("user_id")(request) is None
    # A key, when there is one, still verifies.
    audit(settings, JWT_UNVERIFIED=True, JWT_KEY=SECRET)
    assert from_bearer_token(request) is None


def test_reading_tokens_unverified_is_a_warning_check(settings):
    from django.core import checks

    def ids() -> set[str]:
        return {message.id for message in checks.run_checks(tags=["better_audit"])}

    assert "better_audit.W004" not in ids()
    audit(settings, JWT_UNVERIFIED=True, JWT_KEY=None)
    assert "better_audit.W004" in ids()
    audit(settings, JWT_UNVERIFIED=True, JWT_KEY=SECRET)
    assert "better_audit.W004" not in ids()
    audit(settings, JWT_UNVERIFIED="yes")
    assert "better_audit.E017" in ids()


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token 0123456789abcdef",
        "Bearer " + "x" * 9000,
    ],
)
def test_malformed_or_foreign_authorization_yields_no_actor(settings, authorization):
    audit(settings, JWT_UNVERIFIED=True)
    assert from_bearer_token(make_request(Authorization=authorization)) is None


def test_bearer_token_is_verified_when_a_key_is_given(settings):
    good = make_request(**bearer({"sub": "user-42"}))
    forged = make_request(**bearer({"sub": "admin"}, key=OTHER_KEY))
    expired = make_request(**bearer({"sub": "user-42", "exp": int(time.time()) - 60}))
    with_audience = make_request(**bearer({"sub": "user-42", "aud": "billing"}))
    verified = from_bearer_token(key=SECRET)
    assert verified(good) == "user-42"
    assert verified(forged) is None
    assert verified(expired) is None
    # The audience is only checked when one is configured.
    assert verified(with_audience) == "user-42"
    assert from_bearer_token(key=SECRET, audience="billing")(with_audience) == "user-42"
    assert from_bearer_token(key=SECRET, audience="crm")(with_audience) is None
    # The JWT_KEY setting turns verification on for the bare dotted-path extractor too.
    audit(settings, JWT_KEY=SECRET)
    assert from_bearer_token(good) == "user-42"
    assert from_bearer_token(forged) is None
    audit(settings, JWT_KEY=SECRET, JWT_ALGORITHMS=["HS512"])
    assert from_bearer_token(good) is None
    assert from_bearer_token(make_request(**bearer({"sub": "x"}, algorithm="HS512"))) == "x"


def test_header_and_cookie_extractors():
    request = make_request(
        **{"X-Better-Audit-Actor-Id": " gateway-user ", "X-User-Id": "u-9"},
    )
    request.COOKIES["session_owner"] = "cookie-user"
    assert from_header(request) == "gateway-user"
    assert from_header("x-user-id")(request) == "u-9"
    assert from_header("x-missing")(request) is None
    assert from_cookie("session_owner")(request) == "cookie-user"
    assert from_cookie("other")(request) is None
    with pytest.raises(TypeError, match="from_cookie needs the cookie's name"):
        from_cookie(request)


def test_values_that_are_not_identifiers_yield_no_actor():
    assert extractors.to_actor_id("   ") is None
    assert extractors.to_actor_id(True) is None
    assert extractors.to_actor_id("x" * 256) is None
    assert extractors.to_actor_id(12) == "12"
    assert extractors.to_actor_id(uuid.UUID(int=1)) == str(uuid.UUID(int=1))


def test_user_extractor_is_read_when_the_entry_is_written(user):
    request = make_request()
    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    deferred = from_user(request)
    assert isinstance(deferred, Deferred)
    assert deferred.resolve() is None
    request.user = user  # what DRF does when it authenticates inside the view
    assert deferred.resolve() == str(user.pk)
    assert from_user("username")(request).resolve() == "alice"


# --- the middleware, sync -----------------------------------------------------------------------


def test_default_extractors_take_the_bearer_subject_and_set_method_path_and_correlation():
    response = Client().get("/context?token=secret", headers=bearer({"sub": "user-42"}))
    assert actor_of(response) == "user-42"
    body = response.json()["after"]
    # The query string is left out of the metadata: it may carry credentials.
    assert body["metadata"] == {"method": "GET", "path": "/context"}
    assert str(uuid.UUID(body["correlation_id"], version=4)) == body["correlation_id"]
    assert response["X-Request-ID"] == body["correlation_id"]
    # The context ends with the request (the test client runs it in this thread).
    assert get_audit_context() is None


def test_request_without_actor_runs_with_no_actor_by_default():
    response = Client().get("/context")
    assert actor_of(response) is None
    assert response.json()["after"]["correlation_id"]


def test_logged_in_user_is_the_actor_and_wins_over_the_bearer_subject(user):
    client = Client()
    client.force_login(user)
    assert actor_of(client.get("/context")) == str(user.pk)
    assert actor_of(client.get("/context", headers=bearer({"sub": "token-sub"}))) == str(user.pk)
    client.logout()
    assert actor_of(client.get("/context", headers=bearer({"sub": "token-sub"}))) == "token-sub"


def test_drf_token_authentication_inside_the_view_is_the_actor(user, other_user):
    key = Token.objects.create(user=user).key
    response = Client().get("/drf/token", headers={"Authorization": f"Token {key}"})
    assert response.status_code == 200, response.content
    # No session and no bearer token: only the user DRF authenticated in the view can be the actor.
    assert response.json() == {
        "actor_id": str(user.pk),
        "user_pk": str(user.pk),
        "django_request_user_pk": str(user.pk),
    }
    # A session user is replaced by the token's user when DRF authenticates the request.
    client = Client()
    client.force_login(other_user)
    response = client.get("/drf/token", headers={"Authorization": f"Token {key}"})
    assert response.json()["actor_id"] == str(user.pk)
    assert Client().get("/drf/token").status_code == 401
    assert Client().get("/drf/anonymous").json() == {"actor_id": None}


def test_drf_custom_authentication_class_is_the_actor(user):
    response = Client().get("/drf/api-key", headers={"X-Api-Key": "alice"})
    assert response.status_code == 200, response.content
    assert response.json()["actor_id"] == str(user.pk)
    assert Client().get("/drf/api-key", headers={"X-Api-Key": "nobody"}).status_code == 403


def test_extractors_from_settings_with_options(settings, user):
    audit(
        settings,
        ACTOR_EXTRACTORS=[
            ["better_audit.extractors.from_user", {"attribute": "username"}],
            ["better_audit.extractors.from_header", {"name": "X-User-Id"}],
            ["better_audit.extractors.from_cookie", {"name": "actor"}],
            ["better_audit.extractors.from_bearer_token", {"claim": "uid"}],
        ],
    )
    client = Client()
    assert actor_of(client.get("/context", headers={"X-User-Id": "gw-1"})) == "gw-1"
    assert actor_of(client.get("/context", headers=bearer({"uid": "t-1", "sub": "no"}))) == "t-1"
    client.cookies["actor"] = "cookie-1"
    assert actor_of(client.get("/context")) == "cookie-1"
    client.force_login(user)
    assert actor_of(client.get("/context", headers={"X-User-Id": "gw-1"})) == "alice"


def test_header_extractor_default_name(settings):
    audit(settings, ACTOR_EXTRACTORS=["better_audit.extractors.from_header"])
    response = Client().get("/context", headers={"x-better-audit-actor-id": "svc-billing"})
    assert actor_of(response) == "svc-billing"


def api_key_owner(request) -> str | None:
    """A custom extractor that queries the database."""
    key = request.headers.get("X-Api-Key")
    found = get_user_model().objects.filter(username=key).first() if key else None
    return f"user:{found.pk}" if found else None


async def async_extractor(request) -> str | None:
    await asyncio.sleep(0)
    return request.headers.get("X-Async-Actor")


def test_custom_callables_sync_and_async(settings, user):
    audit(
        settings,
        ACTOR_EXTRACTORS=[
            "tests.audit.test_middleware.api_key_owner",
            async_extractor,
            lambda request: Deferred(lambda: request.headers.get("X-Late")),
        ],
    )
    client = Client()
    assert actor_of(client.get("/context", headers={"X-Api-Key": "alice"})) == f"user:{user.pk}"
    assert actor_of(client.get("/context", headers={"X-Async-Actor": "a-1"})) == "a-1"
    assert actor_of(client.get("/context", headers={"X-Late": "late-1"})) == "late-1"
    assert actor_of(client.get("/context")) is None


@pytest.mark.parametrize(
    "value",
    [[42], [["better_audit.extractors.from_header"]], [["not.a.module.func", {}]], "x.y"],
)
def test_wrong_extractor_setting_fails_when_the_middleware_loads(settings, value):
    audit(settings, ACTOR_EXTRACTORS=value)
    with pytest.raises(ImproperlyConfigured, match="ACTOR_EXTRACTORS"):
        AuditContextMiddleware(lambda request: HttpResponse())


# --- failures -----------------------------------------------------------------------------------


def broken_extractor(request) -> str:
    raise RuntimeError("token secret-value could not be parsed")


def test_failing_extractor_is_logged_and_skipped(settings, caplog):
    audit(
        settings,
        ACTOR_EXTRACTORS=[broken_extractor, "better_audit.extractors.from_bearer_token"],
    )
    with caplog.at_level(logging.WARNING, logger="better_audit.middleware"):
        response = Client().get("/context", headers=bearer({"sub": "user-42"}))
    assert actor_of(response) == "user-42"
    assert "broken_extractor raised RuntimeError" in caplog.text
    # The message of the exception might quote credentials; it is not logged.
    assert "secret-value" not in caplog.text


def test_on_extraction_error_receives_the_exception_and_request(settings, caplog):
    seen: list[tuple[BaseException, str]] = []
    audit(
        settings,
        ACTOR_EXTRACTORS=[broken_extractor],
        ON_EXTRACTION_ERROR=lambda exc, request: seen.append((exc, request.path)),
    )
    assert actor_of(Client().get("/context")) is None
    assert [(type(exc), path) for exc, path in seen] == [(RuntimeError, "/context")]

    def failing_handler(exc, request):
        raise ValueError("handler broke")

    audit(settings, ACTOR_EXTRACTORS=[broken_extractor], ON_EXTRACTION_ERROR=failing_handler)
    with caplog.at_level(logging.ERROR, logger="better_audit.middleware"):
        assert actor_of(Client().get("/context")) is None
    assert "ON_EXTRACTION_ERROR'] raised" in caplog.text


def test_failing_deferred_actor_falls_through_to_the_next_extractor(settings):
    def failing_deferred(request):
        return Deferred(lambda: 1 / 0)

    seen: list[BaseException] = []
    audit(
        settings,
        ACTOR_EXTRACTORS=[failing_deferred, "better_audit.extractors.from_header"],
        ON_EXTRACTION_ERROR=lambda exc, request: seen.append(exc),
    )
    response = Client().get("/context", headers={"x-better-audit-actor-id": "fallback"})
    assert actor_of(response) == "fallback"
    assert seen and all(isinstance(exc, ZeroDivisionError) for exc in seen)


def assert_actor_required(response: HttpResponse) -> None:
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == ERROR_CODE == "AUDIT_ACTOR_REQUIRED"
    assert "authenticate" in body["error"]
    assert response["X-Request-ID"]


def test_fail_closed_answers_401_without_an_actor_and_never_runs_the_view(settings, user):
    audit(settings, FAIL_CLOSED=True)
    assert_actor_required(Client().get("/context"))
    assert CALLS == []
    assert actor_of(Client().get("/context", headers=bearer({"sub": "user-42"}))) == "user-42"
    client = Client()
    client.force_login(user)
    assert actor_of(client.get("/context")) == str(user.pk)
    assert CALLS == ["/context", "/context"]


def test_fail_closed_answers_401_when_an_extractor_raises_even_if_another_finds_one(settings):
    audit(
        settings,
        FAIL_CLOSED=True,
        ACTOR_EXTRACTORS=[broken_extractor, "better_audit.extractors.from_bearer_token"],
    )
    assert_actor_required(Client().get("/context", headers=bearer({"sub": "user-42"})))
    assert "could not be determined" in Client().get("/context").json()["error"]
    assert CALLS == []


def test_fail_closed_lets_optional_views_through(settings):
    audit(settings, FAIL_CLOSED=True)
    response = Client().get("/optional")
    assert response.status_code == 200
    context = response.json()["context"]
    assert context["actor_id"] is None
    assert context["metadata"] == {"method": "GET", "path": "/optional"}
    assert Client().get("/optional-class").status_code == 200
    assert Client().get("/missing-page").status_code == 404


def test_fail_closed_cannot_see_drf_authentication_inside_the_view(settings, user):
    key = Token.objects.create(user=user).key
    audit(settings, FAIL_CLOSED=True)
    # DRF authenticates inside the view, after the fail-closed check: documented limitation.
    assert_actor_required(Client().get("/drf/token", headers={"Authorization": f"Token {key}"}))
    # An extractor that reads the credential itself works: a verified bearer token.
    audit(settings, FAIL_CLOSED=True, JWT_KEY=SECRET)
    response = Client().get("/context", headers=bearer({"sub": str(user.pk)}))
    assert actor_of(response) == str(user.pk)
    assert_actor_required(Client().get("/context", headers=bearer({"sub": "x"}, key=OTHER_KEY)))


# --- correlation id, metadata, nesting, streaming -----------------------------------------------


def test_incoming_correlation_id_is_kept_and_echoed():
    response = Client().get("/context", headers={"X-Request-ID": "req-abc-123"})
    assert response.json()["after"]["correlation_id"] == "req-abc-123"
    assert response["X-Request-ID"] == "req-abc-123"


@pytest.mark.parametrize("value", ["has space", "x" * 201, "tab\tin", "ünicode"])
def test_implausible_correlation_id_is_replaced(value):
    response = Client().get("/context", headers={"X-Request-ID": value})
    correlation = response.json()["after"]["correlation_id"]
    assert correlation != value
    assert uuid.UUID(correlation).version == 4
    assert response["X-Request-ID"] == correlation


def test_correlation_header_setting(settings):
    audit(settings, CORRELATION_HEADER="X-Correlation-ID")
    response = Client().get("/context", headers={"X-Correlation-ID": "c-1", "X-Request-ID": "r-1"})
    assert response.json()["after"]["correlation_id"] == "c-1"
    assert response["X-Correlation-ID"] == "c-1"
    assert not response.has_header("X-Request-ID")
    audit(settings, CORRELATION_HEADER=None)
    response = Client().get("/context", headers={"X-Request-ID": "r-1"})
    assert uuid.UUID(response.json()["after"]["correlation_id"]).version == 4
    assert not response.has_header("X-Request-ID")


def test_each_request_gets_its_own_correlation_id():
    ids = {Client().get("/context").json()["after"]["correlation_id"] for _ in range(5)}
    assert len(ids) == 5


def test_merge_audit_context_inside_a_view():
    response = Client().get("/merged", headers=bearer({"sub": "user-42"}))
    body = response.json()
    assert body["inside"]["actor_id"] == "user-42"
    assert body["inside"]["reason"] == "gdpr-erasure"
    assert body["inside"]["metadata"] == {"method": "GET", "path": "/merged", "ticket": "T-1"}
    assert body["inside"]["correlation_id"] == body["after"]["correlation_id"]
    assert body["after"]["reason"] is None
    assert body["after"]["metadata"] == {"method": "GET", "path": "/merged"}


def test_request_context_replaces_an_outer_context_and_restores_it():
    with audit_context(actor_id="outer", reason="batch") as outer:
        response = Client().get("/context", headers=bearer({"sub": "inner"}))
        assert get_audit_context() is outer
    assert actor_of(response) == "inner"
    assert response.json()["after"]["reason"] is None


def test_streaming_body_is_read_in_the_request_context():
    response = Client().get("/stream", headers=bearer({"sub": "streamer"}))
    assert get_audit_context() is None
    body = b"".join(response.streaming_content).decode()
    assert body == "0:streamer;1:streamer;2:streamer;"
    # Each chunk was produced inside the context, which is gone again between and after them.
    assert get_audit_context() is None
    assert response["X-Request-ID"]


# --- async --------------------------------------------------------------------------------------


def async_get(path: str, client: AsyncClient | None = None, **headers: str) -> HttpResponse:
    # async_to_sync from this thread lets the async ORM use the test's connection (its
    # transaction holds the users these tests create).
    return async_to_sync((client or AsyncClient()).get)(path, headers=headers)


async def _astream(response: HttpResponse) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


def test_async_request_gets_the_actor_and_correlation_id(user):
    response = async_get("/async/context", **bearer({"sub": "async-user"}))
    assert actor_of(response) == "async-user"
    assert response["X-Request-ID"] == response.json()["after"]["correlation_id"]


def test_async_view_reads_the_session_user_in_the_event_loop(user):
    client = AsyncClient()
    async_to_sync(client.aforce_login)(user)
    # The view resolves the actor in the event loop; the middleware has loaded the user with
    # request.auser(), so no synchronous query is needed there.
    assert actor_of(async_get("/async/context", client)) == str(user.pk)


def test_async_custom_extractors_sync_ones_run_off_the_loop(settings, user):
    audit(settings, ACTOR_EXTRACTORS=[api_key_owner, async_extractor])
    assert actor_of(async_get("/async/context", **{"X-Api-Key": "alice"})) == f"user:{user.pk}"
    assert actor_of(async_get("/async/context", **{"X-Async-Actor": "a-2"})) == "a-2"


def test_async_fail_closed(settings, user):
    audit(settings, FAIL_CLOSED=True)
    assert_actor_required(async_get("/async/context"))
    assert CALLS == []
    assert actor_of(async_get("/async/context", **bearer({"sub": "ok"}))) == "ok"
    client = AsyncClient()
    async_to_sync(client.aforce_login)(user)
    assert actor_of(async_get("/async/context", client)) == str(user.pk)
    assert async_get("/optional").status_code == 200
    audit(settings, FAIL_CLOSED=True, ACTOR_EXTRACTORS=[broken_extractor, async_extractor])
    assert_actor_required(async_get("/async/context", **{"X-Async-Actor": "a-3"}))


def test_async_streaming_body_is_read_in_the_request_context():
    response = async_get("/async/stream", **bearer({"sub": "async-streamer"}))
    body = async_to_sync(_astream)(response).decode()
    assert body == "0:async-streamer;1:async-streamer;2:async-streamer;"
    assert get_audit_context() is None


# --- concurrency --------------------------------------------------------------------------------

THREADS = 8
REQUESTS_PER_THREAD = 40  # 320 sync requests
ASYNC_REQUESTS = 320
ASYNC_IN_FLIGHT = 32


def headers_for(index: int, sessions: list[tuple[str, str]]) -> tuple[dict[str, str], str]:
    """Request ``index``: its headers and the actor it must see (bearer, header or session)."""
    variant = index % 3
    if variant == 0:
        actor = f"bearer-{index}"
        return bearer({"sub": actor}), actor
    if variant == 1:
        actor = f"gateway-{index}"
        return {"X-User-Id": actor}, actor
    cookie, pk = sessions[index % len(sessions)]
    return {"Cookie": f"sessionid={cookie}"}, pk


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_never_mix_actors(settings):
    audit(
        settings,
        ACTOR_EXTRACTORS=[
            "better_audit.extractors.from_user",
            "better_audit.extractors.from_bearer_token",
            ["better_audit.extractors.from_header", {"name": "X-User-Id"}],
        ],
    )
    sessions = []
    for n in range(4):
        person = get_user_model().objects.create_user(f"user{n}", password="pw")
        client = Client()
        client.force_login(person)
        sessions.append((client.cookies["sessionid"].value, str(person.pk)))

    problems: list[str] = []
    seen_ids: set[str] = set()
    lock = threading.Lock()

    def check(label: str, status: int, body: dict, expected: str) -> None:
        if status != 200:
            problems.append(f"{label}: status {status}")
            return
        for moment in ("before", "after"):
            if body[moment]["actor_id"] != expected:
                problems.append(f"{label} {moment}: expected {expected}, got {body[moment]}")
        with lock:
            if body["after"]["correlation_id"] in seen_ids:
                problems.append(f"{label}: correlation id reused")
            seen_ids.add(body["after"]["correlation_id"])

    def work(i: int) -> None:
        client = Client()
        for j in range(REQUESTS_PER_THREAD):
            index = i * REQUESTS_PER_THREAD + j
            headers, expected = headers_for(index, sessions)
            response = client.get("/context?sleep=0.0005", headers=headers)
            check(f"thread {i}/{j}", response.status_code, response.json(), expected)

    run_threads(THREADS, work, problems)
    assert problems == []

    handler = ASGIHandler()

    async def one(index: int) -> None:
        headers, expected = headers_for(index, sessions)
        status, body = await asgi_get(handler, "/async/context?sleep=0.001", headers)
        check(f"async {index}", status, body, expected)

    run_async(ASYNC_REQUESTS, one, ASYNC_IN_FLIGHT)
    assert problems == []
    assert len(seen_ids) == THREADS * REQUESTS_PER_THREAD + ASYNC_REQUESTS
