"""Views of the portal: a tenant's endpoints, the event catalog and the delivery log, as HTML.

Every view first decides whose portal the request may use (``access.portal_tenant``), then runs
its handler, and renders its page, inside ``narrowed_scope`` of that tenant: row-level security,
not these views, decides which rows exist, so another tenant's id is a 404 like an unknown one.
The scope narrows to the tenant even inside system mode, which a staff member's middleware may
open. The changes are made by the functions the API calls (``create_endpoint``,
``rotate_secret``, ``send_test_event``, ``retry_delivery``...); their errors become form errors.
Every change is a POST with a CSRF token; the pages are never cached.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any, TypeVar

from django.contrib import messages
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
)
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_protect

from better_tenant import shortcuts
from better_webhooks import db
from better_webhooks.exceptions import (
    ConfigurationError,
    EncryptionError,
    PayloadTooLargeError,
    PayloadValidationError,
    TenancyNotInstalledError,
    UnknownEventError,
    UnsafeURLError,
)
from better_webhooks.models import WebhookDelivery, WebhookEndpoint
from better_webhooks.portal import access
from better_webhooks.portal.forms import (
    DeliveryFilterForm,
    EndpointForm,
    RotateSecretForm,
    TestEventForm,
)

logger = logging.getLogger(__name__)

NAMESPACE = "better_webhooks_portal"
TEMPLATES = "better_webhooks/portal/"
#: Deliveries the endpoint page lists; the delivery log has the rest.
RECENT_DELIVERIES = 10

NOT_INSTALLED = (
    "The webhooks portal needs better_tenant: it shows one tenant's endpoints, and without "
    "tenancy there is none to show. The application's operators can add better_tenant to "
    "INSTALLED_APPS or remove the portal (system check better_webhooks.E009)."
)
NO_SESSION = (
    "This site cannot keep a portal link in a session (SessionMiddleware is not installed), so "
    "links cannot open the portal. Tell the application's operators (system check "
    "better_webhooks.W004)."
)
NOT_CONFIGURED = (
    "Signing secrets cannot be encrypted or read on this server at the moment: its webhook "
    "encryption keys are not configured. Tell the application's operators; nothing was changed."
)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, cls=DjangoJSONEncoder)


Response = TypeVar("Response", bound=HttpResponseBase)


def _private(response: Response) -> Response:
    # Pages show a tenant's endpoints, payloads and, after a POST, its signing secrets.
    patch_cache_control(response, private=True, no_store=True)
    response.setdefault("Referrer-Policy", "same-origin")
    return response


def portal_reverse(request: HttpRequest, name: str, *args: Any) -> str:
    """A URL of the portal instance that served ``request``."""
    match = request.resolver_match
    return reverse(
        f"{NAMESPACE}:{name}", args=args, current_app=match.namespace if match else NAMESPACE
    )


def refusal(request: HttpRequest, message: str, *, status: int = 403, title: str = "") -> Any:
    """The page of a request the portal does not serve: what is wrong and what to do."""
    context = {"title": title or "No access to the webhooks portal", "message": message}
    return _private(render(request, TEMPLATES + "refused.html", context, status=status))


def _notify(request: HttpRequest, level: int, text: str) -> None:
    # Without the messages middleware the notice is lost, not the request.
    messages.add_message(request, level, text, fail_silently=True)


def _engine_error(form: Any, exc: Exception, field: str | None = None) -> None:
    """An error of the engine as a form error (the API answers these with a 4xx)."""
    if isinstance(exc, UnsafeURLError):
        form.add_error("url" if "url" in form.fields else field, str(exc))
    elif isinstance(exc, UnknownEventError):
        form.add_error("events" if "events" in form.fields else field, str(exc))
    elif isinstance(exc, PayloadValidationError):
        for path, message in exc.errors.items():
            form.add_error(field, f"{path}: {message}")
    elif isinstance(exc, PayloadTooLargeError):
        form.add_error(
            field,
            f"The payload is {exc.size:,} bytes as JSON, over the limit of {exc.limit:,}: send "
            "a smaller one.",
        )
    else:
        # The encryption keys: the operators' business, so the tenant gets no setting names.
        logger.error("The webhooks portal cannot use the encryption keys: %s", exc)
        form.add_error(None, NOT_CONFIGURED)


ENGINE_ERRORS = (
    UnsafeURLError,
    UnknownEventError,
    PayloadValidationError,
    PayloadTooLargeError,
    EncryptionError,
    ConfigurationError,
    TenancyNotInstalledError,
)


def _page(request: HttpRequest, queryset: QuerySet[Any]) -> tuple[list[Any], str, str]:
    """A page of ``queryset``, newest first, and the links to the next and previous pages.

    The API's cursor pagination: no COUNT, stable pages while rows are added.
    """
    from rest_framework.exceptions import APIException
    from rest_framework.request import Request

    from better_webhooks.api.pagination import NewestFirstCursorPagination

    paginator = NewestFirstCursorPagination()
    try:
        rows = paginator.paginate_queryset(queryset, Request(request)) or []
    except APIException as exc:
        raise Http404("This page of the list does not exist (the link was changed).") from exc
    return list(rows), paginator.get_next_link() or "", paginator.get_previous_link() or ""


@method_decorator(csrf_protect, name="dispatch")
class PortalView(View):
    """Base of the portal's pages: access checked on every request, handled in the scope."""

    tenant_id: uuid.UUID
    tenant: Any
    #: The navigation entry the page belongs to.
    section = "endpoints"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if not shortcuts.tenancy_installed():
            return refusal(request, NOT_INSTALLED, status=503, title="The portal is not set up")
        tenant_id, why = access.portal_tenant(request)
        if tenant_id is None:
            return refusal(request, why)
        self.tenant_id = tenant_id
        with shortcuts.narrowed_scope(tenant_id, using=db.alias()):
            self.tenant = shortcuts.current_tenant()
            if self.tenant is None:
                access.revoke(request)
                return refusal(request, "This tenant no longer exists.")
            # render() renders at once: the pages' querysets are read inside the scope.
            response = super().dispatch(request, *args, **kwargs)
        return _private(response)

    # --- helpers of the subclasses -------------------------------------------------------------

    def url(self, name: str, *args: Any) -> str:
        return portal_reverse(self.request, name, *args)

    def redirect(self, name: str, *args: Any) -> HttpResponseRedirect:
        return HttpResponseRedirect(self.url(name, *args))

    def page(self, template: str, status: int = 200, **context: Any) -> HttpResponse:
        context.setdefault("title", "Webhooks")
        context.update(
            tenant=self.tenant,
            section=self.section,
            messages=messages.get_messages(self.request),
            via_link=access.granted_tenant(self.request) == self.tenant_id,
        )
        return render(self.request, TEMPLATES + template, context, status=status)

    def endpoint(self, pk: uuid.UUID, *, for_update: bool = False) -> WebhookEndpoint:
        queryset = WebhookEndpoint.objects.using(db.alias())
        if for_update:
            queryset = queryset.select_for_update()
        endpoint = queryset.filter(pk=pk).first()
        if endpoint is None:
            raise Http404("No endpoint has this id.")
        return endpoint

    def delivery(self, pk: uuid.UUID) -> WebhookDelivery:
        queryset = WebhookDelivery.objects.using(db.alias()).select_related("endpoint")
        delivery = queryset.filter(pk=pk).first()
        if delivery is None:
            raise Http404("No delivery has this id.")
        return delivery


