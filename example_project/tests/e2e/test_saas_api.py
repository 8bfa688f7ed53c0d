"""The example SaaS's API driven as its users drive it: two tenants, two users, every middleware."""

from __future__ import annotations

import time
from types import SimpleNamespace

import jwt
import pytest
from django.contrib.auth import get_user_model

from better_tenant import run_as, run_as_system
from better_tenant.models import Tenant
from example_project.projects import demo
from example_project.projects.auth import signing_key
from example_project.projects.models import Membership, Project, Task
from example_project.projects.testing import Api, use_saas_settings

pytestmark = pytest.mark.django_db

ALICE, BOB = "alice@acme.test", "bob@globex.test"
PASSWORD = demo.DEMO_PASSWORD


@pytest.fixture
def saas(settings, client):
    """Acme and Globex seeded as by ``manage.py demo_data``; alice and bob signed in."""
    use_saas_settings(settings)
    seeded = demo.seed("http://localhost:8000")
    api = Api(client)
    return SimpleNamespace(
        api=api,
        acme=seeded.tenants["acme"],
        globex=seeded.tenants["globex"],
        alice=seeded.owners["acme"],
        bob=seeded.owners["globex"],
        alice_token=api.token(ALICE, PASSWORD, "acme"),
        bob_token=api.token(BOB, PASSWORD, "globex"),
    )


def rows_of(tenant, model):
    with run_as(tenant):
        return {row.pk: row for row in model.objects.all()}


def forged(claims, key=None):
    now = int(time.time())
    return jwt.encode({"iat": now, "exp": now + 60, **claims}, key or signing_key(), "HS256")


# --- sign-up and tokens --------------------------------------------------------------------------


def test_sign_up_creates_a_tenant_owned_by_the_new_user(saas):
    api = saas.api
    response = api(
        "POST",
        "/api/auth/signup",
        {"email": "Carol@Initech.test", "password": "carol-password", "tenant_name": "Initech"},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["user"]["email"] == "carol@initech.test"
    assert body["tenant"]["slug"] == "initech" and body["role"] == "owner"
    token = api.token("carol@initech.test", "carol-password", "initech")
    me = api("GET", "/api/me", token=token).json()
    assert me == {
        "user": body["user"],
        "tenant": body["tenant"],
        "role": "owner",
    }
    # A new tenant starts empty, whatever the other tenants hold.
    assert api("GET", "/api/projects", token=token).json() == {"data": [], "has_more": False}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"email": ALICE, "password": "long-enough", "tenant_name": "Acme 2"}, 409, "EMAIL_TAKEN"),
        (
            {"email": "dan@x.test", "password": "long-enough", "tenant_name": "Acme"},
            409,
            "TENANT_EXISTS",
        ),
        (
            {
                "email": "dan@x.test",
                "password": "long-enough",
                "tenant_name": "X",
                "tenant_slug": "A B",
            },
            400,
            "INVALID_TENANT",
        ),
        ({"email": "dan@x.test", "password": "long-enough"}, 400, "VALIDATION_ERROR"),
        (
            {"email": "dan@x.test", "password": "short", "tenant_name": "Dan"},
            400,
            "VALIDATION_ERROR",
        ),
        (
            {"email": "dan@x.test", "password": "long-enough", "invite": "forged"},
            400,
            "INVALID_INVITE",
        ),
    ],
)
def test_sign_up_refusals(saas, body, status, code):
    response = saas.api("POST", "/api/auth/signup", body)
    assert (response.status_code, response.json()["code"]) == (status, code), response.content
    # Nothing of a refused sign-up stays: no account, no tenant, no membership.
    assert not get_user_model().objects.filter(email="dan@x.test").exists()
    with run_as_system():
        assert set(Tenant.objects.values_list("slug", flat=True)) == {"acme", "globex"}
    with run_as(saas.acme):
        assert Membership.objects.count() == 1


@pytest.mark.parametrize(
    ("email", "password", "tenant", "status", "code"),
    [
        (ALICE, "wrong-password", "acme", 401, "INVALID_CREDENTIALS"),
        ("nobody@acme.test", PASSWORD, "acme", 401, "INVALID_CREDENTIALS"),
        (ALICE, PASSWORD, "globex", 403, "NOT_A_MEMBER"),
        (ALICE, PASSWORD, "no-such-tenant", 403, "NOT_A_MEMBER"),
    ],
)
def test_token_refusals(saas, email, password, tenant, status, code):
    response = saas.api(
        "POST", "/api/auth/token", {"email": email, "password": password, "tenant": tenant}
    )
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert "access" not in response.json()


