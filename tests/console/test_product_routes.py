"""Product routes: registration, :param routing, permission levels, handler answers and errors."""

from __future__ import annotations

import json

import pytest
from django.http import Http404, StreamingHttpResponse

from better_console import ConsoleError, ConsoleResponse, Endpoint
from better_console.registry import register_product, unregister_product
from tests.support.console import BASE, get

pytestmark = pytest.mark.django_db

SEEN: list = []
ERRORS: list = []


def record_error(exc: BaseException) -> None:
    ERRORS.append(exc)


def show(request):
    SEEN.append(request)
    return ConsoleResponse(200, {"params": request.params, "query": request.query})


def create(request):
    SEEN.append(request)
    return ConsoleResponse(201, {"created": request.body}, headers={"Location": "/items/9"})


def delete(request):
    return ConsoleResponse(204)


def boom(request):
    raise RuntimeError("database on fire")


def refuse(request):
    raise ConsoleError("Item is locked", status=409, code="ITEM_LOCKED", itemId="7")


def missing(request):
    raise Http404("no such item")


def export(request):
    return StreamingHttpResponse(
        (f"{n}\n".encode() for n in range(3)), content_type="application/x-ndjson"
    )


def plain(request):
    return [{"id": 1}]


async def async_handler(request):
    return {"async": True, "email": request.session.email}


@pytest.fixture(autouse=True)
def shop():
    SEEN.clear()
    ERRORS.clear()
    register_product(
        "shop",
        "Shop",
        [
            Endpoint("GET", "/items/:id", show),
            Endpoint("PATCH", "/items/:id/tags/:tag", show, "write"),
            {"method": "POST", "path": "/items", "handler": create, "required_permission": "write"},
            Endpoint("DELETE", "/items/:id", delete, "admin"),
            Endpoint("GET", "/boom", boom),
            Endpoint("GET", "/locked", refuse),
            Endpoint("GET", "/missing", missing),
            Endpoint("GET", "/export", export),
            Endpoint("GET", "/plain", plain),
            Endpoint("GET", "/async", async_handler),
        ],
    )
    yield
    unregister_product("shop")


def call(client, method, path, auth, body=None):
    data = "" if body is None else json.dumps(body)
    return getattr(client, method)(
        BASE + "/shop" + path, data=data, content_type="application/json", **auth
    )


def test_the_product_is_listed_in_the_capabilities(client):
    assert "shop" in get(client, "/console/capabilities").json()["products"]


def test_params_query_and_session_reach_the_handler(client, console_auth):
    auth = console_auth("read", email="reader@example.com")
    response = client.get(f"{BASE}/shop/items/42?limit=5&q=a%20b", **auth)
    assert response.status_code == 200
    assert response.json() == {"params": {"id": "42"}, "query": {"limit": "5", "q": "a b"}}
    [request] = SEEN
    assert request.method == "GET" and request.path == "/shop/items/42"
    assert request.session.email == "reader@example.com"
    assert request.session.permissions == ("read",)
    assert request.http_request.META["REMOTE_ADDR"]


def test_several_params_are_matched_by_segment(client, console_auth):
    response = call(client, "patch", "/items/7/tags/blue", console_auth("write"))
    assert response.json()["params"] == {"id": "7", "tag": "blue"}


def test_the_json_body_reaches_the_handler(client, console_auth):
    response = call(client, "post", "/items", console_auth("write"), {"name": "lamp"})
    assert response.status_code == 201
    assert response.json() == {"created": {"name": "lamp"}}
    assert response["Location"] == "/items/9"


def test_a_bad_json_body_is_400(client, console_auth):
    response = client.post(
        f"{BASE}/shop/items", data="{oops", content_type="application/json", **console_auth()
    )
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_JSON"


@pytest.mark.parametrize(
    ("level", "read", "write", "admin"),
    [
        ("read", 200, 403, 403),
        ("write", 200, 201, 403),
        ("admin", 200, 201, 204),
    ],
)
def test_permission_levels_are_hierarchical(client, console_auth, level, read, write, admin):
    auth = console_auth(level)
    assert call(client, "get", "/items/1", auth).status_code == read
    assert call(client, "post", "/items", auth, {}).status_code == write
    response = call(client, "delete", "/items/1", auth)
    assert response.status_code == admin
    if admin == 403:
        assert response.json() == {"error": "Insufficient permissions", "code": "FORBIDDEN"}


def test_allowed_actions_cap_existing_sessions(client, configure, console_auth):
    auth = console_auth("admin")
    configure(ALLOWED_ACTIONS=["read", "write"])
    assert call(client, "post", "/items", auth, {}).status_code == 201
    assert call(client, "delete", "/items/1", auth).status_code == 403


def test_authentication_comes_before_the_handler(client):
    response = call(client, "get", "/items/1", {})
    assert response.status_code == 401
    assert SEEN == []


def test_unknown_product_paths_and_wrong_methods_are_404(client, console_auth):
    auth = console_auth()
    # As the published servers route: a path served under another method is not found either.
    assert call(client, "get", "/items", auth).status_code == 404
    assert call(client, "get", "/items/1/extra", auth).status_code == 404
    assert call(client, "put", "/items/1", auth).status_code == 404
    response = client.get(f"{BASE}/nosuchproduct/items", **auth)
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


def test_an_unexpected_error_is_a_json_500_and_reported(client, configure, console_auth):
    configure(ON_ERROR="tests.console.test_product_routes.record_error")
    response = call(client, "get", "/boom", console_auth())
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error", "code": "INTERNAL_ERROR"}
    assert "fire" not in response.content.decode()
    [error] = ERRORS
    assert isinstance(error, RuntimeError)


def test_a_failing_on_error_does_not_change_the_answer(client, configure, console_auth):
    configure(ON_ERROR="tests.console.test_product_routes.boom")
    assert call(client, "get", "/boom", console_auth()).status_code == 500


def test_a_console_error_is_answered_as_raised(client, console_auth):
    response = call(client, "get", "/locked", console_auth())
    assert response.status_code == 409
    assert response.json() == {"error": "Item is locked", "code": "ITEM_LOCKED", "itemId": "7"}
    assert ERRORS == []


def test_http404_from_a_handler_is_json(client, console_auth):
    response = call(client, "get", "/missing", console_auth())
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


def test_a_streaming_response_passes_through_with_cors(client, console_auth):
    response = client.get(
        f"{BASE}/shop/export", HTTP_ORIGIN="https://console.usebetter.dev", **console_auth()
    )
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"0\n1\n2\n"
    assert response["Access-Control-Allow-Origin"] == "https://console.usebetter.dev"


def test_plain_return_values_are_json_bodies(client, console_auth):
    response = call(client, "get", "/plain", console_auth())
    assert response.status_code == 200 and response.json() == [{"id": 1}]


def test_async_handlers_are_awaited(client, console_auth):
    response = call(client, "get", "/async", console_auth(email="a@example.com"))
    assert response.json() == {"async": True, "email": "a@example.com"}


def test_a_204_has_no_body(client, console_auth):
    response = call(client, "delete", "/items/1", console_auth("admin"))
    assert response.status_code == 204 and response.content == b""
