"""The webhooks portal without better_tenant: a check error, and a 503 instead of any page."""

from __future__ import annotations

import uuid

import pytest
from django.core import checks

from better_webhooks.checks import check_portal
from better_webhooks.exceptions import TenancyNotInstalledError
from better_webhooks.portal import portal_url


def test_not_mounted_nothing_is_reported():
    assert check_portal() == []


@pytest.mark.urls("tests.projects.no_tenant.portal_urls")
def test_mounted_the_check_reports_e009():
    [error] = check_portal()
    assert (error.id, error.level) == ("better_webhooks.E009", checks.ERROR)
    assert "better_tenant is not installed" in error.msg
    assert error.id in {message.id for message in checks.run_checks()}


@pytest.mark.urls("tests.projects.no_tenant.portal_urls")
@pytest.mark.django_db
@pytest.mark.parametrize("path", ["", "endpoints/", "events/", "deliveries/", "enter/x:y:z/"])
def test_mounted_every_page_answers_503(client, path):
    response = client.get(f"/webhooks/portal/{path}")
    assert response.status_code == 503
    assert "needs better_tenant" in response.content.decode()


def test_links_are_refused():
    with pytest.raises(TenancyNotInstalledError):
        portal_url(uuid.uuid4())
