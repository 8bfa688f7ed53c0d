"""Views of the webhooks API: endpoints, the event catalog and the delivery log.

Every view runs its handler in one database scope: the request's tenant scope when
better_tenant's middleware opened one (row-level security then limits every query to that
tenant's rows), system mode for a superuser outside any tenant, and otherwise no tenant at all, so
the API refuses the request rather than show an empty list (``TENANT_REQUIRED``). A handler that
fails rolls its writes back.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from better_tenant import shortcuts
from better_webhooks import db
from better_webhooks.api.errors import ApiError, exception_handler, not_found
from better_webhooks.api.pagination import MAX_PAGE_SIZE, NewestFirstCursorPagination
from better_webhooks.api.permissions import api_permission_classes
from better_webhooks.api.schema import (
    CatalogAutoSchema,
    WebhooksAutoSchema,
    documented,
    payload_json_schema,
)
from better_webhooks.api.serializers import (
    DeliveryDetailSerializer,
    DeliveryFilterSerializer,
    DeliveryPageSerializer,
    DeliverySerializer,
    EndpointPageSerializer,
    EndpointSerializer,
    EndpointWithSecretSerializer,
    EndpointWriteSerializer,
    EventListSerializer,
    EventSerializer,
    RecoveredSerializer,
    RecoverSerializer,
    RotatedSecretSerializer,
    RotateSecretSerializer,
    TestEventSerializer,
    WebhookErrorSerializer,
)
from better_webhooks.exceptions import UnknownEventError
from better_webhooks.models import WebhookDelivery, WebhookEndpoint

#: The event the "send a test event" action emits (registered when the API's URLs load).
TEST_EVENT = "webhook.test"
TEST_EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "endpointId": {"type": "string"},
        "sentAt": {"type": "string"},
    },
}


def register_test_event() -> None:
    """Put ``webhook.test`` in the catalog unless the application declared its own."""
    from better_webhooks.events import is_known, register_event

    if not is_known(TEST_EVENT):
        register_event(
            TEST_EVENT,
            "A test event sent on request to one endpoint, to check that it receives and "
            "verifies webhooks.",
            TEST_EVENT_SCHEMA,
        )


#: Error responses an operation declares itself; every operation also answers 401 and 403, and
#: every one that reads a body 413 (WebhooksAutoSchema adds those).
_ERRORS = {
    400: OpenApiResponse(WebhookErrorSerializer, description="Invalid input."),
    404: OpenApiResponse(WebhookErrorSerializer, description="No such object (in this tenant)."),
    409: OpenApiResponse(
        WebhookErrorSerializer, description="The object is not in a state that allows this."
    ),
    503: OpenApiResponse(
        WebhookErrorSerializer,
        description="The encryption keys of webhook secrets are not configured.",
    ),
}

_PAGE_PARAMETERS = [
    OpenApiParameter(
        "limit",
        int,
        description=f"Page size, 1-{MAX_PAGE_SIZE} "
        f"(default {NewestFirstCursorPagination.page_size}).",
    ),
    OpenApiParameter("cursor", str, description="From the previous page's `next` or `previous`."),
]

#: The challenge of a 401 when no authentication class offers one (sessions alone).
SESSION_CHALLENGE = 'Session realm="api"'


@contextlib.contextmanager
def api_scope(request: Request) -> Iterator[None]:
    """The database scope of an API handler (see the module docstring)."""
    using = db.alias()
    if shortcuts.in_system_mode() or shortcuts.current_tenant_id() is not None:
        with transaction.atomic(using=using):
            yield
        return
    if getattr(request.user, "is_superuser", False):
        with shortcuts.system_scope(using=using):
            yield
        return
    raise ApiError(
        "No tenant is in scope for this request, and only superusers may manage webhooks outside "
        "a tenant. Send the request for a tenant (e.g. with the tenant header your "
        "TenantMiddleware reads).",
        "TENANT_REQUIRED",
        status.HTTP_403_FORBIDDEN,
    )


def _engine_errors(exc: Exception) -> ApiError | None:
    """The engine's own errors as API errors (bad input is a 4xx, never a 500)."""
    from better_webhooks.exceptions import (
        ConfigurationError,
        EncryptionError,
        PayloadTooLargeError,
        PayloadValidationError,
        UnknownEventError,
        UnsafeURLError,
    )

    if isinstance(exc, PayloadTooLargeError):
        error = ApiError(str(exc), "PAYLOAD_TOO_LARGE", status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        error.details = {"size": exc.size, "limit": exc.limit}
        return error
    if isinstance(exc, PayloadValidationError):
        error = ApiError(str(exc), "INVALID_PAYLOAD")
        error.details = exc.errors
        return error
    if isinstance(exc, UnknownEventError):
        return ApiError(str(exc), "UNKNOWN_EVENT")
    if isinstance(exc, UnsafeURLError):
        return ApiError(str(exc), "INVALID_URL")
    if isinstance(exc, (EncryptionError, ConfigurationError)):
        return ApiError(str(exc), "WEBHOOKS_NOT_CONFIGURED", status.HTTP_503_SERVICE_UNAVAILABLE)
    return None


class WebhooksAPIView(APIView):
    """Base of the API views: pluggable permissions, the JSON error shape, one scope per call."""

    # drf-spectacular describes these views whatever DEFAULT_SCHEMA_CLASS the project uses.
    schema = WebhooksAutoSchema()

    def get_permissions(self) -> list[Any]:
        return [permission() for permission in api_permission_classes()]

    def get_exception_handler(self) -> Any:
        return exception_handler

    def get_authenticate_header(self, request: Request) -> str:
        # DRF asks the first authentication class only, and SessionAuthentication (first by
        # default) has no challenge, which turns "no credentials" into a 403: a client that
        # only has to sign in would read "not allowed". Any class's challenge will do.
        for authenticator in self.get_authenticators():
            header = authenticator.authenticate_header(request)
            if header:
                return header
        return SESSION_CHALLENGE

    def handle_exception(self, exc: Exception) -> Response:
        return super().handle_exception(_engine_errors(exc) or exc)

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # APIView.dispatch, with the handler (and only the handler: authentication and
        # permissions decide the scope) inside api_scope.
        self.args, self.kwargs = args, kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            self.initial(request, *args, **kwargs)
            method = request.method.lower()
            handler = (
                getattr(self, method, self.http_method_not_allowed)
                if method in self.http_method_names
                else self.http_method_not_allowed
            )
            with api_scope(request):
                response = handler(request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise not_found(what, value) from exc


def _endpoint(pk: str, *, for_update: bool = False) -> WebhookEndpoint:
    queryset = WebhookEndpoint.objects.using(db.alias())
    if for_update:
        queryset = queryset.select_for_update()
    endpoint = queryset.filter(pk=_uuid(pk, "endpoint")).first()
    if endpoint is None:
        raise not_found("endpoint", pk)
    return endpoint


def _delivery(pk: str) -> WebhookDelivery:
    delivery = WebhookDelivery.objects.using(db.alias()).filter(pk=_uuid(pk, "delivery")).first()
    if delivery is None:
        raise not_found("delivery", pk)
    return delivery


def _valid(serializer_class: type, data: Any, **kwargs: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def send_test_event(endpoint: WebhookEndpoint, payload: dict[str, Any]) -> WebhookDelivery:
    """Queue ``webhook.test`` for this endpoint alone, whatever it subscribes to.

    ``send()`` checks the payload against the catalog's schema of the test event; the delivery
    goes out after the transaction commits, like any other.
    """
    from better_webhooks.sending import send

    register_test_event()
    deliveries = send(TEST_EVENT, payload, endpoints=[endpoint], tenant=endpoint.tenant_id)
    if not deliveries:
        raise ApiError(
            "The endpoint is disabled; enable it before sending it a test event.",
            "ENDPOINT_DISABLED",
            status.HTTP_409_CONFLICT,
        )
    return deliveries[0]


# --- endpoints ---------------------------------------------------------------------------------


class EndpointListView(WebhooksAPIView):
    pagination_class = NewestFirstCursorPagination

    @documented(
        operation_id="webhooks_endpoints_list",
        summary="The endpoints, newest first, a page at a time",
        parameters=_PAGE_PARAMETERS,
        responses={200: EndpointPageSerializer, 400: _ERRORS[400]},
    )
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        endpoints = WebhookEndpoint.objects.using(db.alias())
        page = paginator.paginate_queryset(endpoints, request, view=self)
        return paginator.get_paginated_response(EndpointSerializer(page, many=True).data)

    @documented(
        operation_id="webhooks_endpoints_create",
        summary="Create an endpoint (the response holds its signing secret, this once)",
        request=EndpointWriteSerializer,
        responses={201: EndpointWithSecretSerializer, 400: _ERRORS[400], 503: _ERRORS[503]},
    )
    def post(self, request: Request) -> Response:
        from better_webhooks.endpoints import create_endpoint

        data = _valid(EndpointWriteSerializer, request.data)
        endpoint, secret = create_endpoint(
            data["url"],
            data["events"],
            description=data["description"],
            metadata=data["metadata"],
        )
        body = EndpointWithSecretSerializer(endpoint, context={"secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED)


class EndpointDetailView(WebhooksAPIView):
    @documented(
        operation_id="webhooks_endpoints_retrieve",
        summary="An endpoint",
        responses={200: EndpointSerializer, 404: _ERRORS[404]},
    )
    def get(self, request: Request, pk: str) -> Response:
        return Response(EndpointSerializer(_endpoint(pk)).data)

    @documented(
        operation_id="webhooks_endpoints_update",
        summary="Change an endpoint's URL, events, description or metadata",
        request=EndpointWriteSerializer(partial=True),
        responses={200: EndpointSerializer, 400: _ERRORS[400], 404: _ERRORS[404]},
    )
    def patch(self, request: Request, pk: str) -> Response:
        endpoint = _endpoint(pk, for_update=True)
        data = _valid(EndpointWriteSerializer, request.data, partial=True)
        changed = [name for name in ("url", "events", "description", "metadata") if name in data]
        for name in changed:
            setattr(endpoint, name, data[name])
        if changed:
            endpoint.save(update_fields=[*changed, "updated_at"])
        return Response(EndpointSerializer(endpoint).data)

    @documented(
        operation_id="webhooks_endpoints_destroy",
        summary="Delete an endpoint and its delivery log",
        responses={204: None, 404: _ERRORS[404]},
    )
    def delete(self, request: Request, pk: str) -> Response:
        _endpoint(pk).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointStatusView(WebhooksAPIView):
    """``enable`` or ``disable`` (from the URL)."""

    action: str = "enable"

    @documented(
        request=None,
        responses={200: EndpointSerializer, 404: _ERRORS[404]},
    )
    def post(self, request: Request, pk: str) -> Response:
        from better_webhooks.endpoints import disable_endpoint, enable_endpoint

        endpoint = _endpoint(pk, for_update=True)
        if self.action == "enable":
            enable_endpoint(endpoint)
        elif endpoint.status != "disabled":
            disable_endpoint(endpoint, reason="disabled through the API")
        return Response(EndpointSerializer(endpoint).data)


class RotateSecretView(WebhooksAPIView):
    @documented(
        operation_id="webhooks_endpoints_rotate_secret",
        summary="Rotate the signing secret (the new secret is in the response, this once)",
        request=RotateSecretSerializer,
        responses={
            200: RotatedSecretSerializer,
            400: _ERRORS[400],
            404: _ERRORS[404],
            503: _ERRORS[503],
        },
    )
    def post(self, request: Request, pk: str) -> Response:
        from better_webhooks.endpoints import rotate_secret

        endpoint = _endpoint(pk, for_update=True)
        overlap = _valid(RotateSecretSerializer, request.data)["overlap"]
        kwargs = {} if overlap is None else {"overlap": overlap}
        secret = rotate_secret(endpoint, **kwargs)
        expires = [
            item.get("expires_at")
            for item in endpoint.secrets[1:2]
            if isinstance(item, dict) and item.get("expires_at")
        ]
        return Response(
            {
                "endpointId": str(endpoint.pk),
                "secret": secret,
                "previousSecretExpiresAt": expires[0] if expires else None,
            }
        )


class TestEventView(WebhooksAPIView):
    @documented(
        operation_id="webhooks_endpoints_test",
        summary=f"Send a `{TEST_EVENT}` event to this endpoint only",
        request=TestEventSerializer,
        responses={
            202: DeliverySerializer,
            400: _ERRORS[400],
            404: _ERRORS[404],
            409: _ERRORS[409],
        },
    )
    def post(self, request: Request, pk: str) -> Response:
        endpoint = _endpoint(pk)
        data = _valid(TestEventSerializer, request.data)
        payload = data.get("payload") or {
            "message": "This is a test event.",
            "endpointId": str(endpoint.pk),
            "sentAt": timezone.now().isoformat(),
        }
        if not endpoint.is_active:
            raise ApiError(
                "The endpoint is disabled; enable it before sending it a test event.",
                "ENDPOINT_DISABLED",
                status.HTTP_409_CONFLICT,
            )
        delivery = send_test_event(endpoint, payload)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


# --- event catalog -----------------------------------------------------------------------------


def _event_body(event: Any) -> dict[str, Any]:
    return {
        "name": event.name,
        "description": event.description or "",
        "schema": payload_json_schema(event.schema),
    }


class EventListView(WebhooksAPIView):
    schema = CatalogAutoSchema()

    @documented(
        CatalogAutoSchema,
        operation_id="webhooks_events_list",
        summary="The event catalog: names, descriptions and payload JSON Schemas",
        responses={200: EventListSerializer},
    )
    def get(self, request: Request) -> Response:
        from better_webhooks.events import list_events

        return Response({"data": [_event_body(event) for event in list_events()]})


class EventDetailView(WebhooksAPIView):
    @documented(
        operation_id="webhooks_events_retrieve",
        summary="One event of the catalog",
        responses={200: EventSerializer, 404: _ERRORS[404]},
    )
    def get(self, request: Request, name: str) -> Response:
        from better_webhooks.events import get_event

        try:
            event = get_event(name)
        except UnknownEventError as exc:
            raise ApiError(str(exc), "UNKNOWN_EVENT", status.HTTP_404_NOT_FOUND) from exc
        return Response(_event_body(event))


# --- deliveries --------------------------------------------------------------------------------


class DeliveryListView(WebhooksAPIView):
    pagination_class = NewestFirstCursorPagination

    @documented(
        operation_id="webhooks_deliveries_list",
        summary="The delivery log, newest first, filtered by endpoint, event and status",
        parameters=[
            OpenApiParameter("endpointId", str, description="An endpoint id (uuid)."),
            OpenApiParameter("event", str, description="An event name."),
            OpenApiParameter("status", str, enum=["pending", "delivering", "delivered", "failed"]),
            *_PAGE_PARAMETERS,
        ],
        responses={200: DeliveryPageSerializer, 400: _ERRORS[400]},
    )
    def get(self, request: Request) -> Response:
        filters = _valid(DeliveryFilterSerializer, request.query_params)
        queryset = WebhookDelivery.objects.using(db.alias())
        if "endpointId" in filters:
            queryset = queryset.filter(endpoint_id=filters["endpointId"])
        if "event" in filters:
            queryset = queryset.filter(event=filters["event"])
        if "status" in filters:
            queryset = queryset.filter(status=filters["status"])
        paginator = self.pagination_class()
        page: list[WebhookDelivery] | None = paginator.paginate_queryset(
            queryset, request, view=self
        )
        return paginator.get_paginated_response(DeliverySerializer(page, many=True).data)


class DeliveryDetailView(WebhooksAPIView):
    @documented(
        operation_id="webhooks_deliveries_retrieve",
        summary="A delivery with its payload and attempts",
        responses={200: DeliveryDetailSerializer, 404: _ERRORS[404]},
    )
    def get(self, request: Request, pk: str) -> Response:
        delivery = _delivery(pk)
        return Response(DeliveryDetailSerializer(delivery).data)


class DeliveryRetryView(WebhooksAPIView):
    @documented(
        operation_id="webhooks_deliveries_retry",
        summary="Queue a delivery again now (a failed one gets a fresh set of attempts)",
        request=None,
        responses={202: DeliverySerializer, 404: _ERRORS[404], 409: _ERRORS[409]},
    )
    def post(self, request: Request, pk: str) -> Response:
        from better_webhooks.replay import retry_delivery

        delivery = _delivery(pk)
        if delivery.status in ("pending", "delivering"):
            raise ApiError(
                f"The delivery is {delivery.status}: it is already queued. Retry a delivered or "
                "failed delivery.",
                "DELIVERY_IN_PROGRESS",
                status.HTTP_409_CONFLICT,
            )
        delivery = retry_delivery(delivery)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class DeliveryRecoverView(WebhooksAPIView):
    @documented(
        operation_id="webhooks_deliveries_recover",
        summary="Queue again every failed delivery created since a date",
        request=RecoverSerializer,
        responses={202: RecoveredSerializer, 400: _ERRORS[400]},
    )
    def post(self, request: Request) -> Response:
        from better_webhooks.replay import recover_failed

        data = _valid(RecoverSerializer, request.data)
        since: datetime = data["since"]
        if since > timezone.now():
            raise ApiError(
                "since is in the future; give the moment from which failed deliveries are "
                "queued again.",
                "VALIDATION_ERROR",
            )
        count = recover_failed(
            since=since, endpoint_id=data.get("endpointId"), event=data.get("event")
        )
        return Response({"recovered": count}, status=status.HTTP_202_ACCEPTED)


# --- anything else -----------------------------------------------------------------------------


class UnknownRouteView(APIView):
    """Every path under the API's base that no route matches: the API's JSON 404, whatever the
    method, instead of the project's HTML page."""

    schema = None  # not an operation of the API
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    def get_exception_handler(self) -> Any:
        return exception_handler

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Response:
        raise ApiError(
            f"No route of the webhooks API matches {request.method} {request.path}. The "
            "routes are endpoints, events and deliveries (see the OpenAPI document).",
            "NOT_FOUND",
            status.HTTP_404_NOT_FOUND,
        )

    # APIView answers OPTIONS itself; here it finds nothing either.
    options = http_method_not_allowed
