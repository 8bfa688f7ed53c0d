"""The admin in a real browser: log in, the console dashboard, and each app's admin pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from tests.console.test_admin_console import EXPECTED_FIGURES, seed_console_data
from tests.support.browser import login

CHANGELISTS = [
    ("better_tenant_tenant", "Select tenant to change", "acme"),
    ("better_audit_auditlog", "Select audit log entry to view", "projects"),
    ("better_webhooks_webhookendpoint", "Select webhook endpoint to change", "acme.example.com"),
    ("better_webhooks_webhookdelivery", "Select webhook delivery to view", "order.created"),
    ("better_mail_maillog", "Select mail to view", "ada@example.com"),
    ("better_console_consolesession", "Select console session to view", None),
    ("better_console_magiclink", "Select console magic link to view", None),
]


@pytest.fixture
def seeded(transactional_db: None) -> dict[str, Any]:
    return seed_console_data()


def test_login_form_refuses_a_wrong_password(page, superuser):
    with pytest.raises(AssertionError, match="refused"):
        login(page, superuser.get_username(), "not-the-password")
    assert "/admin/login/" in page.url


def test_dashboard_in_the_browser(admin_page, seeded, server_errors):
    page = admin_page
    # Reached from the index as a person would: Console > Dashboard.
    page.click(f'#content-main a[href="{reverse("admin:better_console_dashboard")}"]')
    page.wait_for_load_state()
    assert page.locator("#content h1").inner_text() == "Console dashboard"
    for name in ("tenants", "audit-events", "webhook-success-rate", "mail-bounced"):
        shown = page.locator(f'[data-figure="{name}"]').inner_text().strip()
        assert shown == EXPECTED_FIGURES[name], name
    chart = page.locator("#console-audit-chart svg")
    assert chart.count() == 1 and chart.locator("rect").count() == 30
    box = chart.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 10
    # The tallest bar is today's three events: drawn, not only present in the markup.
    heights = [
        float(h)
        for h in chart.locator("rect").evaluate_all("r => r.map(e => e.getAttribute('height'))")
    ]
    assert heights[-1] == max(heights) > 0
    # A filtered link opens the failed deliveries.
    page.click('#console-webhooks a:text-is("Failed")')
    page.wait_for_load_state()
    assert "status__exact=failed" in page.url
    assert page.locator("#result_list tbody tr").count() == 2
    assert server_errors == []


@pytest.mark.parametrize(("name", "title", "row_text"), CHANGELISTS)
def test_each_apps_changelist_loads(admin_page, seeded, server_errors, name, title, row_text):
    page = admin_page
    response = page.goto(reverse(f"admin:{name}_changelist"))
    assert response is not None and response.status == 200
    assert page.locator("#content h1").inner_text() == title
    assert page.title().startswith(title)
    if row_text is not None:
        assert row_text in page.locator("#result_list").inner_text()
    assert server_errors == []
