"""BETTER_TENANT["AUTHORIZE"]: resolving a tenant is not authorizing the caller to use it."""

from __future__ import annotations

import uuid

import jwt
import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.http import HttpRequest
from django.test import AsyncClient, Client, override_settings

from better_tenant import checks, get_tenant_id, run_as
from better_tenant.authorization import Membership, membership
from better_tenant.errors import TenantForbidden
from better_tenant.middleware import TenantMiddleware
from tests.testapp.models import Membership as MembershipRow
from tests.testapp.models import Note

pytestmark = [pytest.mark.urls("tests.testapp.urls"), pytest.mark.django_db]

# The test memberships: a tenant table under row-level security.
members = membership("testapp.Membership", user_field="user", tenant_field="tenant")
BASE = {
    "HEADER": "X-Tenant-ID",
    "PATH": "/t/:tenantId/*",
    "EXEMPT_PATHS": ["/public/"],
    "AUTHORIZE": "tests.tenant.test_authorize.members",
}
SECRET = "authorize-secret-0123456789-0123456789-abc"
SEEN: list[dict] = []


# --- authorizers used through their dotted paths -------------------------------------------------


def record_scope(request: HttpRequest, tenant_id: uuid.UUID) -> bool:
    """Allows everyone, noting what the check could see."""
    SEEN.append(
        {
            "tenant_id": tenant_id,
            "scope": get_tenant_id(),
            "request_tenant_id": request.tenant_id,
            "notes": sorted(Note.objects.values_list("title", flat=True)),
            "in_atomic": connection.in_atomic_block,
        }
    )
    return True


async def async_members(request: HttpRequest, tenant_id: uuid.UUID) -> bool:
    """Members only, with the async ORM and no tenant filter: row-level security is the filter."""
    user = await request.auser()
    if not user.is_authenticated:
        return False
    SEEN.append({"scope": get_tenant_id()})
    return await MembershipRow.objects.filter(user_id=user.pk).aexists()


