"""A small JSON Schema validator for event payloads (the keywords event schemas use).

Supported: ``type`` (a name or a list), ``properties``, ``required``, ``additionalProperties``
(boolean or schema), ``items``, ``enum``, ``const``, ``minLength``/``maxLength``, ``pattern``,
``minimum``/``maximum``, ``minItems``/``maxItems``, ``nullable``-style ``["string", "null"]``.
Other keywords are ignored. Errors map a dotted path (``customer.email``, ``items.0``) to a
message.
"""

from __future__ import annotations

import re
from typing import Any

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
KNOWN_TYPES = frozenset(_TYPES)


def check_schema(schema: Any, path: str = "") -> None:
    """Raise ValueError when ``schema`` uses a type this validator does not know."""
    if not isinstance(schema, dict):
        raise ValueError(f"schema{'.' + path if path else ''} must be a dict.")
    types = schema.get("type")
    for name in [types] if isinstance(types, str) else types or []:
        if name not in KNOWN_TYPES:
            raise ValueError(f"unknown type {name!r} at {path or '(root)'}.")
    for key, sub in (schema.get("properties") or {}).items():
        check_schema(sub, f"{path}.{key}" if path else key)
    if isinstance(schema.get("items"), dict):
        check_schema(schema["items"], f"{path}.items" if path else "items")


def validate(value: Any, schema: dict[str, Any]) -> dict[str, str]:
    """Errors of ``value`` against ``schema`` as ``{path: message}`` (empty when valid)."""
    errors: dict[str, str] = {}
    _validate(value, schema, "", errors)
    return errors


def _label(path: str) -> str:
    return path or "(root)"


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _validate(value: Any, schema: dict[str, Any], path: str, errors: dict[str, str]) -> None:
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_TYPES[name](value) for name in names):
            errors[_label(path)] = f"must be of type {' or '.join(names)}"
            return
    if "enum" in schema and value not in schema["enum"]:
        errors[_label(path)] = f"must be one of {schema['enum']!r}"
        return
    if "const" in schema and value != schema["const"]:
        errors[_label(path)] = f"must equal {schema['const']!r}"
        return
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors[_label(path)] = f"must have at least {schema['minLength']} characters"
        elif "maxLength" in schema and len(value) > schema["maxLength"]:
            errors[_label(path)] = f"must have at most {schema['maxLength']} characters"
        elif "pattern" in schema and not re.search(schema["pattern"], value):
            errors[_label(path)] = f"must match {schema['pattern']!r}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors[_label(path)] = f"must be at least {schema['minimum']}"
        elif "maximum" in schema and value > schema["maximum"]:
            errors[_label(path)] = f"must be at most {schema['maximum']}"
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for name in schema.get("required") or []:
            if name not in value:
                errors[_join(path, name)] = "is required"
        additional = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                _validate(item, properties[key], _join(path, key), errors)
            elif additional is False:
                errors[_join(path, key)] = "is not an allowed property"
            elif isinstance(additional, dict):
                _validate(item, additional, _join(path, key), errors)
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors[_label(path)] = f"must have at least {schema['minItems']} items"
        elif "maxItems" in schema and len(value) > schema["maxItems"]:
            errors[_label(path)] = f"must have at most {schema['maxItems']} items"
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                _validate(item, items, _join(path, index), errors)
