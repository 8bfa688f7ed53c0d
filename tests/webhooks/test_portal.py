"""The webhooks portal through the Django client: who gets in, every page and action, isolation."""

from __future__ import annotations

import re
import time
import uuid
from datetime import timedelta

import pytest
from django.core import checks, signing
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import resolve

from better_tenant import run_as, run_as_system
from better_webhooks.api.views import TEST_EVENT
from better_webhooks.crypto import endpoint_secrets, generate_key
from better_webhooks.endpoints import create_endpoint, disable_endpoint
from better_webhooks.events import get_event
from better_webhooks.exceptions import TenancyNotInstalledError
from better_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from better_webhooks.portal import access, portal_url
from better_webhooks.portal.examples import example_payload
from better_webhooks.sending import send
from tests.support.webhooks import USER_SCHEMA
from tests.testapp.models import Membership

pytestmark = pytest.mark.django_db

KEY = generate_key()
BASE = "/webhooks/portal"
PORTAL_MIDDLEWARE_EXEMPT = ["/admin/", "/static/", "/webhooks/portal/"]


def webhook_admins(request, tenant_id):
    """The host's rule for the portal: members of the tenant whose role is ``admin``.

    Asked inside the tenant's scope, so row-level security limits the lookup to its members.
    """
    user = request.user
    if not user.is_authenticated:
        return False
    return Membership.objects.filter(user_id=user.pk, role="admin").exists()


async def async_webhook_admins(request, tenant_id):
    """``webhook_admins`` written as a coroutine function."""
    user = await request.auser()
    if not user.is_authenticated:
        return False
    return await Membership.objects.filter(user_id=user.pk, role="admin").aexists()


@pytest.fixture(autouse=True)
def _portal(settings):
    settings.BETTER_WEBHOOKS = {
        **settings.BETTER_WEBHOOKS,
        "ENCRYPTION_KEYS": [KEY],
        "CELERY": False,
        "ALLOW_HTTP_LOCALHOST": False,
        "PORTAL_AUTHORIZE": "tests.webhooks.test_portal.webhook_admins",
    }


@pytest.fixture
def exempt(settings):
    """The portal's paths outside the tenant middleware: only a link names the tenant."""
    settings.BETTER_TENANT = {**settings.BETTER_TENANT, "EXEMPT_PATHS": PORTAL_MIDDLEWARE_EXEMPT}


@pytest.fixture
def world(tenant, other_tenant):
    """Each tenant: an endpoint with a failed delivery (one attempt) and a delivered one."""
    made = {}
    for owner in (tenant, other_tenant):
        with run_as(owner):
            endpoint, _ = create_endpoint(f"https://{owner.slug}.example.com/h", ["user.created"])
            payload = {"id": "usr_1", "email": "a@example.com"}
            failed, delivered = send("user.created", payload) + send("user.created", payload)
            WebhookDelivery.objects.filter(pk=failed.pk).update(status="failed", attempts=1)
            WebhookDelivery.objects.filter(pk=delivered.pk).update(status="delivered")
            WebhookDeliveryAttempt.objects.create(
                delivery_id=failed.pk,
                attempt=1,
                url=endpoint.url,
                response_status=500,
                response_body="receiver error",
                duration_ms=12,
                tenant_id=owner.pk,
            )
        made[owner.pk] = {"endpoint": endpoint, "failed": failed, "delivered": delivered}
    return made


@pytest.fixture
def portal(client, tenant, exempt):
    """A browser session that opened tenant's portal link."""
    response = client.get(portal_url(tenant))
    assert response.status_code == 302, response.content
    return client


def member(django_user_model, tenant, role="admin", **fields):
    user = django_user_model.objects.create_user(f"user-{uuid.uuid4().hex[:8]}", **fields)
    with run_as(tenant):
        Membership.objects.create(user=user, role=role)
    return user


