"""The dashboard's section registry: products register sections, the console loops over them."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from dataclasses import fields
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.template.loader import get_template
from django.urls import reverse
from django.utils import timezone

import better_console
from better_console.dashboard import (
    KNOWN_SECTIONS,
    DashboardWindow,
    dashboard_data,
    get_section,
    register_section,
    sections,
    unregister_section,
)
from better_console.exceptions import ConsoleConfigurationError
from better_mail.templates import registry as mail_templates
from better_tenant.shortcuts import in_system_mode
from tests.support.console import post

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = reverse("admin:better_console_dashboard")
PRODUCTS = ("better_tenant", "better_audit", "better_webhooks", "better_mail")
SHOP_CARD = (
    '<section id="console-shop"><h2>Shop</h2>'
    '<div class="console-figure" data-figure="shop-orders">{{ section.orders }}</div>'
    "<span>{{ section.label }} over {{ data.days }} days</span></section>"
)
SHOP_WIDE = '<section class="console-wide" id="console-shop-wide">{{ section.first }}</section>'


@pytest.fixture(autouse=True)
def _restore_sections():
    """Every test leaves the registry as the products' ready() made it."""
    saved = sections()
    yield
    for section in sections():
        unregister_section(section.key)
    for section in saved:
        register_section(**{f.name: getattr(section, f.name) for f in fields(section)})


@pytest.fixture
def shop_templates(settings, tmp_path) -> Path:
    """Templates of a section from outside the suite, found through TEMPLATES' DIRS."""
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "card.html").write_text(SHOP_CARD)
    (folder / "wide.html").write_text(SHOP_WIDE)
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    return tmp_path


def register_shop(seen: list[Any], **extra: Any) -> None:
    def figures(window: DashboardWindow) -> dict[str, Any]:
        seen.append((window, in_system_mode(), connection.in_atomic_block))
        return {"orders": 7, "first": window.first.isoformat()}

    def admin_context(site: Any, request: Any, figures: Any) -> dict[str, Any]:
        return {**figures, "label": f"{site.name}/{request.user.username}"}

    register_section(
        "shop",
        order=25,
        figures=figures,
        template="shop/card.html",
        wide_template="shop/wide.html",
        admin_context=admin_context,
        **extra,
    )


# --- the registry -------------------------------------------------------------------------------


def test_each_installed_product_registers_its_section_in_order():
    assert [section.key for section in sections()] == list(KNOWN_SECTIONS)
    for section in sections():
        get_template(section.template)
        assert section.admin_context is not None
    assert get_section("audit").wide_template == "admin/better_audit/dashboard_chart.html"
    assert [get_section(key).figures.__module__ for key in KNOWN_SECTIONS] == [
        f"{app}.console" for app in PRODUCTS
    ]


def test_the_data_keeps_its_keys_in_order(db):
    assert list(dashboard_data()) == ["days", "since", *KNOWN_SECTIONS]


@pytest.mark.parametrize("key", ["days", "since", "", "two words", "shop-orders", None])
def test_a_section_key_must_be_an_identifier_other_than_the_windows(key):
    with pytest.raises(ConsoleConfigurationError, match="not usable"):
        register_section(key, order=1, figures=dict, template="shop/card.html")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"order": "1"}, "order must be an integer"),
        ({"order": True}, "order must be an integer"),
        ({"figures": "not callable"}, "must be callables"),
        ({"admin_context": {}}, "must be callables"),
        ({"template": ""}, "template is required"),
    ],
)
def test_a_section_definition_is_checked(changes, message):
    definition = {"order": 1, "figures": dict, "template": "shop/card.html", **changes}
    with pytest.raises(ConsoleConfigurationError, match=message):
        register_section("shop", **definition)
    assert get_section("shop") is None


def test_a_taken_key_needs_replace():
    register_section("shop", order=1, figures=dict, template="shop/card.html")
    with pytest.raises(ConsoleConfigurationError, match="already registered"):
        register_section("shop", order=2, figures=dict, template="shop/card.html")
    register_section("shop", order=2, figures=dict, template="shop/card.html", replace=True)
    assert get_section("shop").order == 2


# --- dashboard_data -----------------------------------------------------------------------------


def test_a_registered_section_gets_the_window_in_one_system_scope():
    seen: list[Any] = []
    register_shop(seen)
    data = dashboard_data(days=7)
    [(window, system, atomic)] = seen
    today = timezone.now().astimezone(UTC).date()
    assert (window.days, window.first, window.last) == (7, today - timedelta(days=6), today)
    assert window.since.isoformat() == data["since"] and window.using is None
    assert system and atomic
    assert data["shop"] == {"orders": 7, "first": window.first.isoformat()}
    # The suite's sections keep their place; another product's follows them.
    assert list(data) == ["days", "since", *KNOWN_SECTIONS, "shop"]


def test_a_product_that_is_not_installed_gives_none():
    # An app that is not installed never runs its ready(), so its section is never registered.
    unregister_section("mail")
    data = dashboard_data()
    assert data["mail"] is None
    assert data["tenants"] == {"count": 0, "estimated": False}


