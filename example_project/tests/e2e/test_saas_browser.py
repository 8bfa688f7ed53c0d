"""The example SaaS walked through in a real browser: admin, both tenants' rows, console."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from better_tenant import run_as
from example_project.projects import demo
from example_project.projects.models import Project, Task
from example_project.projects.testing import use_saas_settings
from tests.support.browser import login


@pytest.fixture
def seeded(transactional_db: None, settings: Any) -> Any:
    use_saas_settings(settings)
    return demo.seed("http://127.0.0.1:9/hooks")


def test_walk_through_the_saas_admin(admin_page, seeded, server_errors):
    page = admin_page
    # The index lists the example's models beside the apps'.
    page.click('#content-main a[href="/admin/projects/project/"]')
    page.wait_for_load_state()
    rows = page.locator("#result_list").inner_text()
    # The admin is an operator's view: it shows every tenant's projects.
    assert "Rocket skates" in rows and "Hammock district" in rows

    # A project's page shows its tasks inline; adding one saves it in the project's tenant.
    page.click('#result_list a:text-is("Rocket skates")')
    page.wait_for_load_state()
    assert "Order the rockets" in page.locator("#tasks-group").inner_text()
    page.click("#tasks-group .add-row a")
    page.locator('#tasks-group input[name$="-title"]:not([name*="__prefix__"])').last.fill(
        "Paint it red"
    )
    with page.expect_navigation():
        page.click('input[name="_save"]')
    assert "was changed successfully" in page.locator(".messagelist").inner_text()
    acme = seeded.tenants["acme"]
    with run_as(acme):
        task = Task.objects.get(title="Paint it red")
        assert task.project.name == "Rocket skates" and task.tenant_id == acme.pk
    with run_as(seeded.tenants["globex"]):
        assert not Task.objects.filter(title="Paint it red").exists()

    # The audit trail recorded that change, and the console dashboard counts both tenants.
    page.goto(reverse("admin:better_audit_auditlog_changelist") + "?table_name=tasks")
    assert "tasks" in page.locator("#result_list").inner_text()
    page.goto(reverse("admin:better_console_dashboard"))
    assert page.locator('[data-figure="tenants"]').inner_text().strip() == "2"

    # Memberships: one owner per tenant.
    page.goto("/admin/projects/membership/")
    members = page.locator("#result_list").inner_text()
    assert "alice@acme.test" in members and "bob@globex.test" in members
    assert server_errors == []


def test_a_tenant_user_is_not_let_into_the_admin(page, seeded):
    """alice is a customer of the SaaS, not staff: the admin refuses her password."""
    with pytest.raises(AssertionError, match="refused"):
        login(page, "alice@acme.test", demo.DEMO_PASSWORD)
    assert Project.objects.count() == 0  # outside any tenant RLS shows nothing
