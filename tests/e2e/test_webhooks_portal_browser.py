"""The webhooks portal in Chromium with JavaScript off: a tenant's user, from link to replay."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks import Webhook

from better_tenant import run_as
from better_tenant.api import create_tenant
from better_webhooks.endpoints import create_endpoint
from better_webhooks.events import register_event, unregister_event
from better_webhooks.portal import portal_url
from better_webhooks.sending import send
from tests.support.browser import TIMEOUT_MS
from tests.support.webhooks import run_worker_until_idle

WIDTH = 1280
# A long path, so that the pages must wrap a URL rather than widen.
HOOK_PATH = "/hooks/orders/" + "x" * 120
ORDER_SCHEMA = {
    "type": "object",
    "properties": {"number": {"type": "string"}, "total": {"type": "integer", "minimum": 0}},
    "required": ["number"],
}


@pytest.fixture
def portal_settings(settings: Any) -> None:
    # Links name the tenant: the portal's paths are outside the tenant middleware's header.
    settings.BETTER_TENANT = {
        **settings.BETTER_TENANT,
        "EXEMPT_PATHS": ["/admin/", "/static/", "/webhooks/portal/"],
    }
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "ALLOW_HTTP_LOCALHOST": True}
    register_event("order.created", "An order was placed.", ORDER_SCHEMA)
    yield
    unregister_event("order.created")


@pytest.fixture
def tenants(transactional_db: None, portal_settings: None) -> dict[str, Any]:
    """Tenant A, and tenant B with an endpoint and a delivery of its own."""
    suffix = os.urandom(3).hex()
    a = create_tenant(f"Acme {suffix}", f"acme-{suffix}")
    b = create_tenant(f"Beta {suffix}", f"beta-{suffix}")
    with run_as(b):
        endpoint, _ = create_endpoint("https://beta.example.com/hook", ["order.created"])
        [delivery] = send("order.created", {"number": "B-1"})
    return {"a": a, "b": b, "b_endpoint": endpoint, "b_delivery": delivery}


@pytest.fixture
def page(browser: Any, live_server: Any, server_errors: list[str]) -> Iterator[Any]:
    """A page with JavaScript off: the portal works with plain links and forms."""
    context = browser.new_context(
        base_url=live_server.url,
        java_script_enabled=False,
        viewport={"width": WIDTH, "height": 900},
    )
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    tab.on(
        "response",
        lambda response: (
            server_errors.append(f"{response.status} {response.url}")
            if response.status >= 500
            else None
        ),
    )
    try:
        yield tab
    finally:
        context.close()


def fits(page: Any) -> None:
    """The page has no horizontal scroll at its width."""
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= WIDTH, f"{page.url} is {width}px wide at {WIDTH}px"


def submit(page: Any, selector: str) -> None:
    with page.expect_navigation():
        page.click(selector)


def verified(request: Any, secret: str) -> dict[str, Any]:
    """The delivery as the standardwebhooks package reads it, after verifying its signature."""
    headers = {key.lower(): value for key, value in request.headers.items()}
    return Webhook(secret).verify(request.body, headers)


def test_a_tenant_user_manages_webhooks_in_the_portal(page, tenants, receiver, server_errors):
    a, b = tenants["a"], tenants["b"]

    # The application hands its user a signed link; opening it lands on the endpoint list.
    page.goto(portal_url(a))
    assert page.url.endswith("/webhooks/portal/endpoints/")
    assert page.locator(".bwp-tenant").inner_text() == a.name
    assert "No endpoints yet" in page.locator("main").inner_text()
    fits(page)

    # Create an endpoint at the loopback receiver.
    submit(page, "text=Add endpoint")
    fits(page)
    page.fill("input[name=url]", receiver.url(HOOK_PATH))
    page.check("input[name=events][value='order.created']")
    page.fill("textarea[name=description]", "Orders to the warehouse")
    submit(page, "button:text-is('Create endpoint')")
    assert "Endpoint created" in page.locator(".bwp-messages").inner_text()
    assert page.locator("h1").inner_text() == receiver.url(HOOK_PATH)
    endpoint_url = page.url
    fits(page)

    # The secret is shown only after the POST of "Reveal secret".
    assert page.locator("[data-secret]").count() == 0
    submit(page, "button:text-is('Reveal secret')")
    secret = page.locator("[data-secret]").first.inner_text()
    assert secret.startswith("whsec_")
    fits(page)

    # A test event, delivered by the worker and verified by the receiver.
    page.goto(endpoint_url)
    submit(page, "button:text-is('Send test event')")
    assert "Test event queued" in page.locator(".bwp-messages").inner_text()
    assert page.locator("[data-attempt]").count() == 0
    delivery_url = page.url
    run_worker_until_idle()
    [first] = receiver.requests
    assert first.path == HOOK_PATH
    message = verified(first, secret)
    assert message["type"] == "webhook.test"
    assert message["data"]["endpointId"] in endpoint_url

    page.reload()
    assert page.locator(".bwp-status").first.inner_text() == "delivered"
    assert page.locator("[data-attempt]").count() == 1
    assert page.locator("[data-attempt='1'] [data-response-status]").inner_text() == "HTTP 200"
    fits(page)

    # Replay from the delivery log: the same message goes out again, and a second attempt shows.
    page.click("nav >> text=Delivery log")
    page.wait_for_load_state()
    row = page.locator("#deliveries tbody tr")
    assert row.count() == 1 and "webhook.test" in row.inner_text()
    fits(page)
    page.select_option("select[name=status]", "delivered")
    submit(page, "button:text-is('Filter')")
    assert page.locator("#deliveries tbody tr").count() == 1
    submit(page, "#deliveries tbody tr a")
    assert page.url == delivery_url
    submit(page, "button:text-is('Replay')")
    assert "Delivery queued again" in page.locator(".bwp-messages").inner_text()
    run_worker_until_idle()
    second = receiver.requests[1]
    assert verified(second, secret) == message
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    page.reload()
    assert page.locator("[data-attempt]").count() == 2
    assert page.locator("[data-attempt='2'] [data-response-status]").inner_text() == "HTTP 200"
    page.click("[data-attempt='2'] summary")
    assert "webhook-signature" in page.locator("[data-attempt='2'] details").inner_text()
    fits(page)

    # The catalog: the application's event, its schema and an example.
    page.click("nav >> text=Event catalog")
    page.wait_for_load_state()
    example = page.locator("#event-order\\.created [data-example]").inner_text()
    assert json.loads(example) == {"number": "number", "total": 0}
    fits(page)

    # Tenant B's endpoint and delivery do not exist for A's session.
    for path in (
        f"/webhooks/portal/endpoints/{tenants['b_endpoint'].pk}/",
        f"/webhooks/portal/deliveries/{tenants['b_delivery'].pk}/",
    ):
        response = page.goto(path)
        assert response is not None and response.status == 404, path
    page.goto("/webhooks/portal/deliveries/")
    assert "beta.example.com" not in page.locator("main").inner_text()
    assert b.name not in page.content()
    assert server_errors == []
