"""The webhooks API outside any tenant: endpoints, secrets, test events, catalog, delivery log."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework import serializers

from better_tenant import run_as_system
from better_webhooks.crypto import endpoint_secrets, generate_key
from better_webhooks.endpoints import create_endpoint
from better_webhooks.events import register_event, unregister_event
from better_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from better_webhooks.sending import send

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.webhooks.urls")]

KEY = generate_key()
BASE = "/webhooks"
URL = "https://hooks.example.com/receive"


class CustomerSerializer(serializers.Serializer):
    id = serializers.CharField()
    email = serializers.EmailField()


class InvoicePaidSerializer(serializers.Serializer):
    """An invoice was paid."""

    id = serializers.UUIDField()
    amount = serializers.IntegerField(min_value=0)
    note = serializers.CharField(required=False, allow_null=True)
    customer = CustomerSerializer()


USER_CREATED = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "email": {"type": "string"}},
    "required": ["id"],
}


@pytest.fixture(autouse=True)
def _webhooks(settings):
    settings.BETTER_WEBHOOKS = {
        **settings.BETTER_WEBHOOKS,
        "ENCRYPTION_KEYS": [KEY],
        "CELERY": False,
        "SECRET_ROTATION_OVERLAP": "24h",
    }
    # Requests here name no tenant: the API runs in system mode for superusers.
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if not m.endswith("TenantMiddleware")]
    register_event("invoice.paid", "An invoice was paid.", InvoicePaidSerializer)
    register_event("user.created", "A user signed up.", USER_CREATED)
    yield
    unregister_event("invoice.paid")
    unregister_event("user.created")


def post(client, path, body=None, **extra):
    return client.post(
        BASE + path, json.dumps(body or {}), content_type="application/json", **extra
    )


def patch(client, path, body):
    return client.patch(BASE + path, json.dumps(body), content_type="application/json")


def invoice(amount=100):
    return {
        "id": "6f1c2a9e-3c1b-4a55-8d1e-2b7f0a5c9d10",
        "amount": amount,
        "customer": {"id": "cus_1", "email": "a@example.com"},
    }


def stored(model, **filters):
    with run_as_system():
        return list(model.objects.filter(**filters))


# --- endpoints ---------------------------------------------------------------------------------


def test_create_returns_the_secret_once(admin_client):
    response = post(admin_client, "/endpoints", {"url": URL, "events": ["invoice.paid"]})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["url"] == URL and body["events"] == ["invoice.paid"]
    assert body["status"] == "active" and body["tenantId"] is None
    [endpoint] = stored(WebhookEndpoint, pk=body["id"])
    assert endpoint_secrets(endpoint) == [body["secret"]]
    # Neither the detail, the list nor the stored ciphertext reach a later response.
    detail = admin_client.get(f"{BASE}/endpoints/{body['id']}")
    listed = admin_client.get(f"{BASE}/endpoints")
    for text in (detail.content.decode(), listed.content.decode()):
        assert body["secret"] not in text
        assert "secret" not in text and "ciphertext" not in text
    assert [item["id"] for item in listed.json()["data"]] == [body["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["invoice.paid"]}, "url"),
        ({"url": URL}, "events"),
        ({"url": URL, "events": []}, "events"),
        ({"url": URL, "events": "invoice.paid"}, "events"),
        ({"url": URL, "events": ["nope.event"]}, "events"),
        ({"url": "ftp://hooks.example.com/x", "events": ["*"]}, "url"),
        ({"url": "http://10.0.0.7/hook", "events": ["*"]}, "url"),
        ({"url": URL, "events": ["*"], "metadata": [1]}, "metadata"),
    ],
)
def test_create_rejects_bad_input_with_field_errors(admin_client, body, field):
    response = post(admin_client, "/endpoints", body)
    assert response.status_code == 400
    error = response.json()
    assert error["code"] == "VALIDATION_ERROR"
    assert field in error["details"] and error["error"].startswith(field)
    assert stored(WebhookEndpoint) == []


@pytest.mark.parametrize(
    "url",
    [
        "https://127.1/",
        "https://2130706433/",
        "https://0x7f000001/",
        "https://017700000001/",
        "https://localhost/",
    ],
)
def test_create_refuses_loopback_in_every_spelling(admin_client, settings, url):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "ALLOW_HTTP_LOCALHOST": False}
    response = post(admin_client, "/endpoints", {"url": url, "events": ["*"]})
    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert "url" in response.json()["details"]
    assert stored(WebhookEndpoint) == []


def test_unknown_event_error_names_the_catalog(admin_client):
    response = post(admin_client, "/endpoints", {"url": URL, "events": ["nope.event"]})
    assert "nope.event" in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/endpoints", "{not json"),
        ("post", "/endpoints", "[]"),
        ("patch", "/endpoints/{id}", '{"events": 7}'),
        ("post", "/endpoints/{id}/rotate-secret", '{"overlap": "forever"}'),
        ("post", "/endpoints/{id}/test", '{"payload": "text"}'),
        ("post", "/deliveries/recover", '{"since": "yesterday"}'),
        ("get", "/endpoints/not-a-uuid", None),
        ("get", "/deliveries/not-a-uuid", None),
        ("post", "/deliveries/12345/retry", None),
        ("get", "/deliveries?status=lost", None),
        ("get", "/deliveries?endpointId=zzz", None),
        ("get", "/deliveries?cursor=bad", None),
        ("put", "/endpoints/{id}", "{}"),
    ],
)
def test_bad_input_is_a_json_4xx(admin_client, method, path, body):
    endpoint, _ = create_endpoint(URL, ["*"])
    call = getattr(admin_client, method)
    kwargs = {"content_type": "application/json"} if body is not None else {}
    args = (body,) if body is not None else ()
    response = call(BASE + path.format(id=endpoint.pk), *args, **kwargs)
    assert 400 <= response.status_code < 500, response.content
    error = response.json()
    assert set(error) >= {"error", "code"} and error["code"].isupper()
    assert error["error"]


def test_not_found_and_malformed_ids(admin_client):
    for path in ("/endpoints/not-a-uuid", f"/endpoints/{'0' * 8}-0000-0000-0000-{'0' * 12}"):
        response = admin_client.get(BASE + path)
        assert response.status_code == 404
        assert response.json()["code"] == "NOT_FOUND"
    assert post(admin_client, "/endpoints", None).json()["code"] == "VALIDATION_ERROR"
    bad = admin_client.post(BASE + "/endpoints", "{oops", content_type="application/json")
    assert (bad.status_code, bad.json()["code"]) == (400, "INVALID_JSON")


def test_update_changes_url_events_and_description(admin_client):
    endpoint, _ = create_endpoint(URL, ["invoice.paid"])
    response = patch(
        admin_client,
        f"/endpoints/{endpoint.pk}",
        {"url": "https://other.example.com/h", "events": ["user.created", "user.created"]},
    )
    assert response.status_code == 200, response.content
    assert response.json()["events"] == ["user.created"]
    [row] = stored(WebhookEndpoint, pk=endpoint.pk)
    assert (row.url, row.events) == ("https://other.example.com/h", ["user.created"])
    refused = patch(admin_client, f"/endpoints/{endpoint.pk}", {"url": "http://10.0.0.7/h"})
    assert refused.status_code == 400
    assert stored(WebhookEndpoint, pk=endpoint.pk)[0].url == "https://other.example.com/h"


def test_endpoint_list_pages_like_the_delivery_log(admin_client):
    made = [create_endpoint(f"https://h{n}.example.com/h", ["*"])[0] for n in range(5)]
    with run_as_system():
        base = timezone.now() - timedelta(hours=1)
        for index, endpoint in enumerate(made):
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
                created_at=base + timedelta(minutes=index)
            )
    seen, url, pages = [], f"{BASE}/endpoints?limit=2", 0
    while url:
        body = admin_client.get(url).json()
        assert set(body) == {"data", "next", "previous"}
        assert len(body["data"]) <= 2
        assert (body["previous"] is None) == (pages == 0)
        seen += [item["id"] for item in body["data"]]
        url, pages = body["next"], pages + 1
    assert pages == 3
    assert seen == [str(endpoint.pk) for endpoint in reversed(made)]
    bad = admin_client.get(f"{BASE}/endpoints", {"cursor": "bad"})
    assert (bad.status_code, bad.json()["code"]) == (400, "INVALID_CURSOR")
    whole = admin_client.get(f"{BASE}/endpoints").json()
    assert len(whole["data"]) == 5 and whole["next"] is None


def test_delete_removes_the_endpoint(admin_client):
    endpoint, _ = create_endpoint(URL, ["*"])
    assert admin_client.delete(f"{BASE}/endpoints/{endpoint.pk}").status_code == 204
    assert stored(WebhookEndpoint) == []
    assert admin_client.delete(f"{BASE}/endpoints/{endpoint.pk}").status_code == 404


def test_disable_and_enable(admin_client):
    endpoint, _ = create_endpoint(URL, ["*"])
    with run_as_system():
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(consecutive_failures=4)
    disabled = post(admin_client, f"/endpoints/{endpoint.pk}/disable").json()
    assert disabled["status"] == "disabled" and disabled["disabledReason"]
    assert disabled["disabledAt"] is not None
    assert stored(WebhookEndpoint, pk=endpoint.pk)[0].status == "disabled"
    enabled = post(admin_client, f"/endpoints/{endpoint.pk}/enable").json()
    assert enabled["status"] == "active" and enabled["disabledAt"] is None
    row = stored(WebhookEndpoint, pk=endpoint.pk)[0]
    assert (row.status, row.consecutive_failures) == ("active", 0)


def test_rotate_secret_returns_the_new_secret_and_keeps_the_old_for_the_overlap(admin_client):
    endpoint, old = create_endpoint(URL, ["*"])
    response = post(admin_client, f"/endpoints/{endpoint.pk}/rotate-secret", {"overlap": "2h"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["secret"] != old and body["endpointId"] == str(endpoint.pk)
    expires = timezone.datetime.fromisoformat(body["previousSecretExpiresAt"])
    assert timedelta(minutes=119) < expires - timezone.now() <= timedelta(hours=2)
    [row] = stored(WebhookEndpoint, pk=endpoint.pk)
    assert endpoint_secrets(row) == [body["secret"], old]

    again = post(admin_client, f"/endpoints/{endpoint.pk}/rotate-secret", {"overlap": 0}).json()
    [row] = stored(WebhookEndpoint, pk=endpoint.pk)
    assert endpoint_secrets(row) == [again["secret"]]
    assert again["previousSecretExpiresAt"] is None


def test_test_event_goes_to_this_endpoint_only(admin_client):
    target, _ = create_endpoint(URL, ["invoice.paid"])
    create_endpoint("https://all.example.com/h", ["*"])
    response = post(admin_client, f"/endpoints/{target.pk}/test")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["eventName"], body["endpointId"], body["status"]) == (
        "webhook.test",
        str(target.pk),
        "pending",
    )
    [delivery] = stored(WebhookDelivery)
    assert delivery.endpoint_id == target.pk
    assert delivery.payload["endpointId"] == str(target.pk)
    custom = post(admin_client, f"/endpoints/{target.pk}/test", {"payload": {"message": "hi"}})
    assert stored(WebhookDelivery, pk=custom.json()["id"])[0].payload == {"message": "hi"}


def test_test_event_refuses_a_disabled_endpoint_and_a_bad_payload(admin_client):
    endpoint, _ = create_endpoint(URL, ["*"])
    bad = post(admin_client, f"/endpoints/{endpoint.pk}/test", {"payload": {"message": 5}})
    assert (bad.status_code, bad.json()["code"]) == (400, "INVALID_PAYLOAD")
    assert "message" in bad.json()["details"]
    post(admin_client, f"/endpoints/{endpoint.pk}/disable")
    refused = post(admin_client, f"/endpoints/{endpoint.pk}/test")
    assert (refused.status_code, refused.json()["code"]) == (409, "ENDPOINT_DISABLED")
    assert stored(WebhookDelivery) == []


# --- event catalog -----------------------------------------------------------------------------


def test_catalog_lists_names_descriptions_and_json_schemas(admin_client):
    events = {item["name"]: item for item in admin_client.get(f"{BASE}/events").json()["data"]}
    assert {"invoice.paid", "user.created", "webhook.test"} <= set(events)
    paid = events["invoice.paid"]
    assert paid["description"] == "An invoice was paid."
    schema = paid["schema"]
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"id", "amount", "customer"}
    assert schema["properties"]["id"] == {"type": "string", "format": "uuid"}
    assert schema["properties"]["amount"]["minimum"] == 0
    assert schema["properties"]["note"]["type"] == ["string", "null"]
    assert schema["properties"]["customer"] == {"$ref": "#/$defs/Customer"}
    assert schema["$defs"]["Customer"]["properties"]["email"]["format"] == "email"
    assert events["user.created"]["schema"] == USER_CREATED


def test_catalog_detail_and_unknown_event(admin_client):
    assert admin_client.get(f"{BASE}/events/user.created").json()["schema"] == USER_CREATED
    missing = admin_client.get(f"{BASE}/events/no.such")
    assert (missing.status_code, missing.json()["code"]) == (404, "UNKNOWN_EVENT")


# --- deliveries --------------------------------------------------------------------------------


@pytest.fixture
def log():
    """Two endpoints and six deliveries of two events; two of them failed."""
    first, _ = create_endpoint(URL, ["*"])
    second, _ = create_endpoint("https://second.example.com/h", ["invoice.paid"])
    ids = []
    for amount in range(3):
        ids += [d.pk for d in send("invoice.paid", invoice(amount))]
    ids += [d.pk for d in send("user.created", {"id": "u1"})]
    with run_as_system():
        rows = list(WebhookDelivery.objects.order_by("created_at", "id"))
        base = timezone.now() - timedelta(hours=1)
        for index, row in enumerate(rows):
            row.created_at = base + timedelta(minutes=index)
            row.save(update_fields=["created_at"])
        WebhookDelivery.objects.filter(pk__in=[rows[1].pk, rows[4].pk]).update(
            status="failed", attempts=5, last_error="HTTP 500"
        )
    return {"first": first, "second": second, "rows": rows}


def test_deliveries_filter_by_endpoint_event_and_status(admin_client, log):
    def ids(query):
        response = admin_client.get(f"{BASE}/deliveries", query)
        assert response.status_code == 200, response.content
        return [item["id"] for item in response.json()["data"]]

    rows = log["rows"]
    assert ids({}) == [str(r.pk) for r in reversed(rows)]
    first = str(log["first"].pk)
    assert ids({"endpointId": first}) == [
        str(r.pk) for r in reversed(rows) if str(r.endpoint_id) == first
    ]
    assert ids({"event": "user.created"}) == [
        str(r.pk) for r in reversed(rows) if r.event == "user.created"
    ]
    assert ids({"status": "failed"}) == [str(rows[4].pk), str(rows[1].pk)]
    assert ids({"status": "failed", "endpointId": str(rows[4].endpoint_id)}) == [
        str(r.pk) for r in (rows[4], rows[1]) if r.endpoint_id == rows[4].endpoint_id
    ]


def test_deliveries_cursor_pages_cover_the_log_once(admin_client, log):
    seen, url, pages = [], f"{BASE}/deliveries?limit=3", 0
    while url:
        body = admin_client.get(url).json()
        assert len(body["data"]) <= 3
        seen += [item["id"] for item in body["data"]]
        url, pages = body["next"], pages + 1
    assert pages == 3
    assert seen == [str(r.pk) for r in reversed(log["rows"])]
    bad = admin_client.get(f"{BASE}/deliveries", {"cursor": "bad"})
    assert (bad.status_code, bad.json()["code"]) == (400, "INVALID_CURSOR")
    first = admin_client.get(f"{BASE}/deliveries?limit=3").json()
    assert first["previous"] is None and first["data"][0]["eventName"] == "user.created"


def test_delivery_detail_has_payload_and_attempts(admin_client, log):
    delivery = log["rows"][1]
    with run_as_system():
        for number, status_code in ((2, 500), (1, 502)):
            WebhookDeliveryAttempt.objects.create(
                delivery=delivery,
                attempt=number,
                url=URL,
                request_headers={"webhook-id": delivery.message_id},
                response_status=status_code,
                duration_ms=12,
            )
    body = admin_client.get(f"{BASE}/deliveries/{delivery.pk}").json()
    assert body["payload"] == delivery.payload
    assert [a["attempt"] for a in body["attemptLog"]] == [1, 2]
    assert [a["responseStatus"] for a in body["attemptLog"]] == [502, 500]
    assert body["status"] == "failed" and body["lastError"] == "HTTP 500"


def test_retry_requeues_a_failed_delivery(admin_client, log):
    failed = log["rows"][1]
    response = post(admin_client, f"/deliveries/{failed.pk}/retry")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "pending"
    [row] = stored(WebhookDelivery, pk=failed.pk)
    assert row.status == "pending" and row.max_attempts > row.attempts
    assert row.next_attempt_at <= timezone.now()
    busy = post(admin_client, f"/deliveries/{log['rows'][0].pk}/retry")
    assert (busy.status_code, busy.json()["code"]) == (409, "DELIVERY_IN_PROGRESS")


def test_recover_requeues_failed_deliveries_since_a_date(admin_client, log):
    rows = log["rows"]
    since = rows[3].created_at
    response = post(admin_client, "/deliveries/recover", {"since": since.isoformat()})
    assert response.status_code == 202, response.content
    assert response.json() == {"recovered": 1}
    statuses = {r.pk: r.status for r in stored(WebhookDelivery)}
    assert statuses[rows[4].pk] == "pending"
    assert statuses[rows[1].pk] == "failed"  # failed before `since`
    future = post(admin_client, "/deliveries/recover", {"since": "2999-01-01T00:00:00Z"})
    assert (future.status_code, future.json()["code"]) == (400, "VALIDATION_ERROR")


# --- permissions -------------------------------------------------------------------------------


def test_anonymous_requests_get_a_401_and_non_staff_users_a_403(client, django_user_model):
    anonymous = client.get(f"{BASE}/endpoints")
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "UNAUTHORIZED")
    # DRF's default classes are sessions, then HTTP Basic: the first with a challenge answers.
    assert anonymous["WWW-Authenticate"] == 'Basic realm="api"'
    client.force_login(django_user_model.objects.create_user("member", password="x"))
    refused = client.get(f"{BASE}/endpoints")
    assert (refused.status_code, refused.json()["code"]) == (403, "FORBIDDEN")
    assert "WWW-Authenticate" not in refused


def test_wrong_credentials_get_a_401(client):
    response = client.get(f"{BASE}/endpoints", HTTP_AUTHORIZATION="Basic bm9ib2R5Om5vcGU=")
    assert (response.status_code, response.json()["code"]) == (401, "UNAUTHORIZED")
    assert response["WWW-Authenticate"] == 'Basic realm="api"'


def test_sessions_alone_still_challenge_a_request_without_credentials(client, monkeypatch):
    from rest_framework.authentication import SessionAuthentication

    from better_webhooks.api.views import WebhooksAPIView

    monkeypatch.setattr(WebhooksAPIView, "authentication_classes", [SessionAuthentication])
    response = client.get(f"{BASE}/events")
    assert (response.status_code, response.json()["code"]) == (401, "UNAUTHORIZED")
    assert response["WWW-Authenticate"] == 'Session realm="api"'


def test_staff_outside_a_tenant_get_tenant_required(client):
    create_endpoint(URL, ["*"])
    staff = get_user_model().objects.create_user("staff", password="x", is_staff=True)
    client.force_login(staff)
    response = client.get(f"{BASE}/endpoints")
    assert (response.status_code, response.json()["code"]) == (403, "TENANT_REQUIRED")


def test_permission_classes_come_from_the_setting(client, settings, django_user_model):
    settings.BETTER_WEBHOOKS = {
        **settings.BETTER_WEBHOOKS,
        "API_PERMISSION_CLASSES": ["tests.webhooks.urls.ReadOnlyForAuthenticated"],
    }
    user = django_user_model.objects.create_user("reader", password="x", is_superuser=True)
    client.force_login(user)
    assert client.get(f"{BASE}/events").status_code == 200
    refused = post(client, "/endpoints", {"url": URL, "events": ["*"]})
    assert (refused.status_code, refused.json()["code"]) == (403, "FORBIDDEN")


# --- errors outside the handlers ------------------------------------------------------------------


def test_an_over_size_body_is_a_json_413(admin_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = {"url": URL, "events": ["*"], "description": "x" * 1000}
    response = post(admin_client, "/endpoints", body)
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    error = response.json()
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert "1000 bytes" in error["error"] and "DATA_UPLOAD_MAX_MEMORY_SIZE" in error["error"]
    assert stored(WebhookEndpoint) == []
    body["description"] = "short"
    assert post(admin_client, "/endpoints", body).status_code == 201


def test_too_many_form_fields_or_files_are_a_json_400(admin_client, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 3
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 1
    fields = admin_client.post(
        BASE + "/endpoints",
        "&".join(f"f{n}=x" for n in range(5)),
        content_type="application/x-www-form-urlencoded",
    )
    assert (fields.status_code, fields.json()["code"]) == (400, "TOO_MANY_FIELDS")
    files = admin_client.post(
        BASE + "/endpoints",
        {f"f{n}": SimpleUploadedFile(f"{n}.txt", b"x") for n in range(3)},
    )
    assert (files.status_code, files.json()["code"]) == (400, "TOO_MANY_FILES")
    assert stored(WebhookEndpoint) == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/nope", 404),
        ("get", "/endpoints/", 404),
        ("post", "/deliveries/x/retry/again", 404),
        ("delete", "/events", 405),
        ("put", "/endpoints", 405),
    ],
)
def test_unknown_routes_and_methods_are_json_errors(admin_client, client, method, path, status):
    response = getattr(admin_client, method)(BASE + path)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) == {"error", "code"}
    if status == 404:
        # No route: nothing to authenticate against.
        assert getattr(client, method)(BASE + path).status_code == 404
        assert path in response.json()["error"]


def test_missing_encryption_keys_are_a_503_that_says_so(admin_client, settings):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "ENCRYPTION_KEYS": []}
    response = post(admin_client, "/endpoints", {"url": URL, "events": ["*"]})
    assert (response.status_code, response.json()["code"]) == (503, "WEBHOOKS_NOT_CONFIGURED")
    assert "ENCRYPTION_KEYS" in response.json()["error"]
    assert stored(WebhookEndpoint) == []