def as_member(user, tenant):
    """A client signed in as ``user`` whose requests name ``tenant`` (TenantMiddleware's header)."""
    client = Client(HTTP_X_TENANT_ID=str(tenant.pk))
    client.force_login(user)
    return client


def stored(model, **filters):
    with run_as_system():
        return list(model.objects.filter(**filters))


def text(response):
    return response.content.decode()


# --- getting in: signed links ------------------------------------------------------------------


def test_without_a_link_or_an_authorization_the_portal_refuses(client, exempt, admin_client):
    for who in (client, admin_client):
        response = who.get(f"{BASE}/endpoints/")
        assert response.status_code == 403
        assert "Open the webhooks portal through the link" in text(response)


def test_a_link_opens_its_tenants_portal_for_the_session(client, tenant, world, exempt):
    client.get(f"{BASE}/endpoints/")  # a session exists before the link is opened
    before = client.session.session_key
    link = portal_url(tenant)
    assert link.startswith(f"{BASE}/enter/")
    response = client.get(link)
    assert response.status_code == 302 and response["Location"] == f"{BASE}/endpoints/"
    assert response["Referrer-Policy"] == "no-referrer"
    # As at a login: a session id planted before the link does not inherit the grant.
    assert client.session.session_key != before
    assert client.session[access.SESSION_KEY]["tenant"] == str(tenant.pk)
    page = client.get(f"{BASE}/endpoints/")
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    assert tenant.name in text(page)
    assert world[tenant.pk]["endpoint"].url in text(page)
    assert "example.com/h" in text(page) and text(page).count("example.com/h") == 1


def test_an_expired_link_is_refused(client, tenant, exempt, monkeypatch):
    link = portal_url(tenant, ttl=60)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 61)
    response = client.get(link)
    assert response.status_code == 403
    assert "has expired" in text(response)
    assert access.SESSION_KEY not in client.session


def test_a_link_is_capped_by_the_max_age_setting_when_opened(client, tenant, exempt, settings):
    link = portal_url(tenant)  # valid for an hour
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "PORTAL_LINK_MAX_AGE": 1}
    real = time.time
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: real() + 5)
        response = client.get(link)
    assert response.status_code == 403 and "has expired" in text(response)


def test_an_altered_link_is_refused(client, tenant, other_tenant, exempt):
    token = portal_url(tenant).rstrip("/").rsplit("/", 1)[1]
    payload, rest = token.split(":", 1)
    other = signing.dumps({"tenant": str(other_tenant.pk), "expires": 2**40}, salt="other.salt")
    forged = [
        # The other tenant's id with this link's signature.
        signing.b64_encode(
            signing.b64_decode(payload.encode()).replace(
                str(tenant.pk).encode(), str(other_tenant.pk).encode()
            )
        ).decode()
        + ":"
        + rest,
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        other,  # signed with the project's key, for another purpose
        "not-a-link",
    ]
    for bad in forged:
        response = client.get(f"{BASE}/enter/{bad}/")
        assert response.status_code == 403, bad
        assert "not a valid webhooks portal link" in text(response)
    assert access.SESSION_KEY not in client.session
    assert client.get(f"{BASE}/endpoints/").status_code == 403


def test_the_grant_lasts_the_session_max_age(portal, settings, monkeypatch):
    assert portal.get(f"{BASE}/endpoints/").status_code == 200
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 8 * 3600 + 1)
    response = portal.get(f"{BASE}/endpoints/")
    assert response.status_code == 403
    assert access.SESSION_KEY not in portal.session


def test_a_new_link_replaces_the_grant(portal, tenant, other_tenant, world):
    assert portal.get(portal_url(other_tenant)).status_code == 302
    page = text(portal.get(f"{BASE}/endpoints/"))
    assert world[other_tenant.pk]["endpoint"].url in page
    assert world[tenant.pk]["endpoint"].url not in page


