"""The webhooks admin: endpoints without secrets, status actions, a fast read-only delivery log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from better_core.admin import EstimatedCountPaginator
from better_tenant import run_as, run_as_system
from better_webhooks.admin import WebhookDeliveryAdmin, delivered_events
from better_webhooks.endpoints import create_endpoint
from better_webhooks.events import register_event, unregister_event
from better_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from better_webhooks.sending import send

pytestmark = pytest.mark.django_db

ENDPOINTS = reverse("admin:better_webhooks_webhookendpoint_changelist")
DELIVERIES = reverse("admin:better_webhooks_webhookdelivery_changelist")
ATTEMPTS = reverse("admin:better_webhooks_webhookdeliveryattempt_changelist")


@pytest.fixture(autouse=True)
def _catalog():
    register_event("order.created", "An order was placed.", {"type": "object"})
    register_event("order.refunded", "An order was refunded.", {"type": "object"})
    yield
    unregister_event("order.created")
    unregister_event("order.refunded")


@pytest.fixture
def log(tenant, other_tenant):
    """An endpoint per tenant; three deliveries each, one failed with two attempts."""
    made = {}
    for owner in (tenant, other_tenant):
        with run_as(owner):
            endpoint, secret = create_endpoint(f"https://{owner.slug}.example.com/h", ["*"])
            rows = send("order.created", {"n": 1}) + send("order.refunded", {"n": 2})
            rows += send("order.created", {"n": 3})
            failed = rows[1]
            WebhookDelivery.objects.filter(pk=failed.pk).update(
                status="failed", attempts=2, last_status_code=500
            )
            for number in (1, 2):
                WebhookDeliveryAttempt.objects.create(
                    delivery_id=failed.pk,
                    attempt=number,
                    url=endpoint.url,
                    response_status=500,
                    response_body=f"boom-{number}",
                )
        made[owner.pk] = {"endpoint": endpoint, "secret": secret, "rows": rows, "failed": failed}
    return made


def change_url(model: str, pk) -> str:
    return reverse(f"admin:better_webhooks_{model}_change", args=[pk])


def test_endpoint_pages_never_show_the_secret(admin_client, log):
    for made in log.values():
        for url in (ENDPOINTS, change_url("webhookendpoint", made["endpoint"].pk)):
            page = admin_client.get(url).content.decode()
            assert made["endpoint"].url in page
            assert made["secret"] not in page
            assert (
                "ciphertext" not in page and made["endpoint"].secrets[0]["ciphertext"] not in page
            )


def test_endpoints_cannot_be_added_in_the_admin(admin_client):
    response = admin_client.get(reverse("admin:better_webhooks_webhookendpoint_add"))
    assert response.status_code == 403


def test_superuser_sees_every_tenant_and_actions_change_status(admin_client, log):
    page = admin_client.get(ENDPOINTS).content.decode()
    ids = [str(made["endpoint"].pk) for made in log.values()]
    assert all(made["endpoint"].url in page for made in log.values())
    response = admin_client.post(
        ENDPOINTS, {"action": "disable_endpoints", "_selected_action": ids}, follow=True
    )
    assert "Disabled 2 endpoint(s)." in response.content.decode()
    with run_as_system():
        rows = list(WebhookEndpoint.objects.filter(pk__in=ids))
    assert {row.status for row in rows} == {"disabled"}
    assert all("admin" in row.disabled_reason for row in rows)
    admin_client.post(ENDPOINTS, {"action": "enable_endpoints", "_selected_action": ids[:1]})
    with run_as_system():
        statuses = dict(WebhookEndpoint.objects.values_list("pk", "status"))
    assert [statuses[row.pk] for row in rows if str(row.pk) == ids[0]] == ["active"]
    assert [statuses[row.pk] for row in rows if str(row.pk) == ids[1]] == ["disabled"]


def test_endpoint_change_validates_url_and_events(admin_client, log, tenant):
    endpoint = log[tenant.pk]["endpoint"]
    url = change_url("webhookendpoint", endpoint.pk)
    form = {
        "url": "http://169.254.169.254/x",
        "events": "order.created",
        "description": "",
        "metadata": "{}",
    }
    refused = admin_client.post(url, form)
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["url"]
    form.update(url="https://new.example.com/h", events="nope.event")
    assert admin_client.post(url, form).context["adminform"].form.errors["events"]
    form.update(events="order.created,order.refunded")
    assert admin_client.post(url, form).status_code == 302
    with run_as_system():
        row = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert (row.url, row.events) == (
        "https://new.example.com/h",
        ["order.created", "order.refunded"],
    )
    assert row.secrets == endpoint.secrets


def test_delivery_log_is_configured_for_large_tables():
    model_admin = admin.site._registry[WebhookDelivery]
    assert isinstance(model_admin, WebhookDeliveryAdmin)
    assert model_admin.show_full_result_count is False
    assert model_admin.paginator is EstimatedCountPaginator
    assert model_admin.sortable_by == ("created_at",)
    indexed = {next(iter(index.fields)) for index in WebhookDelivery._meta.indexes}
    assert {"status", "event"} <= indexed
    assert admin.site._registry[WebhookDeliveryAttempt].show_full_result_count is False


def test_delivery_log_lists_filters_and_never_counts_the_table(admin_client, log, tenant):
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(DELIVERIES).content.decode()
    assert page.count("order.refunded") >= 2
    assert not [
        q
        for q in queries
        if 'COUNT(*) AS "__count" FROM "webhook_deliveries"' in q["sql"] and "LIMIT" not in q["sql"]
    ]
    failed = admin_client.get(DELIVERIES, {"status": "failed"})
    assert len(failed.context["cl"].result_list) == 2
    refunded = admin_client.get(DELIVERIES, {"event": "order.refunded"})
    assert {row.event for row in refunded.context["cl"].result_list} == {"order.refunded"}
    with run_as_system():
        assert delivered_events() == ["order.created", "order.refunded"]
    message_id = log[tenant.pk]["failed"].message_id
    found = admin_client.get(DELIVERIES, {"q": message_id}).context["cl"].result_list
    assert [row.pk for row in found] == [log[tenant.pk]["failed"].pk]


def test_delivery_detail_is_read_only_with_attempts_inline(admin_client, log, tenant):
    failed = log[tenant.pk]["failed"]
    response = admin_client.get(change_url("webhookdelivery", failed.pk))
    page = response.content.decode()
    assert response.status_code == 200
    assert "boom-1" not in page  # bodies live on the attempt page, the inline stays compact
    inline = response.context["inline_admin_formsets"][0]
    assert [form.original.attempt for form in inline] == [1, 2]
    assert not inline.has_add_permission and not inline.has_delete_permission
    assert admin_client.post(change_url("webhookdelivery", failed.pk), {}).status_code == 403
    with run_as_system():
        attempt = WebhookDeliveryAttempt.objects.filter(delivery_id=failed.pk).first()
    detail = admin_client.get(change_url("webhookdeliveryattempt", attempt.pk)).content.decode()
    assert "boom-" in detail
    assert admin_client.get(ATTEMPTS, {"q": str(failed.pk)}).context["cl"].result_list.count() == 2


def test_replay_requeues_selected_deliveries(admin_client, log, tenant, other_tenant):
    failed = [log[owner.pk]["failed"] for owner in (tenant, other_tenant)]
    pending = log[tenant.pk]["rows"][0]
    selected = [str(row.pk) for row in (*failed, pending)]
    response = admin_client.post(
        DELIVERIES, {"action": "replay", "_selected_action": selected}, follow=True
    )
    text = response.content.decode()
    assert "Queued 2 deliveries again." in text and "1 pending or in delivery" in text
    with run_as_system():
        rows = {row.pk: row for row in WebhookDelivery.objects.filter(pk__in=selected)}
    for row in failed:
        assert rows[row.pk].status == "pending"
        assert rows[row.pk].max_attempts > rows[row.pk].attempts == 2
        assert rows[row.pk].next_attempt_at <= timezone.now() + timedelta(seconds=1)


def test_staff_without_superuser_see_only_what_their_scope_allows(client, django_user_model, log):
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user("ops", password="x", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__startswith="view_webhook"))
    client.force_login(staff)
    # The admin has no tenant scope, so row-level security shows a non-superuser nothing.
    response = client.get(DELIVERIES)
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []
    assert "replay" not in response.context["cl"].model_admin.get_actions(response.wsgi_request)
