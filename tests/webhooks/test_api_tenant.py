"""The webhooks API in a tenant's scope: row-level security shows each tenant only its own rows."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from better_tenant import run_as, run_as_system
from better_webhooks.crypto import generate_key
from better_webhooks.endpoints import create_endpoint
from better_webhooks.events import register_event, unregister_event
from better_webhooks.models import WebhookDelivery, WebhookEndpoint
from better_webhooks.sending import send

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.webhooks.urls")]

KEY = generate_key()
BASE = "/webhooks"


@pytest.fixture(autouse=True)
def _webhooks(settings):
    settings.BETTER_WEBHOOKS = {
        **settings.BETTER_WEBHOOKS,
        "ENCRYPTION_KEYS": [KEY],
        "CELERY": False,
    }
    register_event("order.created", "An order was placed.", {"type": "object"})
    yield
    unregister_event("order.created")


@pytest.fixture
def staff(client, django_user_model):
    """A staff member (not a superuser): the API runs in the request's tenant scope."""
    client.force_login(django_user_model.objects.create_user("ops", password="x", is_staff=True))
    return client


@pytest.fixture
def world(tenant, other_tenant):
    """Each tenant has an endpoint with one failed and one delivered delivery."""
    made = {}
    for owner in (tenant, other_tenant):
        with run_as(owner):
            endpoint, _ = create_endpoint(f"https://{owner.slug}.example.com/h", ["*"])
            deliveries = send("order.created", {"n": 1}) + send("order.created", {"n": 2})
            WebhookDelivery.objects.filter(pk=deliveries[0].pk).update(status="failed")
            WebhookDelivery.objects.filter(pk=deliveries[1].pk).update(status="delivered")
        made[owner.pk] = {"endpoint": endpoint, "failed": deliveries[0]}
    return made


def call(client, method, path, tenant, body=None):
    kwargs = {"HTTP_X_TENANT_ID": str(tenant.pk)}
    if body is not None:
        kwargs.update(data=json.dumps(body), content_type="application/json")
    return getattr(client, method)(BASE + path, **kwargs)


def test_lists_show_only_the_tenant_in_scope(staff, tenant, other_tenant, world):
    mine, theirs = world[tenant.pk], world[other_tenant.pk]
    endpoints = call(staff, "get", "/endpoints", tenant).json()["data"]
    assert [e["id"] for e in endpoints] == [str(mine["endpoint"].pk)]
    assert endpoints[0]["tenantId"] == str(tenant.pk)
    deliveries = call(staff, "get", "/deliveries", tenant).json()["data"]
    assert len(deliveries) == 2
    assert {d["tenantId"] for d in deliveries} == {str(tenant.pk)}
    # Filtering by the other tenant's endpoint finds nothing rather than its rows.
    other = call(staff, "get", f"/deliveries?endpointId={theirs['endpoint'].pk}", tenant)
    assert other.json()["data"] == []


def test_the_views_leave_the_filtering_to_row_level_security(staff, tenant, world):
    with CaptureQueriesContext(connection) as queries:
        assert call(staff, "get", "/endpoints", tenant).status_code == 200
    selects = [q["sql"] for q in queries if 'FROM "webhook_endpoints"' in q["sql"]]
    assert selects and all('tenant_id" =' not in sql for sql in selects)


def test_other_tenants_objects_are_not_found(staff, tenant, other_tenant, world):
    theirs = world[other_tenant.pk]
    endpoint_id, delivery_id = theirs["endpoint"].pk, theirs["failed"].pk
    for method, path, body in [
        ("get", f"/endpoints/{endpoint_id}", None),
        ("patch", f"/endpoints/{endpoint_id}", {"description": "hijacked"}),
        ("delete", f"/endpoints/{endpoint_id}", None),
        ("post", f"/endpoints/{endpoint_id}/disable", {}),
        ("post", f"/endpoints/{endpoint_id}/rotate-secret", {}),
        ("post", f"/endpoints/{endpoint_id}/test", {}),
        ("get", f"/deliveries/{delivery_id}", None),
        ("post", f"/deliveries/{delivery_id}/retry", {}),
    ]:
        response = call(staff, method, path, tenant, body)
        assert (response.status_code, response.json()["code"]) == (404, "NOT_FOUND"), path
    with run_as_system():
        row = WebhookEndpoint.objects.get(pk=endpoint_id)
        assert (row.description, row.status) == ("", "active")
        assert row.secrets == theirs["endpoint"].secrets
        assert WebhookDelivery.objects.get(pk=delivery_id).status == "failed"


def test_created_endpoints_belong_to_the_tenant_in_scope(staff, tenant, other_tenant):
    body = {"url": "https://new.example.com/h", "events": ["order.created"]}
    response = call(staff, "post", "/endpoints", tenant, body)
    assert response.status_code == 201, response.content
    assert response.json()["tenantId"] == str(tenant.pk)
    with run_as_system():
        assert WebhookEndpoint.objects.get(pk=response.json()["id"]).tenant_id == tenant.pk
    assert call(staff, "get", "/endpoints", other_tenant).json()["data"] == []


def test_test_event_and_recover_stay_in_the_tenant(staff, tenant, other_tenant, world):
    mine, theirs = world[tenant.pk], world[other_tenant.pk]
    sent = call(staff, "post", f"/endpoints/{mine['endpoint'].pk}/test", tenant, {})
    assert sent.status_code == 202 and sent.json()["tenantId"] == str(tenant.pk)
    since = (timezone.now() - timedelta(hours=1)).isoformat()
    recovered = call(staff, "post", "/deliveries/recover", tenant, {"since": since})
    assert recovered.json() == {"recovered": 1}
    with run_as_system():
        assert WebhookDelivery.objects.get(pk=mine["failed"].pk).status == "pending"
        assert WebhookDelivery.objects.get(pk=theirs["failed"].pk).status == "failed"


def test_a_superuser_in_a_tenant_scope_also_sees_only_that_tenant(
    admin_client, tenant, other_tenant, world
):
    endpoints = call(admin_client, "get", "/endpoints", other_tenant).json()["data"]
    assert [e["id"] for e in endpoints] == [str(world[other_tenant.pk]["endpoint"].pk)]


def test_unknown_tenant_is_refused_by_the_middleware(staff, world):
    response = staff.get(f"{BASE}/endpoints", HTTP_X_TENANT_ID="no-such-tenant")
    assert response.status_code == 404
    assert "data" not in response.json()
