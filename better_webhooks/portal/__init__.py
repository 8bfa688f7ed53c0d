"""The webhooks portal: the pages where a tenant's own users manage its endpoints.

Mount ``better_webhooks.portal.urls`` and hand users ``portal_url(tenant)`` links, or let
``BETTER_WEBHOOKS["PORTAL_AUTHORIZE"]`` admit them; see docs/webhooks-portal.md.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

__all__ = ["portal_url"]


def portal_url(tenant: Any, *, ttl: timedelta | float | str | None = None) -> str:
    """A signed link opening ``tenant``'s portal (see ``better_webhooks.portal.access``)."""
    # Imported here so that importing the package loads neither settings nor URLs.
    from better_webhooks.portal.access import portal_url as make

    return make(tenant, ttl=ttl)