def test_a_token_carries_user_and_tenant_claims(saas):
    claims = jwt.decode(saas.alice_token, signing_key(), algorithms=["HS256"])
    assert claims["sub"] == str(saas.alice.pk)
    assert claims["email"] == ALICE
    assert claims["tenant"] == str(saas.acme.pk)
    assert claims["role"] == "owner"
    assert claims["exp"] > claims["iat"]
    # The tenant may also be named by id.
    assert saas.api.token(ALICE, PASSWORD, str(saas.acme.pk))


# --- isolation -----------------------------------------------------------------------------------


def test_each_tenant_lists_only_its_own_projects(saas):
    for token, tenant in ((saas.alice_token, saas.acme), (saas.bob_token, saas.globex)):
        body = saas.api("GET", "/api/projects", token=token).json()
        assert {row["id"] for row in body["data"]} == set(rows_of(tenant, Project))
        assert {row["tenant_id"] for row in body["data"]} == {str(tenant.pk)}


def test_alice_can_neither_see_nor_change_globex_rows(saas):
    api, token = saas.api, saas.alice_token
    project = next(iter(rows_of(saas.globex, Project).values()))
    task = next(t for t in rows_of(saas.globex, Task).values() if not t.done)
    tasks_before = len(rows_of(saas.globex, Task))
    answers = [
        api("GET", f"/api/projects/{project.pk}", token=token),
        api("PATCH", f"/api/projects/{project.pk}", {"name": "Mine now"}, token=token),
        api("DELETE", f"/api/projects/{project.pk}", token=token),
        api("GET", f"/api/projects/{project.pk}/tasks", token=token),
        api("POST", f"/api/projects/{project.pk}/tasks", {"title": "Sneak"}, token=token),
        api("POST", f"/api/tasks/{task.pk}/complete", token=token),
    ]
    assert [(a.status_code, a.json()["code"]) for a in answers] == [(404, "NOT_FOUND")] * 6
    with run_as(saas.globex):
        assert Project.objects.get(pk=project.pk).name == project.name
        assert Task.objects.count() == tasks_before
        assert Task.objects.get(pk=task.pk).done is False
    bob_sees = saas.api("GET", f"/api/projects/{project.pk}", token=saas.bob_token)
    assert bob_sees.status_code == 200 and bob_sees.json()["name"] == project.name


def test_a_token_used_for_another_tenant_is_refused(saas):
    api = saas.api
    # The header names Globex, the token Acme: refused before the view runs.
    response = api(
        "GET", "/api/projects", token=saas.alice_token, headers={"X-Tenant-ID": "globex"}
    )
    assert (response.status_code, response.json()["code"]) == (403, "TENANT_MISMATCH")
    # A validly signed token for a tenant alice is not a member of.
    token = forged({"sub": str(saas.alice.pk), "email": ALICE, "tenant": str(saas.globex.pk)})
    response = api("GET", "/api/projects", token=token)
    assert (response.status_code, response.json()["code"]) == (403, "NOT_A_MEMBER")
    # A membership removed after the token was issued ends the token's use.
    with run_as(saas.acme):
        Membership.objects.filter(user=saas.alice).delete()
    response = api("GET", "/api/projects", token=saas.alice_token)
    assert (response.status_code, response.json()["code"]) == (403, "NOT_A_MEMBER")


def test_bad_tokens_are_refused(saas):
    api = saas.api
    claims = {"sub": str(saas.alice.pk), "email": ALICE, "tenant": str(saas.acme.pk)}
    wrong_key = forged(claims, key="another-key-of-at-least-thirty-two-bytes!")
    expired = forged({**claims, "exp": int(time.time()) - 5})
    # Without a verifiable token the middleware finds no tenant at all.
    for token in (wrong_key, expired, "not-a-jwt"):
        response = api("GET", "/api/projects", token=token)
        assert (response.status_code, response.json()["code"]) == (404, "TENANT_NOT_RESOLVED")
        # Named by a header instead, the tenant is found and the token itself is refused.
        response = api("GET", "/api/projects", token=token, headers={"X-Tenant-ID": "acme"})
        assert (response.status_code, response.json()["code"]) == (401, "TOKEN_INVALID")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = api("GET", "/api/projects", headers={"X-Tenant-ID": "acme"})
    assert (response.status_code, response.json()["code"]) == (401, "UNAUTHORIZED")


# --- invites and roles ---------------------------------------------------------------------------


