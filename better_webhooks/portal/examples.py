"""An example payload made from an event's JSON Schema, for the portal's event catalog."""

from __future__ import annotations

import copy
from typing import Any

#: Values of string formats, so an example reads like the real thing.
_FORMATS = {
    "date-time": "2025-01-31T12:00:00Z",
    "date": "2025-01-31",
    "time": "12:00:00",
    "email": "ada@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "hostname": "example.com",
}
# Schemas may refer to themselves through $ref; an example stops following them this deep.
_MAX_DEPTH = 12


def example_payload(schema: dict[str, Any] | None) -> Any:
    """A value that the schema describes: declared examples and defaults first, else made up.

    Every property of an object is filled in, the optional ones too, so the example shows each
    field an event may carry; an array holds one item. ``$ref``s into ``$defs`` (or
    ``definitions``) are followed; of ``anyOf``/``oneOf`` the first choice that is not null is
    used.
    """
    root = schema or {"type": "object"}
    return _example(root, root, "", 0)


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any] | None:
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


def _example(schema: Any, root: dict[str, Any], name: str, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    if "$ref" in schema:
        return _example(_resolve(str(schema["$ref"]), root), root, name, depth + 1)
    for key in ("example", "default", "const"):
        if key in schema:
            return copy.deepcopy(schema[key])
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        return copy.deepcopy(examples[0])
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return copy.deepcopy(enum[0])
    for key in ("anyOf", "oneOf"):
        choices = [c for c in schema.get(key) or [] if isinstance(c, dict)]
        if choices:
            usable = [c for c in choices if c.get("type") != "null"] or choices
            return _example(usable[0], root, name, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = _example(part, root, name, depth + 1)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    return _typed(schema, root, name, depth)


def _typed(schema: dict[str, Any], root: dict[str, Any], name: str, depth: int) -> Any:
    types = schema.get("type")
    if isinstance(types, list):
        types = next((t for t in types if t != "null"), "null")
    if types is None:
        types = "object" if "properties" in schema else ("array" if "items" in schema else None)
    if types == "object":
        properties = schema.get("properties") or {}
        return {
            key: _example(sub, root, key, depth + 1)
            for key, sub in properties.items()
            if isinstance(sub, dict)
        }
    if types == "array":
        item = _example(schema.get("items"), root, name, depth + 1)
        count = max(int(schema.get("minItems") or 0), 0 if item is None else 1)
        return [copy.deepcopy(item) for _ in range(count)]
    if types == "string":
        text = _FORMATS.get(str(schema.get("format")), name or "string")
        minimum = int(schema.get("minLength") or 0)
        if len(text) < minimum:
            text = text + "x" * (minimum - len(text))
        maximum = schema.get("maxLength")
        return text[: int(maximum)] if isinstance(maximum, int) else text
    if types in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value = low if isinstance(low, int | float) and not isinstance(low, bool) else 0
        if "exclusiveMinimum" in schema and "minimum" not in schema:
            value += 1
        high = schema.get("maximum")
        if isinstance(high, int | float) and not isinstance(high, bool) and value > high:
            value = high
        return int(value) if types == "integer" else value
    if types == "boolean":
        return True
    return None