# --- entering and leaving ----------------------------------------------------------------------


class EnterView(View):
    """A signed link: grant its tenant's portal to this browser session, then show it."""

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        if not shortcuts.tenancy_installed():
            return refusal(request, NOT_INSTALLED, status=503, title="The portal is not set up")
        title = "This link does not open the portal"
        try:
            tenant_id = access.read_link(token)
        except access.LinkError as exc:
            return refusal(request, str(exc), title=title)
        in_scope = shortcuts.current_tenant_id()
        if in_scope is not None and in_scope != tenant_id:
            return refusal(
                request,
                "This link opens the portal of another tenant than the one at this address. "
                "Open the portal again from the application.",
                title=title,
            )
        if getattr(request, "session", None) is None:
            return refusal(request, NO_SESSION, status=503, title="The portal is not set up")
        with shortcuts.narrowed_scope(tenant_id, using=db.alias()):
            exists = shortcuts.current_tenant() is not None
        if not exists:
            return refusal(request, "The tenant of this link no longer exists.", title=title)
        access.grant(request, tenant_id)
        response = HttpResponseRedirect(portal_reverse(request, "endpoints"))
        # The next page must not pass the link on in a Referer header.
        response["Referrer-Policy"] = "no-referrer"
        return _private(response)


class ExitView(PortalView):
    def post(self, request: HttpRequest) -> HttpResponse:
        access.revoke(request)
        return _private(
            render(
                request,
                TEMPLATES + "refused.html",
                {
                    "title": "You left the webhooks portal",
                    "message": "Open it again from the application when you need it.",
                },
            )
        )


