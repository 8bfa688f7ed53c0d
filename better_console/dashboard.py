"""The console dashboard: sections that products register, and the figures they compute."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.apps import apps
from django.db.models import Count, QuerySet
from django.urls import reverse
from django.utils import timezone

from better_console.exceptions import ConsoleConfigurationError
from better_tenant.shortcuts import system_scope

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite
    from django.http import HttpRequest

DEFAULT_DAYS = 30
MAX_DAYS = 365
#: The sections of the suite's own products: ``dashboard_data()`` always holds these keys, None
#: for a section that is not registered (its app is not installed), so that readers of the JSON
#: need not test for a key.
KNOWN_SECTIONS = ("tenants", "audit", "webhooks", "mail")
RESERVED_KEYS = frozenset({"days", "since"})


@dataclass(frozen=True)
class DashboardWindow:
    """The span a section counts: ``days`` UTC days from ``first`` to ``last`` (today included).

    ``since`` is the first day's midnight (UTC) and ``using`` the database alias to read (None:
    the router's choice).
    """

    days: int
    first: date
    last: date
    since: datetime
    using: str | None = None


Figures = Callable[[DashboardWindow], Mapping[str, Any] | None]
AdminContext = Callable[["AdminSite", "HttpRequest", Mapping[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True)
class DashboardSection:
    """One section of the dashboard, registered by the product it shows.

    ``figures(window)`` returns the section's JSON-serialisable figures: its value in
    ``dashboard_data()`` (None leaves the section out of the admin dashboard). In the admin
    dashboard, ``template`` renders the section's card in the grid of figures and
    ``wide_template`` (optional) a full-width block below the grid, such as a chart; both see
    the section's admin context as ``section`` and the whole ``data`` of the page. That context
    is ``admin_context(site, request, figures)`` (links, a chart, labelled rows), or the figures
    themselves when the section has no ``admin_context``.
    """

    key: str
    order: int
    figures: Figures
    template: str
    wide_template: str | None = None
    admin_context: AdminContext | None = None

    def context(
        self, site: AdminSite, request: HttpRequest, figures: Mapping[str, Any]
    ) -> dict[str, Any]:
        """What the section's templates see as ``section``."""
        if self.admin_context is None:
            return dict(figures)
        return dict(self.admin_context(site, request, figures))


_sections: dict[str, DashboardSection] = {}
_lock = threading.Lock()


def register_section(
    key: str,
    *,
    order: int,
    figures: Figures,
    template: str,
    wide_template: str | None = None,
    admin_context: AdminContext | None = None,
    replace: bool = False,
) -> DashboardSection:
    """Add a section to the dashboard under ``key`` (see ``DashboardSection``).

    Sections are shown by ``order``, then ``key``. A product registers its section when its app
    is ready, so that a product that is not installed has none. Registering a key that is already
    taken raises, unless ``replace`` is True (as an app's ``ready()`` re-run does).
    """
    if not isinstance(key, str) or not key.isidentifier() or key in RESERVED_KEYS:
        raise ConsoleConfigurationError(
            f"Dashboard section key {key!r} is not usable: use a Python identifier other than "
            f"{' or '.join(sorted(RESERVED_KEYS))}."
        )
    if isinstance(order, bool) or not isinstance(order, int):
        raise ConsoleConfigurationError(f"Dashboard section {key!r}: order must be an integer.")
    if not callable(figures) or (admin_context is not None and not callable(admin_context)):
        raise ConsoleConfigurationError(
            f"Dashboard section {key!r}: figures and admin_context must be callables."
        )
    if not template or not isinstance(template, str):
        raise ConsoleConfigurationError(f"Dashboard section {key!r}: template is required.")
    section = DashboardSection(
        key=key,
        order=order,
        figures=figures,
        template=template,
        wide_template=wide_template,
        admin_context=admin_context,
    )
    with _lock:
        if key in _sections and not replace:
            raise ConsoleConfigurationError(
                f"Dashboard section {key!r} is already registered; pass replace=True to "
                "redefine it."
            )
        _sections[key] = section
    return section


def unregister_section(key: str) -> None:
    """Remove a section (tests, or a product that turns its dashboard section off)."""
    with _lock:
        _sections.pop(key, None)


def get_section(key: str) -> DashboardSection | None:
    return _sections.get(key)


def sections() -> list[DashboardSection]:
    """The registered sections in the order the dashboard shows them."""
    with _lock:
        registered = list(_sections.values())
    return sorted(registered, key=lambda section: (section.order, section.key))


def window(days: int, now: datetime | None = None) -> tuple[date, date, datetime]:
    """The first and last UTC day of a ``days``-day window ending today, and its start instant."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be a whole number from 1 to {MAX_DAYS}; got {days!r}.")
    today = (now or timezone.now()).astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    return first, today, datetime(first.year, first.month, first.day, tzinfo=UTC)


def dashboard_data(days: int = DEFAULT_DAYS, using: str | None = None) -> dict[str, Any]:
    """Every registered section's figures over the last ``days`` days, across all tenants.

    Returns ``{"days", "since", "tenants", "audit", "webhooks", "mail", ...}``: the window, then
    one entry per section, None for a section of ``KNOWN_SECTIONS`` that is not registered. The
    window is the last ``days`` UTC days, today included, as in ``audit.stats()``. The sections
    run in one system scope, so that every figure reads every tenant's rows in one snapshot.
    """
    first, last, since = window(days)
    span = DashboardWindow(days=days, first=first, last=last, since=since, using=using)
    data: dict[str, Any] = {"days": days, "since": since.isoformat()}
    data.update(dict.fromkeys(KNOWN_SECTIONS))
    with system_scope(using):
        for section in sections():
            data[section.key] = section.figures(span)
    return data


# --- helpers for the sections -------------------------------------------------------------------


def counts_by_status(qs: QuerySet) -> dict[str, int]:
    """``{status: rows}`` of ``qs`` in one grouped query (statuses without rows are absent)."""
    return dict(
        qs.order_by().values_list("status").annotate(n=Count("*")).values_list("status", "n")
    )


def changelist_url(
    site: AdminSite, request: HttpRequest, model_label: str, **query: str
) -> str | None:
    """The model's changelist on ``site`` with ``query``, or None when the user may not see it."""
    try:
        model = apps.get_model(model_label)
    except LookupError:
        return None
    model_admin = site._registry.get(model)
    if model_admin is None or not model_admin.has_view_permission(request):
        return None
    opts = model._meta
    url = reverse(f"{site.name}:{opts.app_label}_{opts.model_name}_changelist")
    return f"{url}?{urlencode(query)}" if query else url


def status_rows(
    site: AdminSite,
    request: HttpRequest,
    model_label: str,
    counts: Mapping[str, int],
    label: Callable[[str], str] = str.capitalize,
) -> list[dict[str, Any]]:
    """One row per status: its key, label, count and the changelist filtered to it."""
    return [
        {
            "key": status,
            "label": label(status),
            "count": count,
            "url": changelist_url(site, request, model_label, status__exact=status),
        }
        for status, count in counts.items()
    ]
