"""Every response of every operation of the webhooks API matches the served OpenAPI document.

The cases call the API for real (endpoints with and without a tenant, disabled and failing ones,
pending, delivered and failed deliveries) and validate the JSON they get against the schema the
document declares for that operation and status, with ``openapi-schema-validator``. The document
leaves its objects open; the test closes them, so that a key the API sends and the document does
not declare fails as a missing or mistyped one does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client, override_settings
from django.utils import timezone
from jsonschema import FormatChecker
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker
from referencing import Registry
from referencing.jsonschema import DRAFT4

from better_tenant import run_as, run_as_system
from better_webhooks.crypto import generate_key
from better_webhooks.endpoints import create_endpoint, disable_endpoint
from better_webhooks.events import register_event, unregister_event
from better_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from better_webhooks.sending import send

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.webhooks.urls")]

KEY = generate_key()
#: Where tests.webhooks.urls mounts the API; every operation of the document below it is tested.
PREFIX = "/webhooks/"
DOCUMENT_URI = "urn:better-webhooks:openapi"
URL = "https://hooks.example.com/receive"
#: Statuses every operation answers (COMMON_ERRORS), and those of operations with a body:
#: test_shared_errors_of_every_operation produces them from the document itself.
SHARED = {401, 403}
BODY_SHARED = {413}
TENANT_MIDDLEWARE = "better_tenant.middleware.TenantMiddleware"


@pytest.fixture(autouse=True)
def _webhooks(settings):
    settings.BETTER_WEBHOOKS = {
        **settings.BETTER_WEBHOOKS,
        "ENCRYPTION_KEYS": [KEY],
        "CELERY": False,
        "SECRET_ROTATION_OVERLAP": "24h",
    }
    # Requests name no tenant (superusers work in system mode, staff get TENANT_REQUIRED), but
    # for those of Api.tenant_client.
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != TENANT_MIDDLEWARE]
    register_event("order.created", "An order was placed.", {"type": "object"})
    yield
    unregister_event("order.created")


# --- the document --------------------------------------------------------------------------------


@pytest.fixture
def document(admin_client):
    """The document as the schema view serves it."""
    response = admin_client.get("/schema/", {"format": "json"})
    assert response.status_code == 200, response.content
    return response.json()


def operations(document: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """The API's operations by operationId: (path, method, operation)."""
    found = {}
    for path, item in document["paths"].items():
        if not path.startswith(PREFIX):
            continue  # the schema view of the test project
        for method, operation in item.items():
            if method in ("get", "put", "post", "patch", "delete", "head", "options", "trace"):
                found[operation["operationId"]] = (path, method, operation)
    return found


def _closed(node: Any) -> Any:
    """``node`` with every object schema that lists its properties closed to others."""
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _closed(value) for key, value in node.items()}
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _format_checker() -> FormatChecker:
    """jsonschema's formats (date-time, uuid, ...) and OpenAPI 3.0's (int32, byte, ...)."""
    checker = FormatChecker()
    for name, (check, raises) in oas30_format_checker.checkers.items():
        checker.checks(name, raises)(check)
    if "uri" not in checker.checkers:
        # jsonschema checks "uri" only with rfc3987 installed; an absolute URL is enough here.
        checker.checks("uri")(_absolute_url)
    return checker


def _absolute_url(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc)


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def assert_valid(document: dict[str, Any], pointer: str, body: Any) -> None:
    """``body`` against the schema at ``pointer`` in ``document``, $refs resolved within it."""
    target: Any = document
    for part in pointer.split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(target, dict) and part in target, f"the document has no {pointer}"
        target = target[part]
    # OpenAPI 3.0's schema objects are a dialect of JSON Schema draft 4.
    registry = Registry().with_resource(DOCUMENT_URI, DRAFT4.create_resource(_closed(document)))
    validator = OAS30ReadValidator(
        {"$ref": f"{DOCUMENT_URI}#/{pointer}"},
        registry=registry,
        format_checker=_format_checker(),
    )
    errors = sorted(validator.iter_errors(body), key=lambda error: list(error.absolute_path))
    where = [
        f"  {'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
        for error in errors
    ]
    assert not errors, f"the body does not match {pointer}:\n" + "\n".join(where)


