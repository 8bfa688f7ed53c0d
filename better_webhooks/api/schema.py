"""Event payload schemas as JSON Schema, and the catalog's events as OpenAPI components.

An event's schema is a DRF serializer (class or instance) or a JSON Schema dict. Serializers are
mapped with drf-spectacular's own field mapping, so the catalog endpoint and the OpenAPI document
describe a payload the same way.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView

from better_webhooks.models import DELIVERY_STATUSES, ENDPOINT_STATUSES

_REF = "#/components/schemas/"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_COMPONENT_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class _MappingSchema:
    """The minimum of drf-spectacular's AutoSchema needed to map a serializer outside a view."""

    def __init__(self) -> None:
        from drf_spectacular.plumbing import ComponentRegistry

        self.auto = AutoSchema()
        self.auto.registry = ComponentRegistry()
        self.auto.method = "POST"
        self.auto.path = "/"
        view: GenericAPIView[Any] = GenericAPIView()
        # No request outside a view; drf-spectacular takes None as "none" (the stubs require one).
        view.request = None  # type: ignore[assignment]
        view.format_kwarg = None
        self.auto.view = view

    def map(self, serializer: serializers.BaseSerializer) -> tuple[dict[str, Any], dict[str, Any]]:
        """The schema of ``serializer`` and the components its nested serializers became."""
        schema = self.auto._map_serializer(serializer, direction="request")
        components = {
            component.name: component.schema
            for component in self.auto.registry._components.values()
            if component.schema is not None
        }
        return schema, components


def _instance(schema: Any) -> serializers.BaseSerializer | None:
    if isinstance(schema, type) and issubclass(schema, serializers.BaseSerializer):
        return schema()
    if isinstance(schema, serializers.BaseSerializer):
        return schema
    return None


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 spellings to JSON Schema: ``nullable`` to a null type, refs to ``$defs``."""
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    # x-spec-enum-id is drf-spectacular's bookkeeping for enum components, not JSON Schema.
    out = {key: _to_json_schema(value) for key, value in node.items() if key != "x-spec-enum-id"}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF):
        out["$ref"] = "#/$defs/" + ref[len(_REF) :]
    if out.pop("nullable", False):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            out["type"] = [*kind, "null"]
        elif "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


def payload_json_schema(schema: Any) -> dict[str, Any]:
    """JSON Schema (2020-12) of an event payload given as a serializer or a JSON Schema dict.

    None (an event declared without a schema) is any JSON object.
    """
    if schema is None:
        return {"type": "object"}
    if isinstance(schema, dict):
        return copy.deepcopy(schema)
    serializer = _instance(schema)
    if serializer is None:
        raise TypeError(
            f"An event schema must be a DRF serializer (class or instance) or a JSON Schema "
            f"dict; got {type(schema).__name__}."
        )
    mapped, components = _MappingSchema().map(serializer)
    result = {"$schema": JSON_SCHEMA_DIALECT, **_to_json_schema(mapped)}
    if components:
        result["$defs"] = {name: _to_json_schema(body) for name, body in components.items()}
    return result


def event_component_name(event: str) -> str:
    """The OpenAPI component of the payload of ``event`` (``WebhookEvent.invoice.paid``)."""
    return "WebhookEvent." + _COMPONENT_UNSAFE.sub("_", event)


def catalog_components(auto_schema: Any, events: list[Any]) -> dict[str, dict[str, Any]]:
    """OpenAPI components of the catalog's events, mapped through the generator's AutoSchema.

    Serializer schemas go through ``auto_schema`` (so their nested serializers become components
    of the document and ``$ref``s stay valid); dict schemas are used as they are.
    """
    components: dict[str, dict[str, Any]] = {}
    for event in events:
        serializer = _instance(event.schema)
        if serializer is not None:
            body = auto_schema._map_serializer(serializer, direction="request")
        else:
            body = payload_json_schema(event.schema)
            body.pop("$schema", None)
        body = dict(body)
        if event.description:
            body.setdefault("description", event.description)
        body["x-webhook-event"] = event.name
        components[event_component_name(event.name)] = body
    return components


#: Status enums as named components (a field named ``status`` with two different choice sets
#: would otherwise get hashed names from drf-spectacular's enum post-processing).
STATUS_COMPONENTS = {
    "WebhookEndpointStatus": ENDPOINT_STATUSES,
    "WebhookDeliveryStatus": DELIVERY_STATUSES,
}


def status_ref(component: str) -> dict[str, str]:
    return {"$ref": _REF + component}


#: Errors every operation can answer, whatever its view: authentication and permissions run
#: before any handler, and Django refuses an over-size body as soon as a handler reads it.
COMMON_ERRORS = {
    "401": "No credentials, or wrong ones (`UNAUTHORIZED`); `WWW-Authenticate` names a scheme.",
    "403": "Not allowed (`FORBIDDEN`), or no tenant in scope (`TENANT_REQUIRED`).",
}
BODY_ERRORS = {
    "413": "The body is over the server's DATA_UPLOAD_MAX_MEMORY_SIZE, or a payload to send is "
    "over BETTER_WEBHOOKS['MAX_PAYLOAD_BYTES'] (`PAYLOAD_TOO_LARGE`).",
}


class WebhooksAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, plus the status enum components the serializers refer to
    and the error responses every operation shares."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        from drf_spectacular.plumbing import ResolvedComponent

        from better_webhooks.api.serializers import WebhookErrorSerializer

        operation = super().get_operation(*args, **kwargs)
        for name, values in STATUS_COMPONENTS.items():
            self.registry.register_on_missing(
                ResolvedComponent(
                    name=name,
                    type=ResolvedComponent.SCHEMA,
                    object=name,
                    schema={"type": "string", "enum": list(values)},
                )
            )
        if operation is None:
            return None
        error = self.resolve_serializer(WebhookErrorSerializer, "response")
        shared = dict(COMMON_ERRORS)
        if "requestBody" in operation:
            shared.update(BODY_ERRORS)
        responses = operation.setdefault("responses", {})
        for code, description in shared.items():
            responses.setdefault(
                code,
                {
                    "description": description,
                    "content": {"application/json": {"schema": error.ref}},
                },
            )
        operation["responses"] = dict(sorted(responses.items()))
        return operation


class CatalogAutoSchema(WebhooksAutoSchema):
    """The event catalog view's schema: every event's payload also becomes a component.

    The components are named ``WebhookEvent.<event>`` and carry ``x-webhook-event``; the
    operation lists them in ``x-webhook-events`` so clients can generate payload types.
    """

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        from drf_spectacular.plumbing import ResolvedComponent

        from better_webhooks.events import list_events

        listed = []
        for event in list_events():
            name = event_component_name(event.name)
            body = catalog_components(self, [event])[name]
            self.registry.register_on_missing(
                ResolvedComponent(
                    name=name, type=ResolvedComponent.SCHEMA, object=name, schema=body
                )
            )
            listed.append({"name": event.name, "payload": {"$ref": _REF + name}})
        operation["x-webhook-events"] = listed
        return operation


def documented(base: type[AutoSchema] = WebhooksAutoSchema, **kwargs: Any) -> Any:
    """``extend_schema(**kwargs)`` for a view method whose view uses the schema class ``base``.

    drf-spectacular derives a method's schema from ``DEFAULT_SCHEMA_CLASS`` as it was when the
    module was imported; naming the base keeps the API's schema right whatever that setting was.
    """
    from drf_spectacular.utils import extend_schema

    def decorate(method: Any) -> Any:
        method.schema = base
        return extend_schema(**kwargs)(method)

    return decorate
