"""The event catalog: the events an application sends, each with a description and a schema.

Register events in code (``register_event`` or the ``@event`` class decorator on a DRF
serializer) or in ``BETTER_WEBHOOKS["EVENTS"]``. A schema is a JSON Schema dict (validated by
``better_webhooks.schema``), a DRF ``Serializer`` class, a dotted path to one, or None (any
JSON object).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from better_core.settings import perform_import
from better_webhooks import schema as json_schema
from better_webhooks.exceptions import (
    ConfigurationError,
    PayloadValidationError,
    UnknownEventError,
)

_NAME = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")


@dataclass(frozen=True)
class EventType:
    """One event of the catalog."""

    name: str
    description: str = ""
    schema: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def json_schema(self) -> dict[str, Any] | None:
        """The schema as JSON Schema when it is one (serializers have none to show)."""
        return self.schema if isinstance(self.schema, dict) else None

    def validate(self, payload: Any) -> Any:
        """The payload if it matches the schema, else PayloadValidationError naming the fields."""
        if self.schema is None:
            if not isinstance(payload, dict):
                raise PayloadValidationError(self.name, {"(root)": "must be a JSON object"})
            return payload
        if isinstance(self.schema, dict):
            errors = json_schema.validate(payload, self.schema)
            if errors:
                raise PayloadValidationError(self.name, errors)
            return payload
        serializer = self.schema(data=payload)
        if not serializer.is_valid():
            raise PayloadValidationError(self.name, _flatten(serializer.errors))
        return payload


def _flatten(errors: Any, path: str = "") -> dict[str, str]:
    if isinstance(errors, dict):
        flat: dict[str, str] = {}
        for key, value in errors.items():
            name = "(root)" if key == "non_field_errors" and not path else key
            flat.update(_flatten(value, f"{path}.{name}" if path else str(name)))
        return flat
    if isinstance(errors, list) and errors and all(isinstance(e, dict | list) for e in errors):
        flat = {}
        for index, value in enumerate(errors):
            if value:
                flat.update(_flatten(value, f"{path}.{index}" if path else str(index)))
        return flat
    messages = errors if isinstance(errors, list) else [errors]
    return {path or "(root)": " ".join(str(message) for message in messages)}


_registry: dict[str, EventType] = {}
_lock = threading.Lock()
_settings_loaded: list[Any] = []


def _check_schema(name: str, schema: Any) -> Any:
    if isinstance(schema, str):
        schema = perform_import(schema, f"schema of event {name!r}")
    if schema is None:
        return None
    if isinstance(schema, dict):
        try:
            json_schema.check_schema(schema)
        except ValueError as exc:
            raise ConfigurationError(f"Event {name!r} has an invalid JSON Schema: {exc}") from exc
        return schema
    if isinstance(schema, type) and hasattr(schema, "is_valid"):
        return schema
    raise ConfigurationError(
        f"The schema of event {name!r} must be a JSON Schema dict, a DRF Serializer class or a "
        f"dotted path to one; got {type(schema).__name__}."
    )


def register_event(
    name: str, description: str = "", schema: Any = None, **metadata: Any
) -> EventType:
    """Add (or replace) an event in the catalog and return it."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"{name!r} is not a valid event name: use dot-separated words such as "
            "'invoice.paid' (letters, digits, '_' and '-')."
        )
    event_type = EventType(name, description, _check_schema(name, schema), metadata)
    with _lock:
        _registry[name] = event_type
    return event_type


def event(name: str, description: str = "") -> Callable[[type], type]:
    """Class decorator registering a DRF serializer as the schema of ``name``."""

    def decorate(serializer: type) -> type:
        register_event(name, description or (serializer.__doc__ or "").strip(), serializer)
        return serializer

    return decorate


def unregister_event(name: str) -> None:
    """Remove an event from the catalog (mostly for tests)."""
    with _lock:
        _registry.pop(name, None)


def load_settings_events() -> None:
    """Register the events of ``BETTER_WEBHOOKS["EVENTS"]`` (again when the setting changed)."""
    from better_webhooks.conf import webhook_settings

    configured = webhook_settings.raw("EVENTS") or []
    if _settings_loaded and _settings_loaded[0] is configured:
        return
    for item in configured:
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigurationError(
                "Each BETTER_WEBHOOKS['EVENTS'] entry must be a dict with a 'name' (and "
                "optionally 'description' and 'schema')."
            )
        register_event(item["name"], item.get("description", ""), item.get("schema"))
    _settings_loaded[:] = [configured]


def get_event(name: str) -> EventType:
    """The catalog entry of ``name``, or UnknownEventError listing the known names."""
    load_settings_events()
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry)) or "none registered"
        raise UnknownEventError(
            f"Unknown webhook event {name!r} (known events: {known}). Register it with "
            "better_webhooks.events.register_event() or BETTER_WEBHOOKS['EVENTS']."
        ) from None


def list_events() -> list[EventType]:
    """Every event of the catalog, sorted by name."""
    load_settings_events()
    return sorted(_registry.values(), key=lambda item: item.name)


def is_known(name: str) -> bool:
    load_settings_events()
    return name in _registry
