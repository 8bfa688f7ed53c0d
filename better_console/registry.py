"""Console products: ``register_product(..)``, their endpoints and the ``:param`` route matching."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from better_console.exceptions import ConsoleConfigurationError

PERMISSIONS = ("read", "write", "admin")
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
_PRODUCT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_SEGMENT = re.compile(r"^(:[A-Za-z_][A-Za-z0-9_]*|[A-Za-z0-9._~-]+)$")


@dataclass
class SessionInfo:
    """Who is calling: the verified claims of the session token."""

    session_id: str
    email: str
    permissions: tuple[str, ...]
    expires_at: int

    def has_permission(self, required: str) -> bool:
        """True when one of the session's levels is at least ``required`` (read < write < admin)."""
        rank = PERMISSIONS.index(required)
        return any(PERMISSIONS.index(p) >= rank for p in self.permissions if p in PERMISSIONS)


@dataclass
class ConsoleRequest:
    """What a product handler receives: the parsed request, its ``:param`` values and session."""

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    headers: Mapping[str, str]
    session: SessionInfo | None = None
    # The Django request, for handlers that need more (the user agent, a streaming export, ...).
    http_request: Any = None


@dataclass
class ConsoleResponse:
    """A handler's answer: a status and a JSON-serialisable body (None for an empty body)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[ConsoleRequest], Any]


@dataclass(frozen=True)
class Endpoint:
    """One product route: ``path`` is relative to the product and may hold ``:param`` segments."""

    method: str
    path: str
    handler: Handler
    required_permission: str = "read"

    def __post_init__(self) -> None:
        method = self.method.upper()
        object.__setattr__(self, "method", method)
        if method not in METHODS:
            raise ConsoleConfigurationError(
                f"Endpoint {self.path!r}: method {self.method!r} is not one of "
                f"{', '.join(METHODS)}."
            )
        if self.required_permission not in PERMISSIONS:
            raise ConsoleConfigurationError(
                f"Endpoint {method} {self.path!r}: required_permission "
                f"{self.required_permission!r} is not one of {', '.join(PERMISSIONS)}."
            )
        if not callable(self.handler):
            raise ConsoleConfigurationError(
                f"Endpoint {method} {self.path!r}: handler is not callable."
            )
        segments = split_path(self.path)
        bad = [s for s in segments if not _SEGMENT.match(s)]
        if not self.path.startswith("/") or bad:
            raise ConsoleConfigurationError(
                f"Endpoint {method} {self.path!r}: a path starts with '/' and holds plain segments "
                "or ':name' parameters."
            )

    @property
    def segments(self) -> tuple[str, ...]:
        return split_path(self.path)

    def match(self, segments: tuple[str, ...]) -> dict[str, str] | None:
        """The ``:param`` values when ``segments`` fit this route segment for segment, else None."""
        pattern = self.segments
        if len(pattern) != len(segments):
            return None
        params: dict[str, str] = {}
        for expected, actual in zip(pattern, segments, strict=True):
            if expected.startswith(":"):
                params[expected[1:]] = actual
            elif expected != actual:
                return None
        return params


@dataclass(frozen=True)
class Product:
    """A product the console UI discovers: ``id`` is its mount, ``/.well-known/better/<id>/``."""

    id: str
    name: str
    endpoints: tuple[Endpoint, ...]

    def resolve(
        self, method: str, segments: tuple[str, ...]
    ) -> tuple[Endpoint, dict[str, str]] | None:
        """The endpoint for ``method`` and the path below the product, with its params."""
        for endpoint in self.endpoints:
            if endpoint.method == method:
                params = endpoint.match(segments)
                if params is not None:
                    return endpoint, params
        return None

    def allows_path(self, segments: tuple[str, ...]) -> list[str]:
        """The methods served at this path (for 405 versus 404 and the preflight)."""
        return [e.method for e in self.endpoints if e.match(segments) is not None]


def split_path(path: str) -> tuple[str, ...]:
    return tuple(segment for segment in path.split("/") if segment)


_products: dict[str, Product] = {}
_lock = threading.Lock()


def register_product(
    id: str,
    name: str,
    endpoints: Iterable[Endpoint | Mapping[str, Any]],
    *,
    replace: bool = False,
) -> Product:
    """Register a product so that its endpoints are served and listed in the capabilities.

    ``endpoints`` are ``Endpoint`` objects or dicts with the same keys. Registering an id that is
    already taken raises, unless ``replace`` is True (as an app's ``ready()`` re-run does).
    ``console`` is reserved for the protocol's own routes.
    """
    if not _PRODUCT_ID.match(id or "") or id == "console":
        raise ConsoleConfigurationError(
            f"Product id {id!r} is not usable: use lowercase letters, digits, '-' or '_', "
            "and not 'console' (the protocol's own routes)."
        )
    built = tuple(e if isinstance(e, Endpoint) else Endpoint(**e) for e in endpoints)
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for endpoint in built:
        shape = (endpoint.method, tuple(":" if s.startswith(":") else s for s in endpoint.segments))
        if shape in seen:
            raise ConsoleConfigurationError(
                f"Product {id!r}: two endpoints answer {endpoint.method} {endpoint.path!r}."
            )
        seen.add(shape)
    product = Product(id=id, name=name, endpoints=built)
    with _lock:
        if id in _products and not replace:
            raise ConsoleConfigurationError(
                f"Product {id!r} is already registered; pass replace=True to redefine it."
            )
        _products[id] = product
    return product


def unregister_product(id: str) -> None:
    """Remove a product (tests, or an app that turns its console integration off)."""
    with _lock:
        _products.pop(id, None)


def get_product(id: str) -> Product | None:
    return _products.get(id)


def products() -> list[Product]:
    """The registered products, in registration order."""
    return list(_products.values())