class IndexView(PortalView):
    def get(self, request: HttpRequest) -> HttpResponse:
        return self.redirect("endpoints")


# --- endpoints ---------------------------------------------------------------------------------


class EndpointListView(PortalView):
    def get(self, request: HttpRequest) -> HttpResponse:
        rows, next_url, previous_url = _page(request, WebhookEndpoint.objects.using(db.alias()))
        return self.page(
            "endpoint_list.html",
            title="Endpoints",
            endpoints=rows,
            next_url=next_url,
            previous_url=previous_url,
        )


class EndpointCreateView(PortalView):
    def get(self, request: HttpRequest) -> HttpResponse:
        return self.form_page(EndpointForm())

    def post(self, request: HttpRequest) -> HttpResponse:
        from better_webhooks.endpoints import create_endpoint

        form = EndpointForm(request.POST)
        if not form.is_valid():
            return self.form_page(form)
        data = form.cleaned_data
        try:
            with transaction.atomic(using=db.alias()):
                endpoint, _secret = create_endpoint(
                    data["url"], data["events"], description=data["description"]
                )
        except ENGINE_ERRORS as exc:
            _engine_error(form, exc)
            return self.form_page(form)
        _notify(
            request,
            messages.SUCCESS,
            "Endpoint created. Reveal its signing secret below to verify the webhooks it receives.",
        )
        return self.redirect("endpoint", endpoint.pk)

    def form_page(self, form: EndpointForm) -> HttpResponse:
        return self.page("endpoint_form.html", title="New endpoint", form=form, endpoint=None)


