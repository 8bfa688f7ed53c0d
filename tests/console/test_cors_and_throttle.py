"""CORS from the allow-list on every answer (preflight included); per-IP throttling of sessions."""

from __future__ import annotations

import pytest

from better_console.registry import Endpoint, register_product, unregister_product
from better_console.throttling import client_ip
from tests.support.console import BASE, SENT, get, post

pytestmark = pytest.mark.django_db

CONSOLE = "https://console.usebetter.dev"


@pytest.fixture(autouse=True)
def probe():
    register_product("probe", "Probe", [Endpoint("GET", "/me", lambda r: {})])
    yield
    unregister_product("probe")


def test_an_allowed_origin_is_echoed(client):
    response = get(client, "/console/health", HTTP_ORIGIN=CONSOLE)
    assert response["Access-Control-Allow-Origin"] == CONSOLE
    assert "Origin" in response["Vary"]


def test_an_unknown_origin_gets_no_cors_headers(client):
    response = get(client, "/console/health", HTTP_ORIGIN="https://evil.example")
    assert response.status_code == 200
    assert not [name for name in response.headers if name.lower().startswith("access-control")]
    assert "Origin" in response["Vary"]


def test_origins_are_configurable(client, configure):
    configure(ALLOWED_ORIGINS=["https://admin.myapp.com"])
    assert "Access-Control-Allow-Origin" not in get(client, "/console/health", HTTP_ORIGIN=CONSOLE)
    response = get(client, "/console/health", HTTP_ORIGIN="https://admin.myapp.com")
    assert response["Access-Control-Allow-Origin"] == "https://admin.myapp.com"


def test_preflight_from_an_allowed_origin(client):
    response = client.options(
        BASE + "/probe/me",
        HTTP_ORIGIN="http://localhost:5173",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="DELETE",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert response["Access-Control-Allow-Methods"] == "GET, POST, PUT, PATCH, DELETE, OPTIONS"
    assert response["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    assert int(response["Access-Control-Max-Age"]) > 0
    assert response.content == b""


def test_preflight_from_an_unknown_origin_has_no_cors_headers(client):
    response = client.options(BASE + "/console/session/init", HTTP_ORIGIN="https://evil.example")
    assert response.status_code == 204
    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Methods" not in response


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("get", "/nowhere", 404), ("get", "/probe/me", 401), ("get", "/console/session", 404)],
)
def test_errors_carry_cors_headers_too(client, method, path, status):
    response = getattr(client, method)(BASE + path, HTTP_ORIGIN=CONSOLE)
    assert response.status_code == status
    assert response["Access-Control-Allow-Origin"] == CONSOLE


def test_session_endpoints_are_throttled_per_ip(client, configure):
    configure(MAGIC_LINK=None, THROTTLE="3/min")
    statuses = [post(client, "/console/session/init").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = post(client, "/console/session/init", HTTP_ORIGIN=CONSOLE)
    assert response.status_code == 429
    assert response.json()["code"] == "RATE_LIMITED"
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response["Access-Control-Allow-Origin"] == CONSOLE
    # Another client, and the unthrottled routes, are unaffected.
    assert post(client, "/console/session/init", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert get(client, "/console/health").status_code == 200
    assert get(client, "/console/capabilities").status_code == 200


def test_throttling_counts_verify_and_claim(client, configure, magic_only):
    configure(
        AUTO_APPROVE=False,
        THROTTLE="2/min",
        MAGIC_LINK={
            "ALLOWED_EMAILS": "admin@example.com",
            "SEND_CODE": "tests.support.console.capture_code",
        },
    )
    session_id = post(client, "/console/session/init", {"email": "admin@example.com"}).json()[
        "sessionId"
    ]
    response = post(
        client, "/console/session/verify", {"session_id": session_id, "code": SENT[-1]["code"]}
    )
    assert response.status_code == 200
    assert post(client, "/console/session/claim", {"session_id": session_id}).status_code == 429
    # Polling has its own, larger budget.
    assert get(client, f"/console/session/poll?session_id={session_id}").status_code == 200


def test_throttling_can_be_turned_off(client, configure):
    configure(MAGIC_LINK=None, THROTTLE=None)
    assert all(post(client, "/console/session/init").status_code == 200 for _ in range(25))


def test_the_client_ip_trusts_only_the_configured_proxies(rf):
    request = rf.get(
        "/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9, 10.0.0.2"
    )
    assert client_ip(request, 0) == "10.0.0.1"
    assert client_ip(request, 1) == "10.0.0.2"
    assert client_ip(request, 2) == "203.0.113.9"
    assert client_ip(rf.get("/", REMOTE_ADDR="10.0.0.1"), 1) == "10.0.0.1"


def test_throttling_behind_a_proxy_uses_the_forwarded_address(client, configure):
    configure(MAGIC_LINK=None, THROTTLE="1/min", NUM_PROXIES=1)
    first = post(client, "/console/session/init", HTTP_X_FORWARDED_FOR="198.51.100.1")
    second = post(client, "/console/session/init", HTTP_X_FORWARDED_FOR="198.51.100.2")
    again = post(client, "/console/session/init", HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert [first.status_code, second.status_code, again.status_code] == [200, 200, 429]


@pytest.mark.parametrize(
    "origin", ["http://localhost:3000", "https://127.0.0.1", "http://localhost"]
)
def test_local_origins_are_allowed_only_while_developing_or_testing(client, origin, production):
    # In production only the allow-list counts, local or not.
    response = get(client, "/console/health", HTTP_ORIGIN=origin)
    assert "Access-Control-Allow-Origin" not in response


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:3000",
        "http://127.0.0.1:8080",
        "https://localhost",
    ],
)
def test_local_origins_are_allowed_in_a_test_run(client, origin):
    response = get(client, "/console/health", HTTP_ORIGIN=origin)
    assert response["Access-Control-Allow-Origin"] == origin


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost.evil.example",
        "http://evil.example#@localhost",
        "http://user@localhost:3000",
        "ftp://localhost",
        "http://localhost:99999",
        "http://localhost/path",
        "http://[::1]:3000",
    ],
)
def test_look_alikes_of_local_origins_are_not_local(client, origin):
    response = get(client, "/console/health", HTTP_ORIGIN=origin)
    assert "Access-Control-Allow-Origin" not in response