def test_leaving_the_portal_ends_the_grant(portal):
    page = text(portal.get(f"{BASE}/endpoints/"))
    assert "Leave the portal" in page
    response = portal.post(f"{BASE}/exit/")
    assert response.status_code == 200 and "You left" in text(response)
    assert portal.get(f"{BASE}/endpoints/").status_code == 403


def test_portal_url_checks_its_ttl(tenant):
    assert portal_url(tenant, ttl="15min").startswith(f"{BASE}/enter/")
    assert portal_url(tenant.pk, ttl=timedelta(minutes=5))
    for bad in (0, -1, 3601, "2h"):
        with pytest.raises(ValueError, match="PORTAL_LINK_MAX_AGE"):
            portal_url(tenant, ttl=bad)


# --- getting in: PORTAL_AUTHORIZE with the tenant in scope -------------------------------------


def test_portal_authorize_admits_for_the_tenant_in_scope(
    django_user_model, tenant, other_tenant, world
):
    user = member(django_user_model, tenant)
    response = as_member(user, tenant).get(f"{BASE}/endpoints/")
    assert response.status_code == 200
    assert world[tenant.pk]["endpoint"].url in text(response)
    assert "Leave the portal" not in text(response)
    # The same user, naming a tenant they do not administer.
    refused = as_member(user, other_tenant).get(f"{BASE}/endpoints/")
    assert refused.status_code == 403
    assert "may not manage the webhooks of this tenant" in text(refused)


def test_portal_authorize_is_asked_on_every_request(django_user_model, tenant):
    user = member(django_user_model, tenant)
    client = as_member(user, tenant)
    assert client.get(f"{BASE}/endpoints/").status_code == 200
    with run_as(tenant):
        Membership.objects.filter(user=user).update(role="member")
    assert client.get(f"{BASE}/endpoints/").status_code == 403


def test_portal_authorize_refuses_others(django_user_model, tenant, settings):
    plain = member(django_user_model, tenant, role="member")
    assert as_member(plain, tenant).get(f"{BASE}/endpoints/").status_code == 403
    anonymous = Client(HTTP_X_TENANT_ID=str(tenant.pk))
    assert anonymous.get(f"{BASE}/endpoints/").status_code == 403
    # Staff and superusers get nothing for being so.
    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", "x")
    assert as_member(boss, tenant).get(f"{BASE}/endpoints/").status_code == 403
    # Without PORTAL_AUTHORIZE only links open the portal.
    admin = member(django_user_model, tenant)
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "PORTAL_AUTHORIZE": None}
    assert as_member(admin, tenant).get(f"{BASE}/endpoints/").status_code == 403


def test_portal_authorize_may_be_async(django_user_model, tenant, settings):
    path = "tests.webhooks.test_portal.async_webhook_admins"
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "PORTAL_AUTHORIZE": path}
    admin = member(django_user_model, tenant)
    assert as_member(admin, tenant).get(f"{BASE}/endpoints/").status_code == 200
    plain = member(django_user_model, tenant, role="member")
    assert as_member(plain, tenant).get(f"{BASE}/endpoints/").status_code == 403


def test_a_grant_counts_only_for_its_own_tenant_in_scope(client, tenant, other_tenant, settings):
    """With the middleware in front of the portal, a link of A neither opens B nor opens A at B."""
    settings.BETTER_TENANT = {**settings.BETTER_TENANT, "EXEMPT_PATHS": PORTAL_MIDDLEWARE_EXEMPT}
    client.get(portal_url(tenant))
    settings.BETTER_TENANT = {**settings.BETTER_TENANT, "EXEMPT_PATHS": ["/admin/"]}
    assert client.get(f"{BASE}/endpoints/", HTTP_X_TENANT_ID=str(tenant.pk)).status_code == 200
    response = client.get(f"{BASE}/endpoints/", HTTP_X_TENANT_ID=str(other_tenant.pk))
    assert response.status_code == 403
    link = portal_url(tenant)
    wrong_place = client.get(link, HTTP_X_TENANT_ID=str(other_tenant.pk))
    assert wrong_place.status_code == 403
    assert "another tenant" in text(wrong_place)
    assert client.get(link, HTTP_X_TENANT_ID=str(tenant.pk)).status_code == 302


