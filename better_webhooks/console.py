"""Console product ``webhooks``: the event catalog, endpoints and the delivery log.

Served at ``/.well-known/better/webhooks/`` by better_console, with these permissions:

- ``GET /events`` (read): the catalog, ``[{"name", "description", "schema"}]``.
- ``GET /endpoints`` (read): newest first, ``?status=active|disabled``; ``limit``, ``cursor``.
- ``GET /endpoints/:id`` (read).
- ``POST /endpoints`` (write): ``{"url", "events", "description"?, "metadata"?, "tenantId"?}``;
  201 with the endpoint and its signing ``secret``, shown this once (as the webhooks API does).
  The endpoint belongs to ``tenantId`` (body, else ``?tenantId=``), or to the platform without.
- ``PATCH /endpoints/:id`` (write): any of ``url``, ``events``, ``description``, ``metadata``,
  and ``status`` (``active`` enables it and resets its failure count, ``disabled`` stops it).
- ``DELETE /endpoints/:id`` (admin): the endpoint and its delivery log. 204.
- ``GET /deliveries`` (read): newest first; ``status``, ``endpointId``, ``eventType``; ``limit``,
  ``cursor``.
- ``GET /deliveries/:id`` (read): with its payload and every attempt (``attemptLog``).
- ``POST /deliveries/:id/retry`` (write): queues a delivered or failed delivery again with a fresh
  set of attempts (``replay.retry_delivery``); 202, or 409 ``DELIVERY_IN_PROGRESS``.

Lists are paged as the published audit log is (``{"entries", "hasNextPage", "nextCursor"?}``, see
``better_console.products``). Endpoints and deliveries have the webhooks API's JSON shape (its
serializers); signing secrets are never in a response, except the one a create returns.
``?tenantId=`` narrows every read to one tenant (the handler runs as it, so row-level security
applies).

It also registers the ``webhooks`` section of the console dashboard (``webhook_summary``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rest_framework.exceptions import ValidationError

from better_console.dashboard import (
    DashboardWindow,
    changelist_url,
    counts_by_status,
    register_section,
    status_rows,
)
from better_console.exceptions import ConsoleError
from better_console.products import (
    bad_request,
    console_scope,
    json_body,
    keyset_page,
    not_found,
    param,
    parse_choice,
    parse_uuid,
    path_id,
    tenant_param,
    uuid_param,
)
from better_console.registry import ConsoleRequest, ConsoleResponse, Endpoint, register_product
from better_webhooks import db
from better_webhooks.api.errors import exception_handler
from better_webhooks.api.schema import payload_json_schema
from better_webhooks.api.serializers import (
    DeliveryDetailSerializer,
    DeliverySerializer,
    EndpointSerializer,
    EndpointWithSecretSerializer,
    EndpointWriteSerializer,
)
from better_webhooks.exceptions import (
    ConfigurationError,
    EncryptionError,
    UnknownEventError,
    UnsafeURLError,
    WebhookError,
)
from better_webhooks.models import (
    DELIVERY_STATUSES,
    ENDPOINT_STATUSES,
    WebhookDelivery,
    WebhookEndpoint,
)

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite
    from django.http import HttpRequest

WRITE_FIELDS = ("url", "events", "description", "metadata")


def _scope(tenant_id: uuid.UUID | None) -> Any:
    return console_scope(tenant_id, using=db.alias())


def _valid(data: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """The endpoint fields checked by the webhooks API's serializer, its errors as 400s."""
    serializer = EndpointWriteSerializer(data=data, partial=partial)
    try:
        serializer.is_valid(raise_exception=True)
    except ValidationError as exc:
        response = exception_handler(exc, {})
        assert response is not None  # it answers every APIException, ValidationError included
        raise ConsoleError(
            response.data["error"],
            status=response.status_code,
            code=response.data["code"],
            **({"details": response.data["details"]} if "details" in response.data else {}),
        ) from exc
    return dict(serializer.validated_data)


def _engine_error(exc: WebhookError) -> ConsoleError:
    if isinstance(exc, UnknownEventError):
        return bad_request(str(exc), "UNKNOWN_EVENT")
    if isinstance(exc, UnsafeURLError):
        return bad_request(str(exc), "INVALID_URL")
    if isinstance(exc, (EncryptionError, ConfigurationError)):
        return ConsoleError(str(exc), status=503, code="WEBHOOKS_NOT_CONFIGURED")
    return bad_request(str(exc), "WEBHOOK_ERROR")


def _endpoint(endpoint_id: uuid.UUID, *, for_update: bool = False) -> WebhookEndpoint:
    queryset = WebhookEndpoint.objects.using(db.alias())
    if for_update:
        queryset = queryset.select_for_update()
    endpoint = queryset.filter(pk=endpoint_id).first()
    if endpoint is None:
        raise not_found("webhook endpoint", endpoint_id)
    return endpoint