def _template(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$")


def assert_documented(document: dict[str, Any], operation_id: str, response: Any) -> None:
    """The response is one the operation declares, and its body matches the declared schema."""
    path, method, operation = operations(document)[operation_id]
    request = response.wsgi_request
    assert request.method.lower() == method and _template(path).match(request.path), (
        f"the case of {operation_id} called {request.method} {request.path}, not "
        f"{method.upper()} {path}"
    )
    status = str(response.status_code)
    declared = operation["responses"].get(status)
    assert declared is not None, (
        f"{method.upper()} {path} answered {status}, which the document does not declare "
        f"(it declares {sorted(operation['responses'])}): {response.content[:300]!r}"
    )
    content = declared.get("content")
    if not content:
        assert response.content == b"", f"{operation_id} {status} declares no body"
        return
    media = response["Content-Type"].split(";")[0].strip()
    assert media in content, f"{operation_id} {status} answered {media}, not {sorted(content)}"
    pointer = _pointer("paths", path, method, "responses", status, "content", media, "schema")
    assert_valid(document, pointer, response.json())


# --- the data the cases read -------------------------------------------------------------------


@dataclass
class Api:
    """A superuser's clients outside any tenant and in one, the rows below, a call helper."""

    client: Any
    tenant_client: Any
    settings: Any
    tenant: Any
    rows: dict[str, Any]

    def __call__(self, method: str, path: str, body: Any = None, *, tenant: Any = None) -> Any:
        client, extra = self.client, {}
        if tenant is not None:
            client, extra = self.tenant_client, {"HTTP_X_TENANT_ID": str(tenant.pk)}
        if body is not None:
            extra.update(data=json.dumps(body), content_type="application/json")
        return getattr(client, method)(PREFIX.rstrip("/") + path, **extra)

    def id(self, name: str) -> str:
        return str(self.rows[name].pk)


def _attempt(delivery: WebhookDelivery, number: int, status: int | None, error: str = "") -> None:
    WebhookDeliveryAttempt.objects.create(
        delivery=delivery,
        attempt=number,
        url=URL,
        request_headers={"webhook-id": delivery.message_id},
        response_status=status,
        response_headers={} if status is None else {"content-type": "text/plain"},
        response_body="" if status is None else "ok",
        duration_ms=7,
        error=error,
        tenant_id=delivery.tenant_id,
    )


@pytest.fixture
def api(admin_client, admin_user, settings, tenant):
    """Endpoints outside any tenant (active, disabled, failing) and in one; deliveries pending,
    delivered (with an attempt) and failed (a network error, then a 500)."""
    # A test client builds its middleware chain once: this one keeps the tenant middleware.
    tenant_client = Client()
    tenant_client.force_login(admin_user)
    with override_settings(MIDDLEWARE=[*settings.MIDDLEWARE, TENANT_MIDDLEWARE]):
        tenant_client.handler.load_middleware()
    now = timezone.now()
    with run_as_system():
        active, _ = create_endpoint(URL, ["*"], description="all events")
        disabled, _ = create_endpoint("https://off.example.com/h", ["order.created"])
        disable_endpoint(disabled, reason="too many failures")
        failing, _ = create_endpoint("https://flaky.example.com/h", ["order.created"])
        WebhookEndpoint.objects.filter(pk=failing.pk).update(
            consecutive_failures=3, failing_since=now - timedelta(hours=2)
        )
        pending, delivered, failed = (
            send("order.created", {"n": n}, endpoints=[active])[0] for n in range(3)
        )
        WebhookDelivery.objects.filter(pk=delivered.pk).update(
            status="delivered", attempts=1, delivered_at=now, last_status_code=200
        )
        _attempt(delivered, 1, 200)
        WebhookDelivery.objects.filter(pk=failed.pk).update(
            status="failed", attempts=2, last_error="HTTP 500", last_status_code=500
        )
        _attempt(failed, 1, None, "connection refused")
        _attempt(failed, 2, 500)
    with run_as(tenant):
        owned, _ = create_endpoint("https://tenant.example.com/h", ["*"])
        [owned_delivery] = send("order.created", {"n": 9}, endpoints=[owned])
    rows = {
        "active": active,
        "disabled": disabled,
        "failing": failing,
        "pending": pending,
        "delivered": delivered,
        "failed": failed,
        "owned": owned,
        "owned_delivery": owned_delivery,
    }
    return Api(admin_client, tenant_client, settings, tenant, rows)


# --- the cases -----------------------------------------------------------------------------------

Case = Callable[[Api], Any]
#: (operationId, status, label, case): each case makes one call and returns its response.
CASES: list[tuple[str, int, str, Case]] = []


def case(operation_id: str, status: int, label: str = "") -> Callable[[Case], Case]:
    def register(function: Case) -> Case:
        CASES.append((operation_id, status, label, function))
        return function

    return register


def _next_page(api: Api, list_path: str) -> Any:
    first = api("get", f"{list_path}?limit=1").json()
    assert first["next"], first
    return api.client.get(first["next"])


@case("webhooks_endpoints_list", 200, "every endpoint, with and without a tenant")
def _(api):
    return api("get", "/endpoints")


@case("webhooks_endpoints_list", 200, "in a tenant")
def _(api):
    return api("get", "/endpoints", tenant=api.tenant)


@case("webhooks_endpoints_list", 200, "a second page")
def _(api):
    return _next_page(api, "/endpoints")


@case("webhooks_endpoints_list", 400, "a cursor the API did not give")
def _(api):
    return api("get", "/endpoints?cursor=nonsense")


@case("webhooks_endpoints_create", 201, "outside any tenant")
def _(api):
    return api("post", "/endpoints", {"url": URL, "events": ["order.created"]})


@case("webhooks_endpoints_create", 201, "in a tenant")
def _(api):
    body = {"url": URL, "events": ["*"], "description": "d", "metadata": {"team": "ops"}}
    return api("post", "/endpoints", body, tenant=api.tenant)


@case("webhooks_endpoints_create", 400, "an address the API refuses")
def _(api):
    return api("post", "/endpoints", {"url": "http://10.0.0.7/h", "events": ["*"]})


@case("webhooks_endpoints_create", 503, "no encryption keys")
def _(api):
    api.settings.BETTER_WEBHOOKS = {**api.settings.BETTER_WEBHOOKS, "ENCRYPTION_KEYS": []}
    return api("post", "/endpoints", {"url": URL, "events": ["*"]})


@case("webhooks_endpoints_retrieve", 200, "active, no tenant")
def _(api):
    return api("get", f"/endpoints/{api.id('active')}")


@case("webhooks_endpoints_retrieve", 200, "disabled")
def _(api):
    return api("get", f"/endpoints/{api.id('disabled')}")


@case("webhooks_endpoints_retrieve", 200, "failing")
def _(api):
    return api("get", f"/endpoints/{api.id('failing')}")


@case("webhooks_endpoints_retrieve", 200, "in a tenant")
def _(api):
    return api("get", f"/endpoints/{api.id('owned')}", tenant=api.tenant)


@case("webhooks_endpoints_retrieve", 404, "another tenant's")
def _(api):
    return api("get", f"/endpoints/{api.id('active')}", tenant=api.tenant)


@case("webhooks_endpoints_update", 200)
def _(api):
    return api("patch", f"/endpoints/{api.id('failing')}", {"description": "flaky"})


@case("webhooks_endpoints_update", 400)
def _(api):
    return api("patch", f"/endpoints/{api.id('active')}", {"events": []})


@case("webhooks_endpoints_update", 404)
def _(api):
    return api("patch", "/endpoints/not-a-uuid", {"description": "x"})


@case("webhooks_endpoints_destroy", 204)
def _(api):
    return api("delete", f"/endpoints/{api.id('disabled')}")


@case("webhooks_endpoints_destroy", 404)
def _(api):
    return api("delete", f"/endpoints/{api.id('owned_delivery')}")


@case("webhooks_endpoints_disable_create", 200)
def _(api):
    return api("post", f"/endpoints/{api.id('active')}/disable")


@case("webhooks_endpoints_disable_create", 404)
def _(api):
    return api("post", "/endpoints/00000000-0000-0000-0000-000000000000/disable")


@case("webhooks_endpoints_enable_create", 200)
def _(api):
    return api("post", f"/endpoints/{api.id('disabled')}/enable")


@case("webhooks_endpoints_enable_create", 404)
def _(api):
    return api("post", "/endpoints/00000000-0000-0000-0000-000000000000/enable")


@case("webhooks_endpoints_rotate_secret", 200, "the old secret kept for a while")
def _(api):
    return api("post", f"/endpoints/{api.id('active')}/rotate-secret", {"overlap": "1h"})


@case("webhooks_endpoints_rotate_secret", 200, "the old secret dropped")
def _(api):
    return api("post", f"/endpoints/{api.id('active')}/rotate-secret", {"overlap": 0})


@case("webhooks_endpoints_rotate_secret", 400)
def _(api):
    return api("post", f"/endpoints/{api.id('active')}/rotate-secret", {"overlap": "forever"})


@case("webhooks_endpoints_rotate_secret", 404)
def _(api):
    return api("post", f"/endpoints/{api.id('pending')}/rotate-secret", {})


@case("webhooks_endpoints_rotate_secret", 503, "no encryption keys")
def _(api):
    api.settings.BETTER_WEBHOOKS = {**api.settings.BETTER_WEBHOOKS, "ENCRYPTION_KEYS": []}
    return api("post", f"/endpoints/{api.id('active')}/rotate-secret", {})


@case("webhooks_endpoints_test", 202)
def _(api):
    return api("post", f"/endpoints/{api.id('owned')}/test", {}, tenant=api.tenant)


@case("webhooks_endpoints_test", 400)
def _(api):
    return api("post", f"/endpoints/{api.id('active')}/test", {"payload": {"message": 5}})


@case("webhooks_endpoints_test", 404)
def _(api):
    return api("post", "/endpoints/not-a-uuid/test", {})


@case("webhooks_endpoints_test", 409, "a disabled endpoint")
def _(api):
    return api("post", f"/endpoints/{api.id('disabled')}/test", {})


@case("webhooks_events_list", 200)
def _(api):
    return api("get", "/events")


@case("webhooks_events_retrieve", 200)
def _(api):
    return api("get", "/events/order.created")


@case("webhooks_events_retrieve", 404)
def _(api):
    return api("get", "/events/no.such.event")


@case("webhooks_deliveries_list", 200, "pending, delivered, failed, with and without a tenant")
def _(api):
    return api("get", "/deliveries")


@case("webhooks_deliveries_list", 200, "in a tenant")
def _(api):
    return api("get", "/deliveries", tenant=api.tenant)


@case("webhooks_deliveries_list", 200, "a second page")
def _(api):
    return _next_page(api, "/deliveries")


@case("webhooks_deliveries_list", 400)
def _(api):
    return api("get", "/deliveries?status=lost")


@case("webhooks_deliveries_retrieve", 200, "pending, no attempt yet")
def _(api):
    return api("get", f"/deliveries/{api.id('pending')}")


@case("webhooks_deliveries_retrieve", 200, "delivered")
def _(api):
    return api("get", f"/deliveries/{api.id('delivered')}")


@case("webhooks_deliveries_retrieve", 200, "failed, a network error then a 500")
def _(api):
    return api("get", f"/deliveries/{api.id('failed')}")


@case("webhooks_deliveries_retrieve", 200, "in a tenant")
def _(api):
    return api("get", f"/deliveries/{api.id('owned_delivery')}", tenant=api.tenant)


@case("webhooks_deliveries_retrieve", 404)
def _(api):
    return api("get", f"/deliveries/{api.id('active')}")


@case("webhooks_deliveries_retry", 202)
def _(api):
    return api("post", f"/deliveries/{api.id('failed')}/retry")


@case("webhooks_deliveries_retry", 404)
def _(api):
    return api("post", "/deliveries/12345/retry")


@case("webhooks_deliveries_retry", 409, "still pending")
def _(api):
    return api("post", f"/deliveries/{api.id('pending')}/retry")


@case("webhooks_deliveries_recover", 202)
def _(api):
    since = (timezone.now() - timedelta(days=1)).isoformat()
    return api("post", "/deliveries/recover", {"since": since})


@case("webhooks_deliveries_recover", 400)
def _(api):
    return api("post", "/deliveries/recover", {"since": "yesterday"})


@pytest.mark.parametrize(
    ("operation_id", "status", "run"),
    [(operation_id, status, run) for operation_id, status, _, run in CASES],
    ids=["-".join(filter(None, (op, str(status), label))) for op, status, label, _ in CASES],
)
def test_response_matches_the_document(api, document, operation_id, status, run):
    assert operation_id in operations(document), f"the document has no {operation_id}"
    response = run(api)
    assert response.status_code == status, response.content
    assert_documented(document, operation_id, response)


def test_every_documented_response_has_a_case(document):
    """A new operation, or a new status of one, needs a case above (or is a shared error)."""
    documented = set()
    for operation_id, (_, _, operation) in operations(document).items():
        shared = SHARED | (BODY_SHARED if "requestBody" in operation else set())
        documented |= {(operation_id, int(status)) for status in operation["responses"]}
        missing = {(operation_id, status) for status in shared} - documented
        assert not missing, f"{operation_id} does not declare {sorted(s for _, s in missing)}"
        documented -= {(operation_id, status) for status in shared}
    tested = {(operation_id, status) for operation_id, status, _, _ in CASES}
    assert documented - tested == set(), "documented responses without a case"
    assert tested - documented == set(), "cases of responses the document does not declare"


# --- errors every operation shares ---------------------------------------------------------------


def _concrete(api: Api, path: str) -> str:
    """``path`` of the document with its parameters filled with rows that exist."""
    values = {
        "id": api.id("active") if path.startswith(f"{PREFIX}endpoints") else api.id("failed"),
        "name": "order.created",
    }

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"no value for the path parameter {name!r} of {path}"
        return values[name]

    return re.sub(r"\{([^/]+?)\}", value, path)


def _call(client: Any, method: str, path: str, body: str | None, **extra: Any) -> Any:
    if body is not None:
        extra.update(data=body, content_type="application/json")
    return getattr(client, method)(path, **extra)


def test_shared_errors_of_every_operation(api, document, client, django_user_model, settings):
    """401 without credentials, 403 for a user the permissions refuse and for staff outside any
    tenant, 413 for a body over DATA_UPLOAD_MAX_MEMORY_SIZE, on every operation of the document."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    member = django_user_model.objects.create_user("member", password="x")
    staff = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    big = json.dumps({"description": "x" * 2048, "url": URL, "events": ["*"]})
    checked = 0
    for operation_id, (path, method, operation) in operations(document).items():
        url = _concrete(api, path)
        body = "{}" if "requestBody" in operation else None

        client.logout()
        anonymous = _call(client, method, url, body)
        assert anonymous.status_code == 401, (operation_id, anonymous.content)
        assert anonymous["WWW-Authenticate"], operation_id
        assert anonymous.json()["code"] == "UNAUTHORIZED"
        assert_documented(document, operation_id, anonymous)

        client.force_login(member)
        refused = _call(client, method, url, body)
        assert (refused.status_code, refused.json()["code"]) == (403, "FORBIDDEN"), operation_id
        assert_documented(document, operation_id, refused)

        client.force_login(staff)
        outside = _call(client, method, url, body)
        assert (outside.status_code, outside.json()["code"]) == (403, "TENANT_REQUIRED")
        assert_documented(document, operation_id, outside)

        if "requestBody" in operation:
            too_big = _call(api.client, method, url, big)
            assert too_big.status_code == 413, (operation_id, too_big.content)
            assert too_big.json()["code"] == "PAYLOAD_TOO_LARGE"
            assert_documented(document, operation_id, too_big)
        checked += 1
    assert checked == len(operations(document)) > 0


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/nothing-here", 404),
        ("post", "/endpoints/x/y/z", 404),
        ("get", "/endpoints/", 404),
        ("options", "/", 404),
        ("delete", "/events", 405),
        ("put", "/endpoints", 405),
        ("patch", "/deliveries", 405),
    ],
)
def test_unknown_routes_and_methods_answer_the_error_shape(api, document, method, path, status):
    response = getattr(api.client, method)(PREFIX.rstrip("/") + path)
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert_valid(document, _pointer("components", "schemas", "WebhookError"), response.json())
