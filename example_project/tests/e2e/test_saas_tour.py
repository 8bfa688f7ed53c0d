"""``manage.py demo_data`` and ``manage.py demo_tour`` against a live server and its database."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from better_tenant import run_as
from better_tenant.api import get_tenant_by_slug
from better_webhooks.models import WebhookEndpoint
from example_project.projects.models import Project, ReceivedWebhook
from example_project.projects.testing import use_saas_settings


@pytest.fixture
def demo_server(transactional_db, settings, live_server):
    use_saas_settings(settings)
    return live_server


def news_removed(output):
    return [
        line
        for line in output.splitlines()
        if "created now" not in line and "nothing new" not in line
    ]


def run(*args, **options):
    out = io.StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


def test_demo_data_is_idempotent_and_says_what_to_open(demo_server):
    first = run("demo_data", url=demo_server.url)
    assert "✓ Acme (acme): owner alice@acme.test, 2 projects, 3 tasks, webhooks to " in first
    assert f"{demo_server.url}/hooks/globex" in first
    assert "created now: tenant acme, user alice@acme.test" in first
    assert "Password of alice@acme.test and bob@globex.test: demo-password" in first
    assert f"the admin at {demo_server.url}/admin/" in first
    assert f"{demo_server.url}/api/auth/token" in first
    # DEBUG is off in tests: no admin/admin superuser.
    assert "no superuser: DEBUG is off" in first
    second = run("demo_data", url=demo_server.url)
    assert "nothing new: everything was there already" in second
    assert news_removed(second) == news_removed(first)
    with run_as(get_tenant_by_slug("acme")):
        assert Project.objects.count() == 2
        assert WebhookEndpoint.objects.count() == 1


def test_demo_data_refuses_a_url_that_is_not_a_server(demo_server):
    with pytest.raises(CommandError, match="--url"):
        run("demo_data", url="127.0.0.1:8000")


def test_the_tour_checks_every_claim(demo_server):
    run("demo_data", url=demo_server.url)
    out = run("demo_tour")
    assert out.rstrip().endswith("demo_tour: all 5 steps hold")
    assert "✗" not in out
    assert "→ 403 TENANT_MISMATCH" in out and "→ 403 NOT_A_MEMBER" in out
    assert f"the receiver at {demo_server.url.rstrip('/')} is the running server" in out
    assert "→ 401 INVALID_SIGNATURE" in out
    assert "redacted ['password']" in out
    assert ReceivedWebhook.objects.filter(inbox__slug="acme", event="project.created").exists()


def test_the_tour_fails_when_a_claim_does_not_hold(demo_server):
    run("demo_data", url=demo_server.url)
    with run_as(get_tenant_by_slug("acme")):
        WebhookEndpoint.objects.update(status="disabled")
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"1 of 5 steps failed: project\.created reaches"):
        call_command("demo_tour", stdout=out)
    assert "✗ claim failed: no project.created delivery was written" in out.getvalue()


def test_the_tour_needs_the_demo_data(demo_server):
    with pytest.raises(CommandError, match="demo_data"):
        run("demo_tour")