# --- endpoints ---------------------------------------------------------------------------------


def test_create_an_endpoint(portal, tenant):
    form = portal.get(f"{BASE}/endpoints/new/")
    assert form.status_code == 200
    assert 'value="user.created"' in text(form) and 'value="*"' in text(form)
    response = portal.post(
        f"{BASE}/endpoints/new/",
        {"url": "https://hooks.example.com/in", "events": ["user.created"], "description": "CRM"},
    )
    assert response.status_code == 302
    [endpoint] = stored(WebhookEndpoint, url="https://hooks.example.com/in")
    assert response["Location"] == f"{BASE}/endpoints/{endpoint.pk}/"
    assert (endpoint.tenant_id, endpoint.events, endpoint.description) == (
        tenant.pk,
        ["user.created"],
        "CRM",
    )
    detail = portal.get(response["Location"])
    assert "Endpoint created" in text(detail)
    # The secret is not on a page reached by GET.
    assert endpoint_secrets(endpoint)[0] not in text(detail)


@pytest.mark.parametrize(
    "url",
    ["https://127.1/", "http://127.0.0.1:8000/h", "https://localhost/h", "https://10.0.0.1/h"],
)
def test_create_refuses_an_address_the_ssrf_guard_refuses(portal, url):
    response = portal.post(f"{BASE}/endpoints/new/", {"url": url, "events": ["user.created"]})
    assert response.status_code == 200
    errors = re.findall(r'<ul class="errorlist"[^>]*>(.*?)</ul>', text(response), re.S)
    assert errors, text(response)
    assert stored(WebhookEndpoint) == []


def test_create_shows_the_catalogs_and_the_forms_errors(portal):
    unknown = portal.post(
        f"{BASE}/endpoints/new/", {"url": "https://a.example.com/", "events": ["no.such"]}
    )
    assert unknown.status_code == 200 and "Unknown webhook event(s): no.such" in text(unknown)
    empty = portal.post(f"{BASE}/endpoints/new/", {"url": "", "events": []})
    assert text(empty).count("This field is required.") == 2
    assert stored(WebhookEndpoint) == []


def test_create_reports_unconfigured_encryption_as_a_form_error(portal, settings):
    settings.DEBUG = False
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "ENCRYPTION_KEYS": []}
    response = portal.post(
        f"{BASE}/endpoints/new/", {"url": "https://a.example.com/", "events": ["*"]}
    )
    assert response.status_code == 200
    assert "encryption keys are not configured" in text(response)
    assert "ENCRYPTION_KEYS" not in text(response)


def test_secret_actions_report_unconfigured_encryption(portal, tenant, world, settings):
    endpoint = world[tenant.pk]["endpoint"]
    settings.DEBUG = False
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "ENCRYPTION_KEYS": []}
    for action in ("secret", "rotate-secret"):
        response = portal.post(f"{BASE}/endpoints/{endpoint.pk}/{action}/")
        assert response.status_code == 200, action
        assert "encryption keys are not configured" in text(response)
        assert "data-secret" not in text(response)
    assert stored(WebhookEndpoint, pk=endpoint.pk)[0].secrets == endpoint.secrets


def test_edit_an_endpoint(portal, tenant, world):
    endpoint = world[tenant.pk]["endpoint"]
    page = portal.get(f"{BASE}/endpoints/{endpoint.pk}/edit/")
    assert page.status_code == 200 and endpoint.url in text(page)
    refused = portal.post(
        f"{BASE}/endpoints/{endpoint.pk}/edit/", {"url": "https://127.1/", "events": ["*"]}
    )
    assert refused.status_code == 200 and "errorlist" in text(refused)
    response = portal.post(
        f"{BASE}/endpoints/{endpoint.pk}/edit/",
        {"url": "https://new.example.com/h", "events": ["*"], "description": "All of it"},
    )
    assert response.status_code == 302
    [row] = stored(WebhookEndpoint, pk=endpoint.pk)
    assert (row.url, row.events) == ("https://new.example.com/h", ["*"])
    assert row.description == "All of it"


