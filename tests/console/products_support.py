"""Calling console product handlers as the console view does: resolve the route, then call it."""

from __future__ import annotations

import json
import time
from typing import Any

from django.http import HttpResponseBase

from better_console.registry import (
    ConsoleRequest,
    ConsoleResponse,
    SessionInfo,
    get_product,
    split_path,
)

ALL = ("read", "write", "admin")


def route(product: str, method: str, path: str) -> tuple[Any, dict[str, str]]:
    """The endpoint answering ``method path`` of ``product`` and its ``:param`` values."""
    registered = get_product(product)
    assert registered is not None, f"product {product!r} is not registered"
    resolved = registered.resolve(method, split_path(path))
    assert resolved is not None, f"{product} has no route {method} {path}"
    return resolved


def call(
    product: str,
    method: str,
    path: str,
    *,
    query: dict[str, Any] | None = None,
    body: Any = None,
    permissions: tuple[str, ...] = ALL,
) -> Any:
    """The handler's answer to the request; refused like the view when the session lacks the
    endpoint's permission."""
    endpoint, params = route(product, method, path)
    session = SessionInfo("session-1", "ops@example.com", permissions, int(time.time()) + 3600)
    if not session.has_permission(endpoint.required_permission):
        raise PermissionError(endpoint.required_permission)
    request = ConsoleRequest(
        method=method,
        path=f"/{product}{path}",
        params=params,
        query={key: str(value) for key, value in (query or {}).items()},
        body=body,
        headers={},
        session=session,
    )
    return endpoint.handler(request)


def ok(response: Any, status: int = 200) -> Any:
    """The body of a ConsoleResponse with ``status``, passed through JSON as the view sends it."""
    assert isinstance(response, ConsoleResponse), response
    assert response.status == status, (response.status, response.body)
    return None if response.body is None else json.loads(json.dumps(response.body))


def streamed(response: HttpResponseBase) -> bytes:
    return b"".join(response.streaming_content)