# --- the admin page -----------------------------------------------------------------------------


def test_a_registered_section_is_shown_in_its_place(admin_client, shop_templates):
    register_shop([])
    response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    content = response.content.decode()
    assert 'data-figure="shop-orders">7<' in content
    assert f"<span>admin/{response.wsgi_request.user.username} over 30 days</span>" in content
    # In the grid of cards between audit (order 20) and webhooks (order 30), its wide part below.
    positions = [
        content.index(f'id="{name}"')
        for name in (
            "console-audit-total",
            "console-shop",
            "console-webhooks",
            "console-audit-chart",
            "console-shop-wide",
        )
    ]
    assert positions == sorted(positions)
    [shop] = [entry for entry in response.context["sections"] if entry["key"] == "shop"]
    assert shop["context"]["orders"] == 7 and "shop" not in response.context


def test_a_section_without_admin_context_shows_its_figures(admin_client, shop_templates):
    register_section(
        "shop", order=99, figures=lambda window: {"orders": 3}, template="shop/card.html"
    )
    content = admin_client.get(DASHBOARD).content.decode()
    assert 'data-figure="shop-orders">3<' in content


def test_a_product_that_is_not_installed_has_no_card(admin_client):
    unregister_section("mail")
    response = admin_client.get(DASHBOARD)
    content = response.content.decode()
    assert 'id="console-mail"' not in content and 'data-figure="mail-total"' not in content
    assert 'id="console-webhooks"' in content and 'id="console-audit-chart"' in content
    assert response.context["mail"] is None


def test_without_sections_the_page_says_there_is_nothing_to_show(admin_client):
    for key in KNOWN_SECTIONS:
        unregister_section(key)
    response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    assert "the console has nothing to show" in response.content.decode()
    assert all(response.context["data"][key] is None for key in KNOWN_SECTIONS)


def test_the_page_loads_each_apps_stylesheet_and_has_no_inline_style(admin_client):
    content = admin_client.get(DASHBOARD).content.decode()
    linked = re.findall(r'<link rel="stylesheet" href="[^"]*/(better_\w+)/admin\.css">', content)
    # The console's cards, and the audit section's chart, which brings its own rules.
    assert {"better_console", "better_audit"} <= set(linked)
    assert "<style" not in content


@pytest.mark.parametrize(
    "app", ["better_tenant", "better_audit", "better_console", "better_webhooks", "better_mail"]
)
def test_an_apps_templates_load_only_the_apps_own_static_files(app):
    # A file of another app would be missing (or, with a manifest storage, an error) wherever
    # that app is not installed.
    for template in (ROOT / app / "templates").rglob("*.html"):
        for name in re.findall(r"{% static '([^']+)' %}", template.read_text()):
            assert name.startswith(f"{app}/"), (template, name)
            assert (ROOT / app / "static" / name).is_file(), (template, name)


# --- the console knows products only through the registry --------------------------------------


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("module", ["dashboard.py", "admin.py"])
def test_the_console_dashboard_imports_no_product(module):
    imported = imported_modules(ROOT / "better_console" / module)
    # better_tenant.shortcuts is the tenancy-neutral API, importable without better_tenant.
    products = {
        name
        for name in imported
        if name.split(".")[0] in PRODUCTS and name != "better_tenant.shortcuts"
    }
    assert products == set()


def test_the_console_dashboard_template_names_no_product_template():
    template = ROOT / "better_console/templates/admin/better_console/dashboard.html"
    assert re.search(r"admin/better_(tenant|audit|webhooks|mail)/", template.read_text()) is None


# --- the sign-in mail ---------------------------------------------------------------------------


def test_the_sign_in_mail_is_declared_by_the_console():
    template = mail_templates.get("console_magic_link")
    assert template.__module__ == "better_console.mail"
    assert importlib.util.find_spec("better_mail.mail") is None


@pytest.fixture
def undiscovered_sign_in_mail(monkeypatch):
    """As where BETTER_MAIL['AUTODISCOVER'] is off: better_console.mail was never imported."""
    from better_console.mail import ConsoleMagicLinkEmail

    mail_templates.unregister(ConsoleMagicLinkEmail.name)
    monkeypatch.delitem(sys.modules, "better_console.mail")
    monkeypatch.delattr(better_console, "mail")
    yield
    mail_templates.register(ConsoleMagicLinkEmail)


def test_the_sign_in_mail_is_sent_without_autodiscovery(
    client, configure, settings, undiscovered_sign_in_mail, django_capture_on_commit_callbacks
):
    settings.BETTER_MAIL = {"ASYNC": False}
    mail.outbox = []
    configure(AUTO_APPROVE=False, MAGIC_LINK={"ALLOWED_EMAILS": "admin@example.com"})
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, "/console/session/init", {"email": "admin@example.com"})
    assert response.status_code == 200, response.content
    [message] = mail.outbox
    assert message.subject == "Your console sign-in code"
    assert "console_magic_link" in mail_templates
