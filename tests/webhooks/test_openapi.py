"""The OpenAPI document (drf-spectacular) describes the webhooks API and the event catalog."""

from __future__ import annotations

import pytest
from django.core.exceptions import FieldDoesNotExist
from rest_framework import serializers

from better_webhooks.events import register_event, unregister_event

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.webhooks.urls")]


class ShipmentSerializer(serializers.Serializer):
    tracking = serializers.CharField()
    weight_grams = serializers.IntegerField(min_value=1)


class AddressSerializer(serializers.Serializer):
    city = serializers.CharField()


class ParcelSerializer(serializers.Serializer):
    to = AddressSerializer()


@pytest.fixture(autouse=True)
def _catalog():
    register_event("shipment.sent", "A shipment left the warehouse.", ShipmentSerializer)
    register_event("parcel.routed", "A parcel got its route.", ParcelSerializer)
    register_event("user.deleted", "A user was deleted.", {"type": "object", "required": ["id"]})
    yield
    for name in ("shipment.sent", "parcel.routed", "user.deleted"):
        unregister_event(name)


@pytest.fixture
def document(admin_client, settings):
    # The schema view is not tenant data: serve it outside the tenant middleware.
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if not m.endswith("TenantMiddleware")]
    response = admin_client.get("/schema/", {"format": "json"})
    assert response.status_code == 200, response.content
    return response.json()


def test_document_has_every_api_operation(document):
    paths = document["paths"]
    expected = {
        "/webhooks/endpoints": {"get", "post"},
        "/webhooks/endpoints/{id}": {"get", "patch", "delete"},
        "/webhooks/endpoints/{id}/enable": {"post"},
        "/webhooks/endpoints/{id}/disable": {"post"},
        "/webhooks/endpoints/{id}/rotate-secret": {"post"},
        "/webhooks/endpoints/{id}/test": {"post"},
        "/webhooks/events": {"get"},
        "/webhooks/events/{name}": {"get"},
        "/webhooks/deliveries": {"get"},
        "/webhooks/deliveries/{id}": {"get"},
        "/webhooks/deliveries/{id}/retry": {"post"},
        "/webhooks/deliveries/recover": {"post"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), path
    ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_secret_is_only_in_the_create_response(document):
    schemas = document["components"]["schemas"]
    assert "secret" in schemas["EndpointWithSecret"]["properties"]
    assert "secret" not in schemas["Endpoint"]["properties"]
    create = document["paths"]["/webhooks/endpoints"]["post"]["responses"]["201"]
    assert create["content"]["application/json"]["schema"]["$ref"].endswith("/EndpointWithSecret")


def test_delivery_list_documents_filters_and_cursor_pages(document):
    operation = document["paths"]["/webhooks/deliveries"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert {"endpointId", "event", "status", "cursor", "limit"} <= names
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(page["properties"]) == {"data", "next", "previous"}
    row = page["properties"]["data"]["items"]["$ref"].rsplit("/", 1)[1]
    status = document["components"]["schemas"][row]["properties"]["status"]
    assert "#/components/schemas/WebhookDeliveryStatus" in str(status)
    enum = document["components"]["schemas"]["WebhookDeliveryStatus"]["enum"]
    assert enum == ["pending", "delivering", "delivered", "failed"]


def test_catalog_events_are_components(document):
    schemas = document["components"]["schemas"]
    shipment = schemas["WebhookEvent.shipment.sent"]
    assert shipment["x-webhook-event"] == "shipment.sent"
    assert shipment["description"] == "A shipment left the warehouse."
    assert shipment["properties"]["weight_grams"] == {"type": "integer", "minimum": 1}
    assert set(shipment["required"]) == {"tracking", "weight_grams"}
    assert schemas["WebhookEvent.user.deleted"]["required"] == ["id"]
    # A nested serializer is a component of the document too, so its $ref resolves.
    ref = schemas["WebhookEvent.parcel.routed"]["properties"]["to"]["$ref"]
    assert schemas[ref.rsplit("/", 1)[1]]["properties"]["city"] == {"type": "string"}
    listed = document["paths"]["/webhooks/events"]["get"]["x-webhook-events"]
    by_name = {item["name"]: item["payload"]["$ref"] for item in listed}
    assert by_name["shipment.sent"] == "#/components/schemas/WebhookEvent.shipment.sent"
    assert "webhook.test" in by_name


def test_endpoint_list_documents_the_same_cursor_pages(document):
    endpoints = document["paths"]["/webhooks/endpoints"]["get"]
    deliveries = document["paths"]["/webhooks/deliveries"]["get"]

    def page_parameters(operation):
        return [p for p in operation["parameters"] if p["name"] in ("cursor", "limit")]

    assert page_parameters(endpoints) == page_parameters(deliveries) != []
    schemas = document["components"]["schemas"]

    def page(operation):
        ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        return schemas[ref.rsplit("/", 1)[1]]

    assert page(endpoints)["properties"]["data"]["items"]["$ref"].endswith("/Endpoint")
    for name in ("next", "previous"):
        assert page(endpoints)["properties"][name] == page(deliveries)["properties"][name]
    assert page(endpoints)["required"] == page(deliveries)["required"]


def test_model_columns_that_may_be_null_are_nullable_fields(document):
    """A serializer field whose column is NULL-able is declared nullable, whatever its name."""
    from better_webhooks.api import serializers as api_serializers

    schemas = document["components"]["schemas"]
    checked = 0
    for name, cls in vars(api_serializers).items():
        if not (isinstance(cls, type) and issubclass(cls, serializers.ModelSerializer)):
            continue
        component = schemas[name.removesuffix("Serializer")]
        model = cls.Meta.model
        for field_name, field in cls().fields.items():
            try:
                column = model._meta.get_field(field.source)
            except FieldDoesNotExist:
                continue  # a method's value, the serializer's own
            if column.concrete and column.null:
                declared = component["properties"][field_name]
                assert declared.get("nullable") is True, f"{name}.{field_name}"
                checked += 1
    assert checked >= 6


def test_every_operation_documents_its_errors_in_the_json_shape(document):
    error = document["components"]["schemas"]["WebhookError"]
    assert set(error["required"]) == {"error", "code"}
    assert set(error["properties"]) == {"error", "code", "details"}
    for path, item in document["paths"].items():
        if not path.startswith("/webhooks/"):
            continue
        for method, operation in item.items():
            responses = operation["responses"]
            expected = {"401", "403"} | ({"413"} if "requestBody" in operation else set())
            assert expected <= set(responses), (method, path)
            for status, response in responses.items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/WebhookError"}, status