def test_disable_and_enable(portal, tenant, world):
    endpoint = world[tenant.pk]["endpoint"]
    assert portal.post(f"{BASE}/endpoints/{endpoint.pk}/disable/").status_code == 302
    [row] = stored(WebhookEndpoint, pk=endpoint.pk)
    assert (row.status, row.disabled_reason) == ("disabled", "disabled in the webhooks portal")
    assert "Enable" in text(portal.get(f"{BASE}/endpoints/{endpoint.pk}/"))
    assert portal.post(f"{BASE}/endpoints/{endpoint.pk}/enable/").status_code == 302
    [row] = stored(WebhookEndpoint, pk=endpoint.pk)
    assert (row.status, row.consecutive_failures) == ("active", 0)


def test_delete_asks_first(portal, tenant, world):
    endpoint = world[tenant.pk]["endpoint"]
    confirm = portal.get(f"{BASE}/endpoints/{endpoint.pk}/delete/")
    assert confirm.status_code == 200 and "Delete this endpoint?" in text(confirm)
    assert stored(WebhookEndpoint, pk=endpoint.pk)
    response = portal.post(f"{BASE}/endpoints/{endpoint.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == f"{BASE}/endpoints/"
    assert stored(WebhookEndpoint, pk=endpoint.pk) == []
    assert stored(WebhookDelivery, endpoint_id=endpoint.pk) == []


def test_reveal_the_secret_only_in_answer_to_a_post(portal, tenant, world):
    endpoint = world[tenant.pk]["endpoint"]
    [secret] = endpoint_secrets(endpoint)
    assert secret not in text(portal.get(f"{BASE}/endpoints/{endpoint.pk}/"))
    assert portal.get(f"{BASE}/endpoints/{endpoint.pk}/secret/").status_code == 302
    revealed = portal.post(f"{BASE}/endpoints/{endpoint.pk}/secret/")
    assert revealed.status_code == 200 and secret in text(revealed)
    assert "no-store" in revealed["Cache-Control"]


def test_rotate_the_secret(portal, tenant, world):
    endpoint = world[tenant.pk]["endpoint"]
    [old] = endpoint_secrets(endpoint)
    response = portal.post(f"{BASE}/endpoints/{endpoint.pk}/rotate-secret/")
    assert response.status_code == 302
    [row] = stored(WebhookEndpoint, pk=endpoint.pk)
    new, previous = endpoint_secrets(row)
    assert previous == old and new != old
    assert "previous secret stays valid until" in text(portal.get(response["Location"]))
    portal.post(f"{BASE}/endpoints/{endpoint.pk}/rotate-secret/", {"expire_now": "on"})
    [row] = stored(WebhookEndpoint, pk=endpoint.pk)
    [newest] = endpoint_secrets(row)
    assert newest not in (old, new)


def test_send_a_test_event(portal, tenant, world):
    endpoint = world[tenant.pk]["endpoint"]
    response = portal.post(f"{BASE}/endpoints/{endpoint.pk}/test/", {"payload": ""})
    assert response.status_code == 302
    [delivery] = stored(WebhookDelivery, endpoint_id=endpoint.pk, event=TEST_EVENT)
    assert response["Location"] == f"{BASE}/deliveries/{delivery.pk}/"
    assert delivery.tenant_id == tenant.pk
    assert delivery.payload["endpointId"] == str(endpoint.pk)
    page = portal.get(response["Location"])
    assert "Test event queued" in text(page) and "No attempt yet" in text(page)
    custom = portal.post(
        f"{BASE}/endpoints/{endpoint.pk}/test/", {"payload": '{"message": "hello"}'}
    )
    assert custom.status_code == 302
    assert {d.payload.get("message") for d in stored(WebhookDelivery, event=TEST_EVENT)} == {
        "This is a test event.",
        "hello",
    }


def test_test_event_errors_are_form_errors(portal, tenant, world, settings):
    endpoint = world[tenant.pk]["endpoint"]
    url = f"{BASE}/endpoints/{endpoint.pk}/test/"
    not_json = portal.post(url, {"payload": "{nope"})
    assert not_json.status_code == 200 and "This is not JSON" in text(not_json)
    not_object = portal.post(url, {"payload": "[1]"})
    assert "Give a JSON object" in text(not_object)
    # The catalog's schema of the test event, checked by send().
    invalid = portal.post(url, {"payload": '{"message": 5}'})
    assert invalid.status_code == 200 and "message: must be of type string" in text(invalid)
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "MAX_PAYLOAD_BYTES": 100}
    too_large = portal.post(url, {"payload": '{"message": "%s"}' % ("x" * 200)})
    assert too_large.status_code == 200 and "over the limit of 100" in text(too_large)
    disable_endpoint(endpoint)
    disabled = portal.post(url, {"payload": ""})
    assert disabled.status_code == 200 and "The endpoint is disabled" in text(disabled)
    assert stored(WebhookDelivery, event=TEST_EVENT) == []