def test_an_invite_lets_a_new_user_join_as_member(saas):
    api = saas.api
    response = api("POST", "/api/invites", {"email": "carol@acme.test"}, token=saas.alice_token)
    assert response.status_code == 201
    invite = response.json()["invite"]
    joined = api(
        "POST",
        "/api/auth/signup",
        {"email": "carol@acme.test", "password": "carol-password", "invite": invite},
    )
    assert joined.status_code == 201, joined.content
    assert joined.json()["tenant"]["slug"] == "acme" and joined.json()["role"] == "member"
    carol = api.token("carol@acme.test", "carol-password", "acme")
    assert len(api("GET", "/api/projects", token=carol).json()["data"]) == 2
    project = next(iter(rows_of(saas.acme, Project)))
    refused = api("DELETE", f"/api/projects/{project}", token=carol)
    assert (refused.status_code, refused.json()["code"]) == (403, "ADMIN_REQUIRED")
    refused = api("POST", "/api/invites", {"email": "eve@acme.test"}, token=carol)
    assert (refused.status_code, refused.json()["code"]) == (403, "ADMIN_REQUIRED")
    again = api(
        "POST",
        "/api/auth/signup",
        {"email": "carol@acme.test", "password": "carol-password", "invite": invite},
    )
    assert (again.status_code, again.json()["code"]) == (409, "INVITE_USED")


def test_an_existing_user_joins_a_second_tenant_with_their_password(saas):
    api = saas.api
    invite = api("POST", "/api/invites", {"email": BOB}, token=saas.alice_token).json()["invite"]
    wrong = api(
        "POST", "/api/auth/signup", {"email": BOB, "password": "not-his-password", "invite": invite}
    )
    assert (wrong.status_code, wrong.json()["code"]) == (401, "INVALID_CREDENTIALS")
    other = api(
        "POST", "/api/auth/signup", {"email": ALICE, "password": PASSWORD, "invite": invite}
    )
    assert (other.status_code, other.json()["code"]) == (400, "INVITE_EMAIL_MISMATCH")
    joined = api("POST", "/api/auth/signup", {"email": BOB, "password": PASSWORD, "invite": invite})
    assert joined.status_code == 201
    # One account, one token per tenant; each token sees only its tenant.
    for tenant in (saas.acme, saas.globex):
        token = api.token(BOB, PASSWORD, tenant.slug)
        rows = api("GET", "/api/projects", token=token).json()["data"]
        assert {row["tenant_id"] for row in rows} == {str(tenant.pk)}


# --- projects and tasks --------------------------------------------------------------------------


def test_projects_and_tasks_through_the_api(saas):
    api, token = saas.api, saas.alice_token
    created = api("POST", "/api/projects", {"name": "  Jet pack "}, token=token)
    assert created.status_code == 201
    project = created.json()
    assert project["name"] == "Jet pack" and project["tenant_id"] == str(saas.acme.pk)
    duplicate = api("POST", "/api/projects", {"name": "Jet pack"}, token=token)
    assert (duplicate.status_code, duplicate.json()["code"]) == (409, "DUPLICATE_NAME")
    # The same name in another tenant is no conflict.
    assert (
        api("POST", "/api/projects", {"name": "Jet pack"}, token=saas.bob_token).status_code == 201
    )
    renamed = api("PATCH", f"/api/projects/{project['id']}", {"name": "Jet boots"}, token=token)
    assert renamed.json()["name"] == "Jet boots"
    task = api("POST", f"/api/projects/{project['id']}/tasks", {"title": "Fuel"}, token=token)
    assert task.status_code == 201 and task.json()["done"] is False
    done = api("POST", f"/api/tasks/{task.json()['id']}/complete", token=token).json()
    assert done["done"] is True and done["completed_at"]
    listed = api("GET", f"/api/projects/{project['id']}/tasks", token=token).json()["data"]
    assert [(t["title"], t["done"]) for t in listed] == [("Fuel", True)]
    assert api("DELETE", f"/api/projects/{project['id']}", token=token).status_code == 204
    assert api("GET", f"/api/projects/{project['id']}", token=token).status_code == 404
    with run_as(saas.acme):
        assert not Task.objects.filter(pk=task.json()["id"]).exists()


def test_pages_and_their_bounds(saas):
    api, token = saas.api, saas.alice_token
    first = api("GET", "/api/projects?limit=1", token=token).json()
    second = api("GET", "/api/projects?limit=1&offset=1", token=token).json()
    assert first["has_more"] is True and second["has_more"] is False
    assert first["data"][0]["id"] != second["data"][0]["id"]
    for query in ("limit=0", "limit=201", "limit=x", "offset=-1"):
        response = api("GET", f"/api/projects?{query}", token=token)
        assert (response.status_code, response.json()["code"]) == (400, "INVALID_PAGE"), query
    invalid = api("POST", "/api/projects", {"name": "  "}, token=token)
    assert (invalid.status_code, invalid.json()["code"]) == (400, "VALIDATION_ERROR")
    assert invalid.json()["details"]["name"]
