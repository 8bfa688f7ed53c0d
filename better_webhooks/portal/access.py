"""Who may open a tenant's portal: a signed link kept in the session, or PORTAL_AUTHORIZE."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction
from django.core import signing
from django.http import HttpRequest
from django.urls import reverse

from better_core.settings import to_seconds
from better_tenant import shortcuts
from better_webhooks.conf import webhook_settings
from better_webhooks.exceptions import TenancyNotInstalledError

#: Namespaces the link's signature, so no other signed value of the project passes for a link.
LINK_SALT = "better_webhooks.portal.link"
#: The session key of the grant a link leaves: ``{"tenant": "<uuid>", "until": <unix time>}``.
SESSION_KEY = "better_webhooks_portal"


class LinkError(Exception):
    """A portal link that opens nothing; the message says why and what to do."""


def _ttl_seconds(ttl: timedelta | float | str | None) -> float:
    longest = float(webhook_settings.PORTAL_LINK_MAX_AGE)
    if ttl is None:
        return longest
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else to_seconds(ttl)
    if not 0 < seconds <= longest:
        raise ValueError(
            f"ttl must be more than 0 and at most BETTER_WEBHOOKS['PORTAL_LINK_MAX_AGE'] "
            f"({longest:g} seconds); got {seconds:g} seconds."
        )
    return seconds


def portal_url(tenant: Any, *, ttl: timedelta | float | str | None = None) -> str:
    """A link (a path of this site) that opens ``tenant``'s webhooks portal in a browser.

    ``tenant`` is a Tenant, its id or the id as a string. The link is signed with SECRET_KEY and
    opens the portal until ``ttl`` has passed (a timedelta, seconds or a duration such as
    ``"15min"``; default and upper bound ``PORTAL_LINK_MAX_AGE``). Opening it grants the browser
    session that tenant's portal, and no other, for ``PORTAL_SESSION_MAX_AGE``. Anyone holding
    the link until then can open it: hand it to the signed-in user it is for, e.g. as a redirect.
    """
    if not shortcuts.tenancy_installed():
        raise TenancyNotInstalledError(
            "The webhooks portal shows one tenant's endpoints, which needs better_tenant in "
            "INSTALLED_APPS."
        )
    tenant_id = shortcuts.to_tenant_id(tenant)
    if tenant_id is None:
        raise ValueError("portal_url() needs a tenant (a Tenant or its id), got None.")
    expires = int(time.time() + _ttl_seconds(ttl))
    token = signing.dumps({"tenant": str(tenant_id), "expires": expires}, salt=LINK_SALT)
    return reverse("better_webhooks_portal:enter", kwargs={"token": token})


def read_link(token: str) -> uuid.UUID:
    """The tenant a link opens, or LinkError when it is altered, expired or not a link."""
    try:
        # max_age caps every link, including one issued before the setting was lowered.
        data = signing.loads(
            token,
            salt=LINK_SALT,
            max_age=timedelta(seconds=float(webhook_settings.PORTAL_LINK_MAX_AGE)),
        )
    except signing.SignatureExpired:
        raise LinkError(_EXPIRED) from None
    except signing.BadSignature:
        raise LinkError(_INVALID) from None
    try:
        tenant_id = uuid.UUID(data["tenant"])
        expires = float(data["expires"])
    except (TypeError, KeyError, ValueError):
        raise LinkError(_INVALID) from None
    if time.time() > expires:
        raise LinkError(_EXPIRED)
    return tenant_id


_EXPIRED = (
    "This webhooks portal link has expired. Open the portal again from the application to get "
    "a new link."
)
_INVALID = (
    "This is not a valid webhooks portal link: it was changed or cut short. Open the portal "
    "again from the application."
)


def grant(request: HttpRequest, tenant_id: uuid.UUID) -> None:
    """Let this browser session use ``tenant_id``'s portal for ``PORTAL_SESSION_MAX_AGE``.

    A session holds one grant: a link of another tenant replaces it. The session key changes, as
    at a login, so a session id planted before the link was opened does not inherit the grant.
    """
    request.session.cycle_key()
    until = time.time() + float(webhook_settings.PORTAL_SESSION_MAX_AGE)
    request.session[SESSION_KEY] = {"tenant": str(tenant_id), "until": until}


def revoke(request: HttpRequest) -> None:
    """Forget this session's grant."""
    session = getattr(request, "session", None)
    if session is not None:
        session.pop(SESSION_KEY, None)


def granted_tenant(request: HttpRequest) -> uuid.UUID | None:
    """The tenant whose portal this session was granted by a link, while the grant lasts."""
    session = getattr(request, "session", None)
    if session is None:
        return None
    data = session.get(SESSION_KEY)
    if data is None:
        return None
    try:
        tenant_id = uuid.UUID(data["tenant"])
        until = float(data["until"])
    except (TypeError, KeyError, ValueError):
        tenant_id, until = None, 0.0
    if tenant_id is None or time.time() > until:
        del session[SESSION_KEY]
        return None
    return tenant_id


def _authorized(request: HttpRequest, tenant_id: uuid.UUID) -> bool:
    check = webhook_settings.PORTAL_AUTHORIZE
    if check is None:
        return False
    if iscoroutinefunction(check) or iscoroutinefunction(type(check).__call__):
        allowed = async_to_sync(check)(request, tenant_id)
    else:
        allowed = check(request, tenant_id)
    # Only True opens the portal: a forgotten return (None), a row or a queryset refuses.
    return allowed is True


def portal_tenant(request: HttpRequest) -> tuple[uuid.UUID | None, str]:
    """``(tenant id, "")`` when this request may use that tenant's portal, else ``(None, why)``.

    With a tenant in scope (better_tenant's middleware resolved one), that tenant's portal opens
    if the session's grant is for it or ``PORTAL_AUTHORIZE(request, tenant_id)`` returns True;
    a grant for another tenant counts for nothing there. Without one, the session's grant alone
    names the tenant. Being staff or a superuser opens nothing.
    """
    granted = granted_tenant(request)
    in_scope = shortcuts.current_tenant_id()
    if in_scope is None:
        if granted is not None:
            return granted, ""
        return None, (
            "Open the webhooks portal through the link the application gives you. A link works "
            "for a limited time, and the portal stays open in this browser for a few hours."
        )
    if granted == in_scope or _authorized(request, in_scope):
        return in_scope, ""
    return None, (
        "You may not manage the webhooks of this tenant. Open the portal from the application "
        "while signed in as a member who may manage them."
    )