# --- the catalog -------------------------------------------------------------------------------


def test_the_catalog_shows_descriptions_schemas_and_examples(portal):
    page = portal.get(f"{BASE}/events/")
    assert page.status_code == 200
    body = text(page)
    assert 'id="event-user.created"' in body and "A user was created" in body
    assert 'id="event-webhook.test"' in body
    assert "&quot;additionalProperties&quot;: false" in body
    assert "&quot;email&quot;: &quot;email&quot;" in body


def test_examples_match_their_schemas():
    example = example_payload(USER_SCHEMA)
    assert set(example) == {"id", "email", "age", "tags", "plan"}
    get_event("user.created").validate(example)
    assert example_payload(None) == {}
    nested = {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "amount": {"type": "integer", "minimum": 5},
            "note": {"type": ["string", "null"], "maxLength": 2},
            "owner": {"$ref": "#/$defs/Owner"},
            "either": {"anyOf": [{"type": "null"}, {"type": "boolean"}]},
            "fixed": {"const": "v1"},
        },
        "$defs": {"Owner": {"type": "object", "properties": {"id": {"type": "string"}}}},
    }
    assert example_payload(nested) == {
        "when": "2025-01-31T12:00:00Z",
        "amount": 5,
        "note": "no",
        "owner": {"id": "id"},
        "either": True,
        "fixed": "v1",
    }
    looping = {"type": "object", "properties": {"next": {"$ref": "#"}}}
    assert isinstance(example_payload(looping), dict)


# --- the delivery log --------------------------------------------------------------------------


def test_the_delivery_log_filters_and_pages(portal, tenant, other_tenant, world):
    mine, theirs = world[tenant.pk], world[other_tenant.pk]
    with CaptureQueriesContext(connection) as queries:
        page = text(portal.get(f"{BASE}/deliveries/"))
    # The rows come with their endpoints, without the payloads they do not show.
    [rows] = [q["sql"] for q in queries if q["sql"].startswith('SELECT "webhook_deliveries"')]
    assert '"webhook_endpoints"."url"' in rows and '"webhook_messages"."payload"' not in rows
    assert str(mine["failed"].pk) in page and str(mine["delivered"].pk) in page
    assert str(theirs["failed"].pk) not in page and theirs["endpoint"].url not in page
    failed = text(portal.get(f"{BASE}/deliveries/?status=failed"))
    assert str(mine["failed"].pk) in failed and str(mine["delivered"].pk) not in failed
    by_endpoint = text(portal.get(f"{BASE}/deliveries/?endpoint={mine['endpoint'].pk}"))
    assert str(mine["failed"].pk) in by_endpoint
    # Another tenant's endpoint is no choice here: an error, and no rows.
    other = portal.get(f"{BASE}/deliveries/?endpoint={theirs['endpoint'].pk}")
    assert other.status_code == 200 and "errorlist" in text(other)
    assert str(theirs["failed"].pk) not in text(other) and str(mine["failed"].pk) not in text(other)
    first = portal.get(f"{BASE}/deliveries/?limit=1")
    older = re.search(r'<a href="([^"]+)" rel="next">Older</a>', text(first))
    assert older, text(first)
    second = portal.get(older.group(1).replace("&amp;", "&"))
    ids = {str(mine["failed"].pk), str(mine["delivered"].pk)}
    shown = [i for i in ids if i in text(first)] + [i for i in ids if i in text(second)]
    assert sorted(shown) == sorted(ids)
    assert portal.get(f"{BASE}/deliveries/?cursor=forged").status_code == 404


