"""Find the tenant a request names: header, path, subdomain, JWT claim, then a custom callable."""

from __future__ import annotations

import functools
import ipaddress
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import DisallowedHost, ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest
from django.http.request import split_domain_port

from better_core.jwt import bearer_claims
from better_tenant import registry
from better_tenant.conf import tenant_settings
from better_tenant.errors import TenantMismatch
from better_tenant.lookup import resolve_to_id

# --- single strategies ---------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """A non-empty, stripped string, or None."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def header_meta_key(name: str) -> str:
    """The ``request.META`` key under which WSGI and ASGI store the header ``name``."""
    return "HTTP_" + name.upper().replace("-", "_")


@functools.lru_cache(maxsize=32)
def compile_path_pattern(pattern: str) -> re.Pattern[str]:
    """Compile ``/t/:tenantId/*`` into a regex whose group ``tenant`` is the identifier.

    ``:tenantId`` marks the segment that holds the tenant; any other ``:name`` matches one
    segment; ``*`` as the last segment matches the rest of the path, or nothing; other segments
    match literally.
    """
    if not isinstance(pattern, str) or not pattern.startswith("/"):
        raise ImproperlyConfigured(
            f"BETTER_TENANT['PATH'] must be a path pattern starting with '/', such as "
            f"'/t/:tenantId/*'; got {pattern!r}."
        )
    segments = pattern.strip("/").split("/")
    if ":tenantId" not in segments:
        raise ImproperlyConfigured(
            f"BETTER_TENANT['PATH'] {pattern!r} has no ':tenantId' segment; write the segment "
            "that holds the tenant as ':tenantId', e.g. '/t/:tenantId/*'."
        )
    tenant_index = segments.index(":tenantId")
    parts: list[str] = []
    for index, segment in enumerate(segments):
        if segment == "*":
            if index != len(segments) - 1:
                raise ImproperlyConfigured(
                    f"BETTER_TENANT['PATH'] {pattern!r}: '*' may only be the last segment."
                )
            parts.append("(?:/.*)?")
        elif index == tenant_index:
            parts.append("/(?P<tenant>[^/]+)")
        elif segment.startswith(":") and len(segment) > 1:
            parts.append("/[^/]+")
        else:
            parts.append("/" + re.escape(segment))
    tail = "" if segments[-1] == "*" else "/?"
    return re.compile("^" + "".join(parts) + tail + r"\Z", re.DOTALL)


def from_path(request: HttpRequest, pattern: str) -> str | None:
    """The path segment that ``pattern`` marks with ``:tenantId``."""
    match = compile_path_pattern(pattern).match(request.path_info)
    return _text(match.group("tenant")) if match else None


def from_subdomain(request: HttpRequest) -> str | None:
    """The first label of a host name with three or more labels (``acme.app.com`` -> ``acme``)."""
    try:
        host = request.get_host()
    except DisallowedHost:
        # CommonMiddleware answers a disallowed host; a resolver only finds nothing.
        return None
    domain, _port = split_domain_port(host)
    if not domain or domain.startswith("["):
        return None
    labels = domain.split(".")
    if len(labels) < 3:
        return None
    try:
        ipaddress.ip_address(domain)
    except ValueError:
        return _text(labels[0])
    return None


def from_jwt(
    request: HttpRequest,
    claim: str,
    key: Any = None,
    algorithms: list[str] | None = None,
    audience: Any = None,
) -> str | None:
    """The string ``claim`` of the bearer JWT; verified when ``key`` is given, else only decoded.

    A malformed, expired or badly signed token, a token carrying an ``aud`` claim when no
    ``audience`` is expected, and a claim that is missing or not a string, all yield None.
    """
    claims = bearer_claims(request, key, algorithms=algorithms or None, audience=audience)
    if claims is None:
        return None
    return _text(claims.get(claim))


