"""Forms of the portal, checked by the rules the API and the admin apply (SSRF guard, catalog)."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from better_webhooks.api.serializers import MAX_EVENTS, MAX_URL
from better_webhooks.models import ALL_EVENTS, DELIVERY_STATUSES


def event_choices(current: list[str] | tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """``*`` and the catalog's events; names ``current`` holds that left the catalog too, so an
    edit shows them (and validation then says they are unknown)."""
    from better_webhooks.events import list_events

    names = [event.name for event in list_events()]
    gone = [name for name in current if name != ALL_EVENTS and name not in names]
    return [
        (ALL_EVENTS, "All events, those added later included"),
        *((name, name) for name in names),
        *((name, f"{name} (no longer in the catalog)") for name in gone),
    ]


class EventsField(forms.MultipleChoiceField):
    """Checkboxes of the catalog; the names are checked by the catalog's rule (clean_events), so
    an unknown one gets the catalog's message rather than "not one of the available choices"."""

    def valid_value(self, value: Any) -> bool:
        return True


class EndpointForm(forms.Form):
    """URL, subscribed events and description of an endpoint (create and edit)."""

    url = forms.CharField(
        label="URL",
        max_length=MAX_URL,
        widget=forms.URLInput(attrs={"placeholder": "https://", "autocomplete": "off"}),
        help_text="Where the events are POSTed: https, to an address on the internet.",
    )
    events = EventsField(
        label="Events",
        widget=forms.CheckboxSelectMultiple,
        help_text="The events this endpoint receives.",
    )
    description = forms.CharField(
        label="Description",
        max_length=1000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args: Any, current_events: list[str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        events = self.fields["events"]
        assert isinstance(events, EventsField)
        events.choices = event_choices(current_events or [])

    def clean_url(self) -> str:
        from better_webhooks.exceptions import UnsafeURLError
        from better_webhooks.ssrf import validate_url

        url = self.cleaned_data["url"].strip()
        try:
            validate_url(url)
        except UnsafeURLError as exc:
            raise forms.ValidationError(str(exc), code="INVALID_URL") from exc
        return url

    def clean_events(self) -> list[str]:
        from better_webhooks.endpoints import validate_events
        from better_webhooks.exceptions import UnknownEventError

        names = self.cleaned_data["events"]
        if len(names) > MAX_EVENTS:
            raise forms.ValidationError(
                f"Choose at most {MAX_EVENTS} events, or all events.", code="TOO_MANY"
            )
        try:
            return validate_events(names)
        except UnknownEventError as exc:
            raise forms.ValidationError(str(exc), code="UNKNOWN_EVENT") from exc


class TestEventForm(forms.Form):
    """An optional payload for the test event (a small default one otherwise)."""

    payload = forms.CharField(
        label="Payload (JSON, optional)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text="Leave empty to send a short message with the endpoint's id.",
    )

    def clean_payload(self) -> dict[str, Any] | None:
        text = self.cleaned_data["payload"].strip()
        if not text:
            return None
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"This is not JSON: {exc}.", code="INVALID_JSON") from exc
        if not isinstance(value, dict):
            raise forms.ValidationError("Give a JSON object ({...}).", code="INVALID_JSON")
        return value


class RotateSecretForm(forms.Form):
    """Whether the previous secret keeps being accepted for the rotation overlap."""

    expire_now = forms.BooleanField(
        label="Stop signing with the previous secret now",
        required=False,
        help_text="Otherwise deliveries carry a signature of each secret until the overlap ends, "
        "so a receiver can switch without missing any.",
    )


class DeliveryFilterForm(forms.Form):
    """The delivery log's filters: one of the tenant's endpoints, one status."""

    endpoint = forms.ChoiceField(label="Endpoint", required=False)
    status = forms.ChoiceField(
        label="Status",
        required=False,
        choices=[("", "Any status"), *((status, status) for status in DELIVERY_STATUSES)],
    )

    def __init__(self, *args: Any, endpoints: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        endpoint = self.fields["endpoint"]
        assert isinstance(endpoint, forms.ChoiceField)
        endpoint.choices = [
            ("", "Any endpoint"),
            *((str(item.pk), item.url) for item in endpoints),
        ]