def test_a_delivery_shows_its_attempts_and_replays(portal, tenant, world):
    failed = world[tenant.pk]["failed"]
    page = portal.get(f"{BASE}/deliveries/{failed.pk}/")
    assert page.status_code == 200
    assert 'data-attempt="1"' in text(page) and "HTTP 500" in text(page)
    assert "receiver error" in text(page) and "usr_1" in text(page)
    response = portal.post(f"{BASE}/deliveries/{failed.pk}/replay/")
    assert response.status_code == 302
    [row] = stored(WebhookDelivery, pk=failed.pk)
    assert (row.status, row.max_attempts) == ("pending", 1 + 5)
    again = portal.post(f"{BASE}/deliveries/{failed.pk}/replay/", follow=True)
    assert "queued already" in text(again)
    assert "Replay</button>" not in text(again)


# --- every change is a POST with a CSRF token --------------------------------------------------


def test_changes_need_a_post_with_a_csrf_token(client, tenant, world, exempt):
    strict = Client(enforce_csrf_checks=True)
    assert strict.get(portal_url(tenant)).status_code == 302
    endpoint, failed = world[tenant.pk]["endpoint"], world[tenant.pk]["failed"]
    posts = [
        "/endpoints/new/",
        f"/endpoints/{endpoint.pk}/edit/",
        f"/endpoints/{endpoint.pk}/disable/",
        f"/endpoints/{endpoint.pk}/rotate-secret/",
        f"/endpoints/{endpoint.pk}/secret/",
        f"/endpoints/{endpoint.pk}/test/",
        f"/endpoints/{endpoint.pk}/delete/",
        f"/deliveries/{failed.pk}/replay/",
        "/exit/",
    ]
    for path in posts:
        assert strict.post(BASE + path, {"url": "https://x.example.com/"}).status_code == 403, path
    for path in posts[2:4] + posts[5:6] + posts[7:8]:
        assert strict.get(BASE + path).status_code == 405, path
    [row] = stored(WebhookEndpoint, pk=endpoint.pk)
    assert row.status == "active" and row.secrets == endpoint.secrets
    assert stored(WebhookDelivery, pk=failed.pk)[0].status == "failed"
    # With the token the form's POST goes through.
    form = strict.get(f"{BASE}/endpoints/{endpoint.pk}/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', text(form)).group(1)
    done = strict.post(f"{BASE}/endpoints/{endpoint.pk}/disable/", {"csrfmiddlewaretoken": token})
    assert done.status_code == 302


# --- isolation ---------------------------------------------------------------------------------


def test_another_tenants_objects_are_not_found(portal, tenant, other_tenant, world):
    theirs = world[other_tenant.pk]
    endpoint_id, delivery_id = theirs["endpoint"].pk, theirs["failed"].pk
    edit = {"url": "https://x.example.com/", "events": "*"}
    requests = [
        ("get", f"/endpoints/{endpoint_id}/", {}),
        ("get", f"/endpoints/{endpoint_id}/edit/", {}),
        ("post", f"/endpoints/{endpoint_id}/edit/", edit),
        ("get", f"/endpoints/{endpoint_id}/delete/", {}),
        ("post", f"/endpoints/{endpoint_id}/delete/", {}),
        ("post", f"/endpoints/{endpoint_id}/disable/", {}),
        ("post", f"/endpoints/{endpoint_id}/secret/", {}),
        ("post", f"/endpoints/{endpoint_id}/rotate-secret/", {}),
        ("post", f"/endpoints/{endpoint_id}/test/", {}),
        ("get", f"/deliveries/{delivery_id}/", {}),
        ("post", f"/deliveries/{delivery_id}/replay/", {}),
    ]
    [secret] = endpoint_secrets(theirs["endpoint"])
    for method, path, data in requests:
        response = getattr(portal, method)(BASE + path, data)
        assert response.status_code == 404, path
        assert secret not in text(response)
    [row] = stored(WebhookEndpoint, pk=endpoint_id)
    assert (row.url, row.status, row.secrets) == (
        theirs["endpoint"].url,
        "active",
        theirs["endpoint"].secrets,
    )
    assert stored(WebhookDelivery, pk=delivery_id)[0].status == "failed"
    assert stored(WebhookDelivery, endpoint_id=endpoint_id, event=TEST_EVENT) == []


def test_row_level_security_decides_what_the_portal_sees(portal, tenant, world):
    with CaptureQueriesContext(connection) as queries:
        assert portal.get(f"{BASE}/endpoints/").status_code == 200
        assert portal.get(f"{BASE}/deliveries/").status_code == 200
    selects = [q["sql"] for q in queries if 'FROM "webhook_' in q["sql"]]
    assert selects and all('tenant_id" =' not in sql for sql in selects)


def test_the_portal_narrows_to_its_tenant_inside_system_mode(tenant, world):
    """A middleware that opens system mode (for staff, say) does not widen the portal."""
    request = RequestFactory().get(f"{BASE}/endpoints/")
    request.session = {access.SESSION_KEY: {"tenant": str(tenant.pk), "until": time.time() + 60}}
    request.user = None
    request.resolver_match = resolve(f"{BASE}/endpoints/")
    request._dont_enforce_csrf_checks = True
    with run_as_system():
        response = request.resolver_match.func(request)
    body = response.content.decode()
    assert response.status_code == 200
    assert body.count('data-endpoint="') == 1
    assert world[tenant.pk]["endpoint"].url in body


# --- configuration -----------------------------------------------------------------------------


def test_checks_report_a_portal_without_sessions(settings):
    from better_webhooks.checks import check_portal

    assert check_portal() == []
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "SessionMiddleware" not in m]
    [warning] = check_portal()
    assert (warning.id, warning.level) == ("better_webhooks.W004", checks.WARNING)


def test_bad_portal_settings_are_check_errors(settings):
    from better_webhooks.checks import check_configuration

    settings.BETTER_WEBHOOKS = {
        **settings.BETTER_WEBHOOKS,
        "PORTAL_AUTHORIZE": "no.such.callable",
        "PORTAL_LINK_MAX_AGE": "soon",
        "PORTAL_SESSION_MAX_AGE": 0,
    }
    ids = sorted(m.id for m in check_configuration() if "PORTAL" in m.msg)
    assert ids == ["better_webhooks.E003", "better_webhooks.E003", "better_webhooks.E008"]


def test_without_tenancy_the_portal_answers_503(client, tenant, monkeypatch, exempt):
    link = portal_url(tenant)
    monkeypatch.setattr("better_tenant.shortcuts.tenancy_installed", lambda: False)
    for path in (link, f"{BASE}/endpoints/"):
        response = client.get(path)
        assert response.status_code == 503 and "better_webhooks.E009" in text(response)
    with pytest.raises(TenancyNotInstalledError):
        portal_url(tenant)