# --- the configured chain ------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The resolver chain and where it applies, compiled once from the settings and registry."""

    header_key: str | None
    path_pattern: str | None
    subdomain: bool
    jwt_claim: str | None
    jwt_key: Any
    jwt_algorithms: tuple[str, ...]
    jwt_audience: Any
    custom: Callable[[HttpRequest], Any] | None
    prefixes: tuple[str, ...]
    exempt: tuple[str, ...]
    authorize: Callable[[HttpRequest, uuid.UUID], Any] | None = None

    @property
    def jwt_verified(self) -> bool:
        """True when the JWT claim is read from tokens whose signature is checked."""
        return self.jwt_claim is not None and self.jwt_key is not None

    def applies_to(self, path: str) -> bool:
        """True when ``path`` is under PATH_PREFIXES (or none are set) and not exempt."""
        if self.exempt and path.startswith(self.exempt):
            return False
        return not self.prefixes or path.startswith(self.prefixes)

    def identifier(self, request: HttpRequest) -> str | None:
        """The first non-empty identifier of header, path, subdomain, JWT claim, custom."""
        for _source, value in self._named(request, with_jwt=True):
            return value
        return None

    def _jwt_claim(self, request: HttpRequest) -> str | None:
        if self.jwt_claim is None:
            return None
        return from_jwt(
            request, self.jwt_claim, self.jwt_key, list(self.jwt_algorithms), self.jwt_audience
        )

    def _named(self, request: HttpRequest, *, with_jwt: bool) -> Iterator[tuple[str, str]]:
        """``(source, identifier)`` of each strategy that names a tenant, in resolution order.

        Lazy, so that first-match resolution stops at the first source (no token decoding, no
        custom resolver call when the header already names a tenant).
        """
        if self.header_key is not None:
            value = _text(request.META.get(self.header_key))
            if value:
                yield f"the {tenant_settings.HEADER} header", value
        if self.path_pattern is not None:
            value = from_path(request, self.path_pattern)
            if value:
                yield "the path", value
        if self.subdomain:
            value = from_subdomain(request)
            if value:
                yield "the subdomain", value
        if with_jwt and self.jwt_claim is not None:
            value = self._jwt_claim(request)
            if value:
                yield f"the {self.jwt_claim!r} claim of the bearer token", value
        if self.custom is not None:
            value = _text(self.custom(request))
            if value:
                yield "the custom resolver", value

    def resolve(self, request: HttpRequest) -> uuid.UUID | None:
        """The id of the tenant the request names, or None when it names none or an unknown one.

        A verified JWT claim binds the request to the token's tenant: every other source that
        names a tenant must name the same one (compared by id, so a slug and an id of one tenant
        agree), or ``TenantMismatch`` is raised. A token whose signature, expiry or audience does
        not verify counts as absent, so it can neither name nor block a tenant; the other sources
        then resolve first-match, as they do without a verified JWT (and as they do when
        ``JWT_KEY`` is None: an unverified token is just one more source a client controls).
        """
        if self.jwt_verified:
            claimed = self._jwt_claim(request)
            if claimed is not None:
                return self._bound_to(request, claimed)
        for _source, value in self._named(request, with_jwt=not self.jwt_verified):
            return resolve_to_id(value)
        return None

    def _bound_to(self, request: HttpRequest, claimed: str) -> uuid.UUID | None:
        tenant_id = resolve_to_id(claimed)
        if tenant_id is None:
            # The token is authentic but its tenant is gone: no other source may stand in for it.
            return None
        for source, value in self._named(request, with_jwt=False):
            # An unknown identifier elsewhere is a disagreement too: it is not the token's tenant.
            if value != claimed and resolve_to_id(value) != tenant_id:
                raise TenantMismatch(
                    f"The bearer token belongs to one tenant and {source} names another. A "
                    "request may only act in the tenant its token was issued for: send the "
                    f"token alone, or make {source} name the token's tenant.",
                    source=source,
                )
        return tenant_id

    def describe(self) -> str:
        """How a client names its tenant under this configuration, for error messages."""
        ways = []
        if self.header_key is not None:
            ways.append(f"the {tenant_settings.HEADER} header")
        if self.path_pattern is not None:
            ways.append(f"a path like {self.path_pattern}")
        if self.subdomain:
            ways.append("a subdomain (tenant.example.com)")
        if self.jwt_claim is not None:
            ways.append(f"the {self.jwt_claim!r} claim of an Authorization: Bearer token")
        if self.custom is not None:
            ways.append("the custom resolver")
        return ", ".join(ways) or "no strategy (configure one in BETTER_TENANT)"


def _prefixes(key: str) -> tuple[str, ...]:
    value = tenant_settings.raw(key) or ()
    if isinstance(value, str):
        value = (value,)
    if not all(isinstance(item, str) and item for item in value):
        raise ImproperlyConfigured(
            f"BETTER_TENANT[{key!r}] must be a list of non-empty path prefixes such as "
            f"'/api/'; got {value!r}."
        )
    return tuple(value)


@functools.lru_cache(maxsize=1)
def plan() -> Plan:
    """The compiled resolver chain, rebuilt when BETTER_TENANT or the exempt paths change."""
    header = tenant_settings.HEADER
    path = tenant_settings.PATH
    if path is not None:
        compile_path_pattern(path)
    algorithms = tenant_settings.JWT_ALGORITHMS
    if isinstance(algorithms, str):
        algorithms = [algorithms]
    custom = tenant_settings.CUSTOM_RESOLVER
    if custom is not None and not callable(custom):
        raise ImproperlyConfigured(
            "BETTER_TENANT['CUSTOM_RESOLVER'] must be a callable(request) -> str | None or a "
            "dotted path to one."
        )
    authorize = tenant_settings.AUTHORIZE
    if authorize is not None and not callable(authorize):
        raise ImproperlyConfigured(
            "BETTER_TENANT['AUTHORIZE'] must be a callable(request, tenant_id) -> bool or a "
            "dotted path to one, e.g. better_tenant.authorization.membership('app.Membership')."
        )
    return Plan(
        header_key=header_meta_key(header) if header else None,
        path_pattern=path or None,
        subdomain=bool(tenant_settings.SUBDOMAIN),
        jwt_claim=tenant_settings.JWT_CLAIM or None,
        jwt_key=tenant_settings.JWT_KEY,
        jwt_algorithms=tuple(algorithms or ("HS256",)),
        jwt_audience=tenant_settings.JWT_AUDIENCE,
        custom=custom,
        prefixes=_prefixes("PATH_PREFIXES"),
        # Paths the installed apps register: they authenticate on their own, with no tenant.
        exempt=_prefixes("EXEMPT_PATHS") + registry.exempt_paths(),
        authorize=authorize,
    )


def _on_setting_changed(*, setting: str, **_: Any) -> None:
    # INSTALLED_APPS: the installed apps declare exempt paths.
    if setting in (tenant_settings.namespace, "INSTALLED_APPS"):
        plan.cache_clear()


def _on_exempt_paths_changed(**_: Any) -> None:
    plan.cache_clear()


setting_changed.connect(_on_setting_changed, dispatch_uid="better_tenant.resolvers.plan")
registry.exempt_paths_changed.connect(
    _on_exempt_paths_changed, dispatch_uid="better_tenant.resolvers.plan"
)


def resolve_tenant_id(request: HttpRequest) -> uuid.UUID | None:
    """The id of the tenant the request names, or None when it names none or an unknown one.

    Raises ``TenantMismatch`` (a ``PermissionDenied``) when a verified JWT and another source
    name different tenants.
    """
    return plan().resolve(request)
