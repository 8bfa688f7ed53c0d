"""Actor extractors: read who acts from a request, for AuditContextMiddleware.

An extractor is a callable ``extractor(request)`` that returns the actor id as a string, None when
the request names no actor, or a ``Deferred`` whose value is read when an audit entry is written.
Extractors may also be coroutine functions.

The built-in ones are factories: ``from_header("x-user-id")`` returns an extractor. The factories
whose arguments all have defaults (``from_user``, ``from_bearer_token``, ``from_header``) are
extractors themselves as well: called with a request, they extract with their defaults. So the bare
dotted path ``"better_audit.extractors.from_user"`` works in ``ACTOR_EXTRACTORS``, and so does a
pair ``["better_audit.extractors.from_bearer_token", {"claim": "user_id"}]`` that calls the factory
with those options.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.utils.functional import SimpleLazyObject, empty

from better_audit.conf import audit_settings
from better_core.jwt import bearer_claims

logger = logging.getLogger(__name__)

#: The header that ``from_header()`` reads by default (set by a trusted proxy or gateway).
AUDIT_ACTOR_HEADER = "x-better-audit-actor-id"

# Longer values are not identifiers; refusing them keeps junk and attacks out of the log.
MAX_ACTOR_LENGTH = 255

# Marks extractors that touch neither the database nor the network, so the async middleware may
# call them in the event loop instead of a worker thread.
LOOP_SAFE = "_better_audit_loop_safe"

Extractor = Callable[[Any], Any]


class Deferred:
    """An actor known only later: ``resolve()`` is called when an audit entry is written.

    ``from_user`` returns one because authentication that runs inside the view (Django REST
    framework's token or JWT authentication) sets ``request.user`` after the middleware has run.
    """

    def __init__(self, resolve: Callable[[], Any]) -> None:
        self._resolve = resolve

    def resolve(self) -> str | None:
        return to_actor_id(self._resolve())

    async def aprepare(self) -> None:
        """Load what ``resolve()`` needs so that it can run in the event loop (async requests)."""


def to_actor_id(value: Any) -> str | None:
    """Normalise an extracted value: strings and integers are kept, anything empty is None."""
    if value is None or isinstance(value, bool):
        return None
    if not isinstance(value, str):
        value = str(value)
    value = value.strip()
    if not value or len(value) > MAX_ACTOR_LENGTH:
        return None
    return value


def _is_request(value: Any) -> bool:
    # Django's HttpRequest and DRF's Request both carry META; a configuration value never does.
    return hasattr(value, "META")


def _loop_safe(func: Extractor) -> Extractor:
    setattr(func, LOOP_SAFE, True)
    return func


def _dual(factory: Callable[..., Extractor]) -> Callable[..., Any]:
    """Let ``factory(request)`` extract with the defaults and ``factory(options...)`` configure."""

    @functools.wraps(factory)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and _is_request(args[0]):
            return factory()(args[0])
        return factory(*args, **kwargs)

    setattr(wrapper, LOOP_SAFE, True)
    return wrapper


# --- bearer token -------------------------------------------------------------------------------


def _ignored_token(exc: Exception) -> None:
    logger.debug("Bearer token ignored for the audit actor: %s", type(exc).__name__)


@_dual
def from_bearer_token(
    claim: str = "sub",
    key: Any = None,
    algorithms: list[str] | None = None,
    audience: Any = None,
) -> Extractor:
    """Read ``claim`` from the JWT of the ``Authorization: Bearer`` header.

    The signature and the ``exp``/``nbf`` claims are verified with ``key`` or the ``JWT_KEY``
    setting (``aud`` too when ``audience`` is given); a malformed, expired or badly signed token
    yields None. Without a key a token names no actor, since any client could write any actor
    into the trail, unless ``JWT_UNVERIFIED`` is True: then it is only decoded, for a project whose
    authentication layer has verified it (the check ``better_audit.W004`` says so).
    """

    def extract(request: Any) -> str | None:
        verifying = key if key is not None else audit_settings.JWT_KEY
        if verifying is None and not audit_settings.JWT_UNVERIFIED:
            return None
        claims = bearer_claims(
            request,
            verifying,
            algorithms=algorithms or audit_settings.JWT_ALGORITHMS,
            audience=audience,
            refuse_unexpected_audience=False,
            on_error=_ignored_token,
        )
        if claims is None:
            return None
        value = claims.get(claim)
        return to_actor_id(value) if isinstance(value, str | int) else None

    extract.__qualname__ = f"from_bearer_token({claim!r})"
    return _loop_safe(extract)


# --- header and cookie --------------------------------------------------------------------------


@_dual
def from_header(name: str = AUDIT_ACTOR_HEADER) -> Extractor:
    """Read the actor id from the request header ``name``.

    Clients can send any header: use this only behind a proxy or gateway that sets the header and
    drops a client-supplied one.
    """

    def extract(request: Any) -> str | None:
        return to_actor_id(request.headers.get(name))

    extract.__qualname__ = f"from_header({name!r})"
    return _loop_safe(extract)


def from_cookie(name: str) -> Extractor:
    """Read the actor id from the cookie ``name``."""
    if _is_request(name) or not isinstance(name, str) or not name:
        raise TypeError(
            "from_cookie needs the cookie's name: list "
            '["better_audit.extractors.from_cookie", {"name": "<cookie>"}] in ACTOR_EXTRACTORS, '
            'or from_cookie("<cookie>").'
        )

    def extract(request: Any) -> str | None:
        return to_actor_id(request.COOKIES.get(name))

    extract.__qualname__ = f"from_cookie({name!r})"
    return _loop_safe(extract)


# --- the authenticated user ---------------------------------------------------------------------


class UserActor(Deferred):
    """``request.user``'s attribute, read when an entry is written (so DRF's user is seen)."""

    def __init__(self, request: Any, attribute: str) -> None:
        self.request = request
        self.attribute = attribute
        super().__init__(self._read)

    def _user(self) -> Any:
        request = self.request
        user = getattr(request, "user", None)
        if isinstance(user, SimpleLazyObject) and user._wrapped is empty:
            # Django's lazy session user, not loaded yet. An async request may have loaded it
            # with request.auser(); use that instead of a second query (which the event loop
            # would not allow anyway).
            loaded = request.__dict__.get("_cached_user", request.__dict__.get("_acached_user"))
            if loaded is not None:
                return loaded
        return user

    def _read(self) -> Any:
        user = self._user()
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        return getattr(user, self.attribute, None)

    async def aprepare(self) -> None:
        user = getattr(self.request, "user", None)
        auser = getattr(self.request, "auser", None)
        if (
            isinstance(user, SimpleLazyObject)
            and user._wrapped is empty
            and auser is not None
            and "_acached_user" not in self.request.__dict__
        ):
            await auser()


@_dual
def from_user(attribute: str = "pk") -> Extractor:
    """The authenticated ``request.user``'s ``attribute`` (its primary key by default).

    The user is read when an audit entry is written, not when the request starts, so a user set
    by authentication inside the view (Django REST framework) is the one recorded. Anonymous
    users yield None.
    """

    def extract(request: Any) -> Deferred:
        return UserActor(request, attribute)

    extract.__qualname__ = f"from_user({attribute!r})"
    return _loop_safe(extract)


# --- configuration ------------------------------------------------------------------------------


def build_extractor(entry: Any, label: str = "ACTOR_EXTRACTORS") -> Extractor:
    """An extractor from a setting entry: a callable, or a pair ``[factory, {options}]``.

    Dotted paths have been imported by the settings loader already.
    """
    if isinstance(entry, list | tuple):
        if len(entry) != 2 or not callable(entry[0]) or not isinstance(entry[1], dict):
            raise TypeError(
                f"{label}: an entry that is a list must be [factory, {{options}}], e.g. "
                '["better_audit.extractors.from_bearer_token", {"claim": "user_id"}]; '
                f"got {entry!r}."
            )
        factory, options = entry
        built = factory(**options)
        if not callable(built):
            raise TypeError(f"{label}: {factory!r}(**{options!r}) did not return a callable.")
        return built
    if not callable(entry):
        raise TypeError(
            f"{label}: {entry!r} is not a callable; give dotted paths to functions taking the "
            "request, or [factory, {options}] pairs."
        )
    return entry


def extractor_name(extractor: Any) -> str:
    """A readable name for log messages."""
    return getattr(extractor, "__qualname__", None) or repr(extractor)