class AsyncCallable:
    """A callable object whose ``__call__`` is async (not detected as a coroutine function)."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer

    async def __call__(self, request: HttpRequest, tenant_id: uuid.UUID) -> bool:
        return self.answer


async_yes = AsyncCallable(True)
async_no = AsyncCallable(False)


def returns_none(request, tenant_id):
    return None


def returns_one(request, tenant_id):
    return 1


def returns_text(request, tenant_id):
    return "yes"


def returns_a_row(request, tenant_id):
    return MembershipRow.objects.first()


def refuses_with_a_reason(request, tenant_id):
    raise TenantForbidden("Your plan does not include this workspace.")


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def configure(settings):
    settings.BETTER_TENANT = dict(BASE)
    settings.MIDDLEWARE = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "better_tenant.middleware.TenantMiddleware",
    ]
    SEEN.clear()


def configure_tenant(settings, **changes):
    settings.BETTER_TENANT = {**BASE, **changes}


def user(name: str, *tenants, active: bool = True):
    account = get_user_model().objects.create_user(
        f"{name}-{uuid.uuid4().hex[:6]}", f"{name}@example.com", "pw", is_active=active
    )
    for tenant in tenants:
        with run_as(tenant):
            MembershipRow.objects.create(user=account)
    return account


@pytest.fixture
def alice(acme):
    return user("alice", acme)


def logged_in(account, client_class=Client):
    client = client_class()
    client.force_login(account)
    return client


def assert_sees(response, tenant):
    assert response.status_code == 200, response.content
    assert response.json()["tenant_id"] == str(tenant.pk)


def assert_forbidden(response, message: str | None = None):
    assert response.status_code == 403, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "code"}
    assert body["code"] == "TENANT_FORBIDDEN"
    if message is not None:
        assert body["error"] == message
    return body


# --- the membership check ------------------------------------------------------------------------


def test_a_member_gets_in_and_a_member_of_another_tenant_does_not(acme, globex, alice):
    client = logged_in(alice)
    assert_sees(client.get("/notes", headers={"X-Tenant-ID": acme.slug}), acme)
    assert_sees(client.get(f"/t/{acme.pk}/notes"), acme)
    body = assert_forbidden(client.get("/notes", headers={"X-Tenant-ID": globex.slug}))
    assert "member" in body["error"]
    assert_forbidden(client.get(f"/t/{globex.slug}/notes"))


def test_anonymous_and_inactive_users_are_refused(acme):
    assert_forbidden(Client().get("/notes", headers={"X-Tenant-ID": acme.slug}))
    dormant = user("dave", acme, active=False)
    client = Client()
    client.force_login(dormant)
    assert_forbidden(client.get("/notes", headers={"X-Tenant-ID": acme.slug}))


def test_membership_on_async_views(acme, globex, alice):
    client = logged_in(alice, AsyncClient)
    get = async_to_sync(client.get)
    assert_sees(get("/async/notes", headers={"X-Tenant-ID": acme.slug}), acme)
    assert_forbidden(get("/async/notes", headers={"X-Tenant-ID": globex.slug}))
    assert_forbidden(
        async_to_sync(AsyncClient().get)("/async/notes", headers={"X-Tenant-ID": acme.slug})
    )


def test_membership_given_as_the_object_itself(settings, acme, globex, alice):
    configure_tenant(settings, AUTHORIZE=membership(MembershipRow))
    client = logged_in(alice)
    assert_sees(client.get("/notes", headers={"X-Tenant-ID": acme.slug}), acme)
    assert_forbidden(client.get("/notes", headers={"X-Tenant-ID": globex.slug}))


def test_tenant_required_authorizes_too(acme, globex, alice):
    client = logged_in(alice)
    assert_sees(client.get("/public/decorated", headers={"X-Tenant-ID": acme.slug}), acme)
    assert_forbidden(client.get("/public/decorated", headers={"X-Tenant-ID": globex.slug}))
    get = async_to_sync(logged_in(alice, AsyncClient).get)
    assert_sees(get("/public/async/decorated", headers={"X-Tenant-ID": acme.slug}), acme)
    assert_forbidden(get("/public/async/decorated", headers={"X-Tenant-ID": globex.slug}))


def test_a_refused_request_runs_no_view_and_leaves_no_tenant(acme, globex, alice):
    client = logged_in(alice)
    response = client.post("/notes/create?title=sneaky", headers={"X-Tenant-ID": globex.slug})
    assert_forbidden(response)
    with run_as(globex):
        assert not Note.objects.filter(title="sneaky").exists()
    state = client.get("/public/state").json()
    assert (state["tenant_id"], state["visible_notes"]) == (None, 0)
    assert state["setting"] in ("", None)


def test_the_membership_lookup_runs_as_the_tenant_being_entered(acme, globex, alice):
    request = HttpRequest()
    request.user = alice
    # Outside any scope row-level security hides every membership: a plain query finds none.
    assert not MembershipRow.objects.filter(user=alice).exists()
    # The check enters the tenant it is asked about, never system mode.
    assert members(request, acme.pk) is True
    assert members(request, globex.pk) is False
    with run_as(globex):
        assert members(request, acme.pk) is True
        assert get_tenant_id() == globex.pk
    with run_as(acme):
        assert members(request, acme.pk) is True
    request.user = AnonymousUser()
    assert members(request, acme.pk) is False
    assert members(HttpRequest(), acme.pk) is False  # no AuthenticationMiddleware at all


def test_membership_needs_a_model():
    with pytest.raises(TypeError, match="membership"):
        membership(42)
    assert repr(members) == (
        "membership('testapp.Membership', user_field='user', tenant_field='tenant')"
    )
    assert isinstance(members, Membership)


# --- custom checks -------------------------------------------------------------------------------


def test_the_check_runs_inside_the_tenant_scope_before_the_view(settings, acme):
    configure_tenant(settings, AUTHORIZE="tests.tenant.test_authorize.record_scope")
    assert_sees(Client().get("/notes", headers={"X-Tenant-ID": acme.slug}), acme)
    assert_sees(
        async_to_sync(AsyncClient().get)("/async/notes", headers={"X-Tenant-ID": acme.slug}), acme
    )
    expected = {
        "tenant_id": acme.pk,
        "scope": acme.pk,
        "request_tenant_id": acme.pk,
        "notes": ["acme-1", "acme-2"],
        "in_atomic": True,
    }
    assert [expected, expected] == SEEN


def test_an_async_check_in_sync_and_async_stacks(settings, acme, globex, alice):
    configure_tenant(settings, AUTHORIZE="tests.tenant.test_authorize.async_members")
    sync_client, async_client = logged_in(alice), logged_in(alice, AsyncClient)
    assert_sees(sync_client.get("/notes", headers={"X-Tenant-ID": acme.slug}), acme)
    assert_forbidden(sync_client.get("/notes", headers={"X-Tenant-ID": globex.slug}))
    get = async_to_sync(async_client.get)
    assert_sees(get("/async/notes", headers={"X-Tenant-ID": acme.slug}), acme)
    assert_forbidden(get("/async/notes", headers={"X-Tenant-ID": globex.slug}))
    # Each call saw the tenant it was asked about.
    assert [seen["scope"] for seen in SEEN] == [acme.pk, globex.pk, acme.pk, globex.pk]


@pytest.mark.parametrize("path", ["/notes", "/async/notes"])
def test_a_callable_object_with_an_async_call(settings, acme, path):
    get = Client().get if path == "/notes" else async_to_sync(AsyncClient().get)
    configure_tenant(settings, AUTHORIZE="tests.tenant.test_authorize.async_yes")
    assert_sees(get(path, headers={"X-Tenant-ID": acme.slug}), acme)
    configure_tenant(settings, AUTHORIZE="tests.tenant.test_authorize.async_no")
    assert_forbidden(get(path, headers={"X-Tenant-ID": acme.slug}))


@pytest.mark.parametrize("check", ["returns_none", "returns_one", "returns_text", "returns_a_row"])
def test_only_true_lets_a_request_in(settings, acme, alice, check):
    configure_tenant(settings, AUTHORIZE=f"tests.tenant.test_authorize.{check}")
    assert_forbidden(logged_in(alice).get("/notes", headers={"X-Tenant-ID": acme.slug}))


def test_a_check_may_refuse_with_its_own_message(settings, acme):
    configure_tenant(settings, AUTHORIZE="tests.tenant.test_authorize.refuses_with_a_reason")
    message = "Your plan does not include this workspace."
    assert_forbidden(Client().get("/notes", headers={"X-Tenant-ID": acme.slug}), message)
    response = async_to_sync(AsyncClient().get)("/async/notes", headers={"X-Tenant-ID": acme.slug})
    assert_forbidden(response, message)


def test_no_check_for_requests_without_a_tenant_or_outside_the_middleware(acme):
    assert Client().get("/notes").json()["code"] == "TENANT_NOT_RESOLVED"
    assert Client().get("/public/state").status_code == 200


def test_a_token_mismatch_is_answered_before_authorization(settings, acme, globex, alice):
    configure_tenant(settings, JWT_CLAIM="tenant_id", JWT_KEY=SECRET)
    value = jwt.encode({"tenant_id": str(acme.pk)}, SECRET, algorithm="HS256")
    headers = {"Authorization": f"Bearer {value}", "X-Tenant-ID": globex.slug}
    response = logged_in(alice).get("/notes", headers=headers)
    assert (response.status_code, response.json()["code"]) == (403, "TENANT_MISMATCH")
    headers["X-Tenant-ID"] = acme.slug
    assert_sees(logged_in(alice).get("/notes", headers=headers), acme)


# --- configuration errors ------------------------------------------------------------------------


def settings_messages(**values):
    with override_settings(BETTER_TENANT=values):
        return checks.check_settings()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("no.such.module.authorize", "cannot be imported"),
        ("better_tenant.sql.SETTING", "not a callable"),
        (12, "must be a dotted path"),
    ],
)
def test_an_unusable_authorize_is_an_error(value, text):
    (message,) = settings_messages(AUTHORIZE=value)
    assert message.id == "better_tenant.E006"
    assert "AUTHORIZE" in message.msg and text in message.msg


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("better_tenant.authorization.membership", "cannot be called as (request, tenant_id)"),
        (lambda request: True, "cannot be called as (request, tenant_id)"),
        (membership("nope.Membership"), "cannot be loaded"),
        (membership("testapp.Membership", user_field="role"), "not a foreign key to auth.User"),
        (membership("testapp.Membership", tenant_field="owner"), "has no field 'owner'"),
        (membership("testapp.Note"), "has no field 'user'"),
    ],
)
def test_an_authorize_that_cannot_answer_is_an_error(value, text):
    (message,) = settings_messages(AUTHORIZE=value)
    assert message.id == "better_tenant.E013"
    assert text in message.msg
    assert "check(request, tenant_id)" in message.hint


def test_good_authorize_values_pass():
    assert settings_messages(AUTHORIZE="tests.tenant.test_authorize.members") == []
    assert settings_messages(AUTHORIZE=members) == []
    assert settings_messages(AUTHORIZE="tests.tenant.test_authorize.async_members") == []
    assert settings_messages(AUTHORIZE=async_yes) == []


def test_a_wrong_authorize_fails_when_the_middleware_loads(settings):
    configure_tenant(settings, AUTHORIZE=12)
    with pytest.raises(ImproperlyConfigured, match="AUTHORIZE"):
        TenantMiddleware(lambda request: None)
