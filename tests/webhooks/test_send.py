"""send(): catalog validation, transactional outbox, idempotency, dispatch and tenant scoping."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from rest_framework import serializers

import better_webhooks as webhooks
from better_webhooks import events
from better_webhooks.db import system_scope
from better_webhooks.exceptions import (
    ConfigurationError,
    PayloadValidationError,
    UnknownEventError,
)
from better_webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.support.webhooks import run_worker_until_idle

USER = {"id": "usr_1", "email": "a@example.com"}


def test_unknown_event_is_refused_with_the_known_names(db):
    with pytest.raises(UnknownEventError) as error:
        webhooks.send("user.deleted", USER)
    assert "user.deleted" in str(error.value) and "user.created" in str(error.value)


@pytest.mark.parametrize(
    ("payload", "path", "message"),
    [
        ({"id": "usr_1"}, "email", "is required"),
        ({**USER, "age": "old"}, "age", "must be of type integer"),
        ({**USER, "age": -1}, "age", "must be at least 0"),
        ({**USER, "tags": ["a", 2]}, "tags.1", "must be of type string"),
        ({**USER, "plan": "gold"}, "plan", "must be one of"),
        ({**USER, "extra": 1}, "extra", "is not an allowed property"),
        (["not", "an", "object"], "(root)", "must be of type object"),
    ],
)
def test_payload_validation_names_the_field(db, payload, path, message):
    with pytest.raises(PayloadValidationError) as error:
        webhooks.send("user.created", payload)
    assert path in error.value.errors
    assert message in error.value.errors[path]
    assert path in str(error.value)


def test_serializer_schema_and_decorator(db):
    @events.event("invoice.paid", "An invoice was paid")
    class InvoicePaid(serializers.Serializer):
        id = serializers.CharField()
        amount = serializers.IntegerField(min_value=1)

    try:
        with pytest.raises(PayloadValidationError) as error:
            webhooks.send("invoice.paid", {"id": "inv_1", "amount": 0})
        assert "amount" in error.value.errors
        assert webhooks.send("invoice.paid", {"id": "inv_1", "amount": 5}) == []
        assert events.get_event("invoice.paid").description == "An invoice was paid"
    finally:
        events.unregister_event("invoice.paid")


def test_invalid_catalog_entries_are_configuration_errors():
    with pytest.raises(ConfigurationError):
        events.register_event("bad name!", "", None)
    with pytest.raises(ConfigurationError):
        events.register_event("x.y", "", {"type": "strng"})
    with pytest.raises(ConfigurationError):
        events.register_event("x.y", "", 42)


def test_settings_catalog(db, settings):
    settings.BETTER_WEBHOOKS = {
        **settings.BETTER_WEBHOOKS,
        "EVENTS": [{"name": "order.shipped", "schema": {"type": "object", "required": ["id"]}}],
    }
    try:
        with pytest.raises(PayloadValidationError):
            webhooks.send("order.shipped", {})
        assert events.is_known("order.shipped")
    finally:
        events.unregister_event("order.shipped")


def test_one_delivery_per_subscribed_active_endpoint(db):
    subscribed, _ = webhooks.create_endpoint("https://a.example.com/h", ["user.created"])
    everything, _ = webhooks.create_endpoint("https://b.example.com/h", ["*"])
    webhooks.create_endpoint("https://c.example.com/h", ["ping"])
    disabled, _ = webhooks.create_endpoint("https://d.example.com/h", ["user.created"])
    webhooks.disable_endpoint(disabled)

    deliveries = webhooks.send("user.created", USER)
    assert {d.endpoint_id for d in deliveries} == {subscribed.id, everything.id}
    assert len({d.message_id for d in deliveries}) == 1
    assert all(d.status == "pending" and d.max_attempts == 5 for d in deliveries)


def test_rollback_sends_nothing(db, django_capture_on_commit_callbacks, receiver):
    webhooks.create_endpoint(receiver.url(), ["user.created"])
    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        webhooks.send("user.created", USER)
        raise RuntimeError("the business transaction fails")
    assert callbacks == []
    with system_scope():
        assert WebhookDelivery.objects.count() == 0
    run_worker_until_idle()
    assert receiver.requests == []


def test_dispatch_after_commit_publishes_one_task_per_send(db, settings, monkeypatch, receiver):
    from better_webhooks import tasks

    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "CELERY": True}
    published = []
    monkeypatch.setattr(
        tasks.deliver, "apply_async", lambda args, **options: published.append(args[0])
    )
    for path in ("/a", "/b", "/c"):
        webhooks.create_endpoint(receiver.url(path), ["user.created"])
    with transaction.atomic():
        deliveries = webhooks.send("user.created", USER)
        assert published == []
    # The test's outer transaction is still open: the callback runs when it "commits".
    from django.db import connection

    for _, callback, _ in connection.run_on_commit:
        callback()
    connection.run_on_commit.clear()
    # One task carries the three deliveries of the send() call.
    assert published == [[str(d.id) for d in deliveries]]
    # The task (run in-process here) delivers them.
    assert tasks.deliver.apply(args=published).get() == {"delivered": 3}
    assert sorted(r.path for r in receiver.requests) == ["/a", "/b", "/c"]
    with system_scope():
        assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}
    # A second run finds nothing to do: the claim makes the task idempotent.
    assert tasks.deliver.apply(args=published).get() == {}
    assert len(receiver.requests) == 3


def test_send_to_given_endpoints_ignores_subscriptions(db, receiver):
    webhooks.create_endpoint(receiver.url("/subscribed"), ["user.created"])
    other, _ = webhooks.create_endpoint(receiver.url("/other"), ["ping"])
    disabled, _ = webhooks.create_endpoint(receiver.url("/disabled"), ["user.created"])
    webhooks.disable_endpoint(disabled)
    deliveries = webhooks.send("user.created", USER, endpoints=[other, str(disabled.id)])
    # Only the named active endpoint: not the subscribed one, not the disabled one.
    assert [d.endpoint_id for d in deliveries] == [other.id]
    assert webhooks.send("user.created", USER, endpoints=[]) == []
    run_worker_until_idle()
    assert [r.path for r in receiver.requests] == ["/other"]
    with pytest.raises(ValueError, match="not an endpoint"):
        webhooks.send("user.created", USER, endpoints=["nope"])
    # The payload is still checked against the event's schema.
    with pytest.raises(PayloadValidationError):
        webhooks.send("user.created", {"id": "usr_1"}, endpoints=[other])


def test_idempotency_key_returns_the_first_deliveries(db):
    webhooks.create_endpoint("https://a.example.com/h", ["user.created"])
    first = webhooks.send("user.created", USER, idempotency_key="signup-1")
    again = webhooks.send("user.created", {**USER, "id": "usr_2"}, idempotency_key="signup-1")
    assert [d.id for d in again] == [d.id for d in first]
    other = webhooks.send("user.created", USER, idempotency_key="signup-2")
    assert other[0].id != first[0].id
    with system_scope():
        assert WebhookDelivery.objects.count() == 2
        # Outside the window the key is free again.
        WebhookDelivery.objects.filter(idempotency_key="signup-1").update(
            created_at=timezone.now() - timedelta(hours=25)
        )
    later = webhooks.send("user.created", USER, idempotency_key="signup-1")
    assert later[0].id != first[0].id


def test_tenant_scoping(db, tenant, other_tenant, as_tenant):
    with as_tenant(tenant):
        mine, _ = webhooks.create_endpoint("https://a.example.com/h", ["user.created"])
    with as_tenant(other_tenant):
        # Tenant B sees none of A's endpoints, and its events do not reach them.
        assert WebhookEndpoint.objects.count() == 0
        assert webhooks.send("user.created", USER) == []
    platform, _ = webhooks.create_endpoint("https://p.example.com/h", ["user.created"])
    with as_tenant(tenant):
        assert list(WebhookEndpoint.objects.values_list("id", flat=True)) == [mine.id]
        (delivery,) = webhooks.send("user.created", USER)
        assert delivery.endpoint_id == mine.id and delivery.tenant_id == tenant.id
        assert WebhookDelivery.objects.count() == 1
    with as_tenant(other_tenant):
        assert WebhookDelivery.objects.count() == 0
    # Sent without a tenant: only the platform's endpoints receive it.
    (untenanted,) = webhooks.send("user.created", USER)
    assert untenanted.endpoint_id == platform.id and untenanted.tenant_id is None
    # An explicit tenant outside any scope.
    (explicit,) = webhooks.send("user.created", USER, tenant=tenant)
    assert explicit.endpoint_id == mine.id