def _delivery(delivery_id: uuid.UUID) -> WebhookDelivery:
    delivery = WebhookDelivery.objects.using(db.alias()).filter(pk=delivery_id).first()
    if delivery is None:
        raise not_found("webhook delivery", delivery_id)
    return delivery


def _tenant_exists(tenant_id: uuid.UUID) -> bool:
    if not db.tenancy():
        return True
    from better_tenant.models import Tenant

    # Only system mode reads every row of tenants.
    with db.system_scope():
        return Tenant.objects.using(db.alias()).filter(pk=tenant_id).exists()


# --- catalog -------------------------------------------------------------------------------------


def list_events(request: ConsoleRequest) -> ConsoleResponse:
    from better_webhooks.events import list_events as catalog

    data = [
        {
            "name": event.name,
            "description": event.description or "",
            "schema": payload_json_schema(event.schema),
        }
        for event in catalog()
    ]
    return ConsoleResponse(body=data)


# --- endpoints -----------------------------------------------------------------------------------


def list_endpoints(request: ConsoleRequest) -> ConsoleResponse:
    tenant_id = tenant_param(request)
    status = parse_choice(request, "status", ENDPOINT_STATUSES)
    with _scope(tenant_id):
        endpoints = WebhookEndpoint.objects.using(db.alias())
        if tenant_id is not None:
            endpoints = endpoints.filter(tenant_id=tenant_id)
        if status is not None:
            endpoints = endpoints.filter(status=status)
        # With many=True .data is a list (the stubs type it as a dict).
        page = keyset_page(
            endpoints, request, lambda rows: list(EndpointSerializer(rows, many=True).data)
        )
    return ConsoleResponse(body=page)


def get_endpoint(request: ConsoleRequest) -> ConsoleResponse:
    endpoint_id = path_id(request)
    with _scope(tenant_param(request)):
        return ConsoleResponse(body=EndpointSerializer(_endpoint(endpoint_id)).data)


def create_endpoint(request: ConsoleRequest) -> ConsoleResponse:
    from better_webhooks.endpoints import create_endpoint as create

    body = json_body(request, (*WRITE_FIELDS, "tenantId"))
    owner = body.get("tenantId")
    tenant_id = parse_uuid(owner, "tenantId") if owner is not None else tenant_param(request)
    data = _valid({key: value for key, value in body.items() if key != "tenantId"})
    if tenant_id is not None and not _tenant_exists(tenant_id):
        raise bad_request(
            f"No tenant has the id {tenant_id}; give the id of an existing tenant, or leave "
            "tenantId out for an endpoint of the platform.",
            "TENANT_NOT_FOUND",
        )
    try:
        with _scope(tenant_id):
            endpoint, secret = create(
                data["url"],
                data["events"],
                description=data["description"],
                metadata=data["metadata"],
                tenant=tenant_id,
            )
    except WebhookError as exc:
        raise _engine_error(exc) from exc
    body = EndpointWithSecretSerializer(endpoint, context={"secret": secret}).data
    return ConsoleResponse(status=201, body=body)


def update_endpoint(request: ConsoleRequest) -> ConsoleResponse:
    from better_webhooks.endpoints import disable_endpoint, enable_endpoint

    endpoint_id = path_id(request)
    body = json_body(request, (*WRITE_FIELDS, "status"))
    status = body.get("status")
    if status is not None and status not in ENDPOINT_STATUSES:
        raise bad_request(
            f"status must be one of {', '.join(ENDPOINT_STATUSES)}; got {status!r}.",
            "VALIDATION_ERROR",
        )
    data = _valid({key: value for key, value in body.items() if key != "status"}, partial=True)
    try:
        with _scope(tenant_param(request)):
            endpoint = _endpoint(endpoint_id, for_update=True)
            changed = [name for name in WRITE_FIELDS if name in data]
            for name in changed:
                setattr(endpoint, name, data[name])
            if changed:
                endpoint.save(using=db.alias(), update_fields=[*changed, "updated_at"])
            if status == "active" and endpoint.status != "active":
                enable_endpoint(endpoint)
            elif status == "disabled" and endpoint.status != "disabled":
                disable_endpoint(endpoint, reason="disabled through the console")
            result = EndpointSerializer(endpoint).data
    except WebhookError as exc:
        raise _engine_error(exc) from exc
    return ConsoleResponse(body=result)


def delete_endpoint(request: ConsoleRequest) -> ConsoleResponse:
    endpoint_id = path_id(request)
    with _scope(tenant_param(request)):
        _endpoint(endpoint_id).delete()
    return ConsoleResponse(status=204)


# --- deliveries ----------------------------------------------------------------------------------