class EndpointEditView(PortalView):
    def get(self, request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
        endpoint = self.endpoint(pk)
        initial = {
            "url": endpoint.url,
            "events": endpoint.events,
            "description": endpoint.description,
        }
        form = EndpointForm(initial=initial, current_events=endpoint.events)
        return self.form_page(form, endpoint)

    def post(self, request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
        endpoint = self.endpoint(pk, for_update=True)
        form = EndpointForm(request.POST, current_events=endpoint.events)
        if not form.is_valid():
            return self.form_page(form, endpoint)
        # As the API's update: the validated fields, saved as they are.
        changed = [
            name
            for name in ("url", "events", "description")
            if getattr(endpoint, name) != form.cleaned_data[name]
        ]
        for name in changed:
            setattr(endpoint, name, form.cleaned_data[name])
        if changed:
            endpoint.save(using=db.alias(), update_fields=[*changed, "updated_at"])
        _notify(request, messages.SUCCESS, "Endpoint saved.")
        return self.redirect("endpoint", endpoint.pk)

    def form_page(self, form: EndpointForm, endpoint: WebhookEndpoint) -> HttpResponse:
        return self.page("endpoint_form.html", title="Edit endpoint", form=form, endpoint=endpoint)


class EndpointPage(PortalView):
    """Views answering with the endpoint's page (its secrets, or a form's errors, shown)."""

    def detail(
        self,
        endpoint: WebhookEndpoint,
        *,
        secrets: list[str] | None = None,
        test_form: TestEventForm | None = None,
        secret_error: str = "",
    ) -> HttpResponse:
        recent = list(
            WebhookDelivery.objects.using(db.alias())
            .filter(endpoint=endpoint)
            .order_by("-created_at", "-id")[:RECENT_DELIVERIES]
        )
        return self.page(
            "endpoint_detail.html",
            title=endpoint.description or endpoint.url,
            endpoint=endpoint,
            deliveries=recent,
            secrets=secrets,
            secret_error=secret_error,
            test_form=test_form or TestEventForm(),
            rotate_form=RotateSecretForm(),
        )


class EndpointDetailView(EndpointPage):
    def get(self, request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
        return self.detail(self.endpoint(pk))


class RevealSecretView(EndpointPage):
    """The endpoint's page with its signing secrets shown: only ever in answer to a POST."""

    def get(self, request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
        return self.redirect("endpoint", pk)

    def post(self, request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
        from better_webhooks.crypto import endpoint_secrets

        endpoint = self.endpoint(pk)
        try:
            secrets = endpoint_secrets(endpoint)
        except (EncryptionError, ConfigurationError) as exc:
            logger.error("The webhooks portal cannot decrypt a secret of %s: %s", endpoint.pk, exc)
            return self.detail(endpoint, secret_error=NOT_CONFIGURED)
        return self.detail(endpoint, secrets=secrets)


class RotateSecretView(EndpointPage):
    def post(self, request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
        from better_webhooks.endpoints import rotate_secret

        endpoint = self.endpoint(pk, for_update=True)
        form = RotateSecretForm(request.POST)
        expire_now = form.is_valid() and form.cleaned_data["expire_now"]
        try:
            with transaction.atomic(using=db.alias()):
                rotate_secret(endpoint, **({"overlap": 0} if expire_now else {}))
        except (EncryptionError, ConfigurationError) as exc:
            logger.error("The webhooks portal cannot encrypt a secret of %s: %s", endpoint.pk, exc)
            return self.detail(self.endpoint(pk), secret_error=NOT_CONFIGURED)
        previous = [
            item.get("expires_at")
            for item in endpoint.secrets[1:2]
            if isinstance(item, dict) and item.get("expires_at")
        ]
        text = "Signing secret rotated. Reveal it below and give it to your receiver."
        if previous:
            text += f" The previous secret stays valid until {previous[0]}."
        _notify(request, messages.SUCCESS, text)
        return self.redirect("endpoint", endpoint.pk)


class EndpointStatusView(PortalView):
    """``enable`` or ``disable`` (from the URL)."""

    action = "enable"

    def post(self, request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
        from better_webhooks.endpoints import disable_endpoint, enable_endpoint

        endpoint = self.endpoint(pk, for_update=True)
        if self.action == "enable":
            enable_endpoint(endpoint)
            _notify(request, messages.SUCCESS, "Endpoint enabled: it receives events again.")
        else:
            if endpoint.status != "disabled":
                disable_endpoint(endpoint, reason="disabled in the webhooks portal")
            _notify(request, messages.SUCCESS, "Endpoint disabled: it receives no events.")
        return self.redirect("endpoint", endpoint.pk)


class TestEventView(EndpointPage):
    def post(self, request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
        from rest_framework.exceptions import APIException

        from better_webhooks.api.views import send_test_event

        endpoint = self.endpoint(pk)
        form = TestEventForm(request.POST)
        if not form.is_valid():
            return self.detail(endpoint, test_form=form)
        if not endpoint.is_active:
            form.add_error(None, "The endpoint is disabled; enable it before sending it events.")
            return self.detail(endpoint, test_form=form)
        payload = form.cleaned_data["payload"] or {
            "message": "This is a test event.",
            "endpointId": str(endpoint.pk),
            "sentAt": timezone.now().isoformat(),
        }
        try:
            with transaction.atomic(using=db.alias()):
                delivery = send_test_event(endpoint, payload)
        except ENGINE_ERRORS as exc:
            _engine_error(form, exc, "payload")
            return self.detail(endpoint, test_form=form)
        except APIException as exc:  # disabled meanwhile
            form.add_error(None, str(exc.detail))
            return self.detail(endpoint, test_form=form)
        _notify(
            request,
            messages.SUCCESS,
            "Test event queued. Its attempts appear below once it has been sent.",
        )
        return self.redirect("delivery", delivery.pk)


class EndpointDeleteView(PortalView):
    def get(self, request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
        endpoint = self.endpoint(pk)
        return self.page("endpoint_delete.html", title="Delete endpoint", endpoint=endpoint)

    def post(self, request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
        endpoint = self.endpoint(pk)
        url = endpoint.url
        endpoint.delete(using=db.alias())
        _notify(request, messages.SUCCESS, f"Endpoint {url} and its delivery log deleted.")
        return self.redirect("endpoints")


# --- event catalog -----------------------------------------------------------------------------


class EventListView(PortalView):
    section = "events"

    def get(self, request: HttpRequest) -> HttpResponse:
        from better_webhooks.api.schema import payload_json_schema
        from better_webhooks.events import list_events
        from better_webhooks.portal.examples import example_payload

        events = []
        for event in list_events():
            schema = payload_json_schema(event.schema)
            events.append(
                {
                    "name": event.name,
                    "description": event.description,
                    "schema": _json(schema),
                    "example": _json(example_payload(schema)),
                }
            )
        return self.page("event_list.html", title="Event catalog", events=events)


# --- deliveries --------------------------------------------------------------------------------


class DeliveryListView(PortalView):
    section = "deliveries"

    def get(self, request: HttpRequest) -> HttpResponse:
        endpoints = list(WebhookEndpoint.objects.using(db.alias()).only("id", "url"))
        form = DeliveryFilterForm(request.GET, endpoints=endpoints)
        # The rows show no payload: leave the messages' payloads (up to MAX_PAYLOAD_BYTES each)
        # in the database.
        queryset = (
            WebhookDelivery.objects.using(db.alias())
            .select_related("endpoint")
            .defer("message__payload")
        )
        if form.is_valid():
            if form.cleaned_data["endpoint"]:
                queryset = queryset.filter(endpoint_id=form.cleaned_data["endpoint"])
            if form.cleaned_data["status"]:
                queryset = queryset.filter(status=form.cleaned_data["status"])
        else:
            queryset = queryset.none()
        rows, next_url, previous_url = _page(request, queryset)
        return self.page(
            "delivery_list.html",
            title="Delivery log",
            form=form,
            deliveries=rows,
            next_url=next_url,
            previous_url=previous_url,
        )


class DeliveryDetailView(PortalView):
    section = "deliveries"

    def get(self, request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
        delivery = self.delivery(pk)
        attempts = [
            {
                "attempt": attempt,
                "request_headers": _json(attempt.request_headers),
                "response_headers": _json(attempt.response_headers),
            }
            for attempt in delivery.attempt_log.using(db.alias()).order_by("attempt")
        ]
        return self.page(
            "delivery_detail.html",
            title=f"Delivery of {delivery.event}",
            delivery=delivery,
            payload=_json(delivery.payload),
            attempts=attempts,
            replayable=delivery.status not in ("pending", "delivering"),
        )


class ReplayView(PortalView):
    def post(self, request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
        from better_webhooks.replay import retry_delivery

        delivery = self.delivery(pk)
        if delivery.status in ("pending", "delivering"):
            _notify(
                request,
                messages.ERROR,
                f"The delivery is {delivery.status}: it is queued already. Replay it once it "
                "has been delivered or has failed.",
            )
        else:
            retry_delivery(delivery)
            _notify(request, messages.SUCCESS, "Delivery queued again.")
        return self.redirect("delivery", delivery.pk)