def list_deliveries(request: ConsoleRequest) -> ConsoleResponse:
    tenant_id = tenant_param(request)
    status = parse_choice(request, "status", DELIVERY_STATUSES)
    endpoint_id = uuid_param(request, "endpointId")
    event = param(request, "eventType")
    with _scope(tenant_id):
        deliveries = WebhookDelivery.objects.using(db.alias())
        if tenant_id is not None:
            deliveries = deliveries.filter(tenant_id=tenant_id)
        if status is not None:
            deliveries = deliveries.filter(status=status)
        if endpoint_id is not None:
            deliveries = deliveries.filter(endpoint_id=endpoint_id)
        if event is not None:
            deliveries = deliveries.filter(event=event)
        # With many=True .data is a list (the stubs type it as a dict).
        page = keyset_page(
            deliveries, request, lambda rows: list(DeliverySerializer(rows, many=True).data)
        )
    return ConsoleResponse(body=page)


def get_delivery(request: ConsoleRequest) -> ConsoleResponse:
    delivery_id = path_id(request)
    with _scope(tenant_param(request)):
        return ConsoleResponse(body=DeliveryDetailSerializer(_delivery(delivery_id)).data)


def retry_delivery(request: ConsoleRequest) -> ConsoleResponse:
    from better_webhooks.replay import retry_delivery as retry

    delivery_id = path_id(request)
    with _scope(tenant_param(request)):
        delivery = _delivery(delivery_id)
        if delivery.status in ("pending", "delivering"):
            raise ConsoleError(
                f"The delivery is {delivery.status}: it is queued already. Retry a delivered or "
                "failed delivery.",
                status=409,
                code="DELIVERY_IN_PROGRESS",
            )
        result = DeliverySerializer(retry(delivery)).data
    return ConsoleResponse(status=202, body=result)


ENDPOINTS = (
    Endpoint("GET", "/events", list_events, "read"),
    Endpoint("GET", "/endpoints", list_endpoints, "read"),
    Endpoint("GET", "/endpoints/:id", get_endpoint, "read"),
    Endpoint("POST", "/endpoints", create_endpoint, "write"),
    Endpoint("PATCH", "/endpoints/:id", update_endpoint, "write"),
    Endpoint("DELETE", "/endpoints/:id", delete_endpoint, "admin"),
    Endpoint("GET", "/deliveries", list_deliveries, "read"),
    Endpoint("GET", "/deliveries/:id", get_delivery, "read"),
    Endpoint("POST", "/deliveries/:id/retry", retry_delivery, "write"),
)


# --- the console dashboard's section ------------------------------------------------------------


def webhook_summary(since: datetime, using: str | None = None) -> dict[str, Any]:
    """Deliveries created since ``since`` by status, the success rate, and endpoints by status.

    ``{"statuses": {status: n}, "total", "finished", "success_rate", "endpoints": {status: n}}``:
    ``finished`` counts delivered and failed deliveries (pending and in-flight ones have no
    outcome yet) and ``success_rate`` is delivered / finished, a float from 0 to 1, or None when
    nothing finished.
    """
    deliveries = WebhookDelivery.objects.using(using) if using else WebhookDelivery.objects.all()
    endpoints = WebhookEndpoint.objects.using(using) if using else WebhookEndpoint.objects.all()
    statuses = dict.fromkeys(DELIVERY_STATUSES, 0)
    statuses.update(counts_by_status(deliveries.filter(created_at__gte=since)))
    endpoint_counts = dict.fromkeys(ENDPOINT_STATUSES, 0)
    endpoint_counts.update(counts_by_status(endpoints))
    finished = statuses["delivered"] + statuses["failed"]
    return {
        "statuses": statuses,
        "total": sum(statuses.values()),
        "finished": finished,
        "success_rate": statuses["delivered"] / finished if finished else None,
        "endpoints": endpoint_counts,
    }


def dashboard_figures(window: DashboardWindow) -> dict[str, Any]:
    return webhook_summary(window.since, window.using)


def dashboard_context(
    site: AdminSite, request: HttpRequest, figures: Mapping[str, Any]
) -> dict[str, Any]:
    """The figures with the rate as a percentage and a changelist link per status."""
    deliveries = "better_webhooks.WebhookDelivery"
    endpoints = "better_webhooks.WebhookEndpoint"
    rate = figures["success_rate"]
    return {
        **figures,
        "delivered": figures["statuses"]["delivered"],
        "success_rate_display": None if rate is None else f"{rate:.1%}",
        "url": changelist_url(site, request, deliveries),
        "rows": status_rows(site, request, deliveries, figures["statuses"]),
        "endpoints_url": changelist_url(site, request, endpoints),
        "endpoint_rows": status_rows(site, request, endpoints, figures["endpoints"]),
    }


def register() -> None:
    """Register (or re-register) the ``webhooks`` product and its dashboard section."""
    register_product("webhooks", "Webhooks", ENDPOINTS, replace=True)
    register_section(
        "webhooks",
        order=30,
        figures=dashboard_figures,
        template="admin/better_webhooks/dashboard_section.html",
        admin_context=dashboard_context,
        replace=True,
    )
