"""A verified JWT binds the request to its tenant: other sources may only agree with it."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.test import AsyncClient, override_settings

from better_tenant import checks, run_as
from better_tenant.errors import TenantMismatch
from better_tenant.resolvers import resolve_tenant_id
from tests.testapp.models import Note

pytestmark = [pytest.mark.urls("tests.testapp.urls"), pytest.mark.django_db]

SECRET = "binding-secret-0123456789-0123456789-abcdef"
BASE = {
    "HEADER": "X-Tenant-ID",
    "PATH": "/t/:tenantId/*",
    "SUBDOMAIN": True,
    "JWT_CLAIM": "tenant_id",
    "JWT_KEY": SECRET,
    "CUSTOM_RESOLVER": "tests.tenant.test_trust_binding.tenant_from_query",
    "EXEMPT_PATHS": ["/public/state"],
}


def tenant_from_query(request: HttpRequest) -> str | None:
    """Custom resolver of these tests: ``?tenant=<id or slug>``."""
    return request.GET.get("tenant")


@pytest.fixture(autouse=True)
def configure(settings):
    settings.BETTER_TENANT = dict(BASE)
    settings.MIDDLEWARE = [
        "django.middleware.common.CommonMiddleware",
        "better_tenant.middleware.TenantMiddleware",
    ]
    settings.ALLOWED_HOSTS = ["testserver", ".example.com"]


def configure_tenant(settings, **changes):
    settings.BETTER_TENANT = {**BASE, **changes}


def token(claims: dict, key: str = SECRET) -> str:
    return jwt.encode(claims, key, algorithm="HS256")


def bearer(tenant_claim: str) -> dict:
    return {"Authorization": f"Bearer {token({'tenant_id': tenant_claim})}"}


def assert_sees(response, tenant):
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["tenant_id"] == str(tenant.pk)
    assert body["request_tenant_id"] == str(tenant.pk)
    return body


def assert_mismatch(response, source: str | None = None):
    assert response.status_code == 403, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    # Nothing of the view (no rows, no tenant) reached the client.
    assert set(body) == {"error", "code"}
    assert body["code"] == "TENANT_MISMATCH"
    assert "token" in body["error"]
    if source is not None:
        assert source in body["error"]
    return body


def assert_not_resolved(response):
    assert response.status_code == 404, response.content
    assert response.json()["code"] == "TENANT_NOT_RESOLVED"


# --- a verified token and another source that disagree ------------------------------------------


def test_header_naming_another_tenant_than_the_verified_token_is_refused(client, acme, globex):
    for other in (str(globex.pk), globex.slug, globex.slug.upper()):
        response = client.get("/notes", headers={**bearer(str(acme.pk)), "X-Tenant-ID": other})
        assert_mismatch(response, "X-Tenant-ID header")
    # The token alone still works.
    assert_sees(client.get("/notes", headers=bearer(str(acme.pk))), acme)


def test_path_subdomain_and_custom_resolver_are_bound_too(client, acme, globex):
    headers = bearer(acme.slug)
    assert_mismatch(client.get(f"/t/{globex.slug}/notes", headers=headers), "the path")
    assert_mismatch(
        client.get("/notes", headers=headers, HTTP_HOST=f"{globex.slug}.app.example.com"),
        "the subdomain",
    )
    assert_mismatch(
        client.get("/notes", {"tenant": str(globex.pk)}, headers=headers), "the custom resolver"
    )


def test_an_unknown_tenant_named_next_to_a_verified_token_is_a_mismatch(client, acme):
    # Anything but the token's tenant disagrees with it, whether or not that tenant exists, so
    # the answer does not reveal which tenants exist.
    for other in ("no-such-tenant", str(uuid.uuid4()), "'; DROP TABLE tenants; --"):
        assert_mismatch(client.get("/notes", headers={**bearer(acme.slug), "X-Tenant-ID": other}))


def test_mismatch_on_async_views_and_tenant_required(client, acme, globex):
    headers = {**bearer(str(acme.pk)), "X-Tenant-ID": globex.slug}
    get = async_to_sync(AsyncClient().get)
    assert_mismatch(get("/async/notes", headers=headers))
    assert_mismatch(get(f"/t/{globex.pk}/async/notes", headers=bearer(acme.slug)))
    # tenant_required outside the middleware applies the same rule.
    assert_mismatch(client.get("/public/decorated", headers=headers))
    assert_mismatch(get("/public/async/decorated", headers=headers))
    assert_sees(get("/public/async/decorated", headers=bearer(acme.slug)), acme)


def test_a_refused_request_writes_nothing(client, acme, globex):
    response = client.post(
        "/notes/create?title=sneaky", headers={**bearer(str(acme.pk)), "X-Tenant-ID": globex.slug}
    )
    assert_mismatch(response)
    for tenant in (acme, globex):
        with run_as(tenant):
            assert not Note.objects.filter(title="sneaky").exists()


def test_resolve_tenant_id_raises_a_permission_denied(acme, globex):
    request = HttpRequest()
    request.META["HTTP_AUTHORIZATION"] = bearer(acme.slug)["Authorization"]
    request.META["HTTP_X_TENANT_ID"] = globex.slug
    with pytest.raises(TenantMismatch) as excinfo:
        resolve_tenant_id(request)
    assert isinstance(excinfo.value, PermissionDenied)
    assert excinfo.value.code == "TENANT_MISMATCH"
    assert excinfo.value.source == "the X-Tenant-ID header"


# --- sources that agree with the token -----------------------------------------------------------


def test_one_tenant_named_by_id_in_one_source_and_slug_in_another_agrees(client, acme):
    by_id, by_slug = str(acme.pk), acme.slug
    assert_sees(client.get("/notes", headers={**bearer(by_id), "X-Tenant-ID": by_slug}), acme)
    assert_sees(
        client.get("/notes", headers={**bearer(by_slug), "X-Tenant-ID": by_id.upper()}), acme
    )
    assert_sees(
        client.get(
            f"/t/{by_slug.upper()}/notes",
            {"tenant": by_id},
            headers={**bearer(by_id), "X-Tenant-ID": f"  {by_slug} "},
            HTTP_HOST=f"{by_slug}.app.example.com",
        ),
        acme,
    )


def test_empty_sources_do_not_disagree(client, acme):
    assert_sees(client.get("/notes", headers={**bearer(acme.slug), "X-Tenant-ID": "   "}), acme)


def test_a_verified_token_for_an_unknown_tenant_is_not_replaced(client, acme):
    # The token is authentic but its tenant is gone: the header may not stand in for it.
    headers = {**bearer(str(uuid.uuid4())), "X-Tenant-ID": acme.slug}
    assert_not_resolved(client.get("/notes", headers=headers))


# --- a token that does not verify counts as absent ------------------------------------------------


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(
            lambda t: token({"tenant_id": t}, key="attacker-key-0123456789-0123456789"), id="forged"
        ),
        pytest.param(lambda t: token({"tenant_id": t, "exp": int(time.time()) - 60}), id="expired"),
        pytest.param(lambda t: token({"tenant_id": t, "aud": "elsewhere"}), id="wrong-audience"),
        pytest.param(lambda t: jwt.encode({"tenant_id": t}, None, algorithm="none"), id="unsigned"),
    ],
)
def test_an_unverifiable_token_neither_names_nor_binds_a_tenant(client, acme, globex, make_token):
    bad = {"Authorization": f"Bearer {make_token(str(acme.pk))}"}
    # Alone it names nothing: the request is never served as the token's tenant.
    assert_not_resolved(client.get("/notes", headers=bad))
    # Next to a header, the header resolves as it would without any token: the token is no
    # credential, so it cannot hold the request to its tenant either. Authenticating the caller
    # (and refusing the bad token) is the job of the view's authentication and of AUTHORIZE.
    assert_sees(client.get("/notes", headers={**bad, "X-Tenant-ID": globex.slug}), globex)
    response = async_to_sync(AsyncClient().get)(
        "/async/notes", headers={**bad, "X-Tenant-ID": globex.slug}
    )
    assert_sees(response, globex)


def test_a_verified_token_without_the_claim_binds_nothing(client, acme, globex):
    headers = {"Authorization": f"Bearer {token({'sub': '7'})}", "X-Tenant-ID": globex.slug}
    assert_sees(client.get("/notes", headers=headers), globex)


def test_an_unverified_token_is_just_another_source_first_match(client, settings, acme, globex):
    # Without JWT_KEY anyone can write the token, so it binds nothing: first match wins.
    configure_tenant(settings, JWT_KEY=None)
    headers = {**bearer(str(acme.pk)), "X-Tenant-ID": globex.slug}
    assert_sees(client.get("/notes", headers=headers), globex)
    assert_sees(client.get("/notes", headers=bearer(str(acme.pk))), acme)


def test_without_a_token_the_first_source_wins(client, acme, globex):
    # Header, then path, then subdomain, then custom: disagreeing sources are not compared.
    response = client.get(
        f"/t/{acme.slug}/notes", headers={"X-Tenant-ID": globex.slug}, HTTP_HOST="testserver"
    )
    assert_sees(response, globex)
    assert_sees(client.get(f"/t/{acme.slug}/notes", {"tenant": globex.slug}), acme)


# --- header tricks --------------------------------------------------------------------------------


class RawHeaders(AsyncClient):
    """An AsyncClient that sends extra raw ASGI headers, repeated or oddly named as given."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        super().__init__()
        self.raw = raw

    def _base_scope(self, **request):
        scope = super()._base_scope(**request)
        scope["headers"] = [*scope["headers"], *self.raw]
        return scope


def test_a_repeated_tenant_header_names_no_tenant(client, acme, globex):
    # Servers join repeated headers with commas; a joined value is no identifier at all.
    for joined in (f"{globex.slug},{acme.slug}", f"{acme.slug},{acme.slug}"):
        assert_mismatch(client.get("/notes", headers=bearer(acme.slug), HTTP_X_TENANT_ID=joined))
        assert_not_resolved(client.get("/notes", HTTP_X_TENANT_ID=joined))
    # The same through ASGI, with the second header in another letter case.
    raw = [(b"x-tenant-id", acme.slug.encode()), (b"X-TENANT-ID", globex.slug.encode())]
    get = async_to_sync(RawHeaders(raw).get)
    assert_mismatch(get("/async/notes", headers=bearer(acme.slug)))
    assert_not_resolved(get("/async/notes"))


def test_header_name_tricks_do_not_slip_past_the_token(acme, globex):
    # Header names are case-insensitive: any spelling is the same header, and is compared.
    get = async_to_sync(RawHeaders([(b"x-TeNaNt-iD", globex.slug.encode())]).get)
    assert_mismatch(get("/async/notes", headers=bearer(acme.slug)))
    # An underscore spelling is dropped by the server, so it names nothing.
    get = async_to_sync(RawHeaders([(b"x_tenant_id", globex.slug.encode())]).get)
    assert_sees(get("/async/notes", headers=bearer(acme.slug)), acme)


def test_two_authorization_headers_are_no_verified_token(acme, globex):
    good = f"Bearer {token({'tenant_id': acme.slug})}".encode()
    raw = [(b"authorization", good), (b"authorization", good)]
    get = async_to_sync(RawHeaders(raw).get)
    assert_not_resolved(get("/async/notes"))
    assert_sees(get("/async/notes", headers={"X-Tenant-ID": globex.slug}), globex)


def test_the_bearer_scheme_is_case_insensitive(client, acme, globex):
    value = token({"tenant_id": acme.slug})
    for scheme in ("bearer", "BEARER"):
        headers = {"Authorization": f"{scheme} {value}", "X-Tenant-ID": globex.slug}
        assert_mismatch(client.get("/notes", headers=headers))


# --- the system check ----------------------------------------------------------------------------


def trust_messages(**values):
    with override_settings(BETTER_TENANT=values):
        return checks.check_request_trust()


def test_open_sources_next_to_a_verified_token_are_a_warning():
    (message,) = trust_messages(JWT_CLAIM="tenant_id", JWT_KEY="k" * 32)
    assert message.id == "better_tenant.W008"
    assert "X-Tenant-ID header" in message.msg and "TENANT_MISMATCH" in message.msg
    assert "HEADER: None" in message.hint and "AUTHORIZE" in message.hint
    (message,) = trust_messages(
        JWT_CLAIM="tenant_id",
        JWT_KEY="k" * 32,
        HEADER=None,
        PATH="/t/:tenantId/*",
        SUBDOMAIN=True,
        CUSTOM_RESOLVER="tests.tenant.test_trust_binding.tenant_from_query",
    )
    assert "from the path, the subdomain and the custom resolver, which" in message.msg


@pytest.mark.parametrize(
    "values",
    [
        {"JWT_CLAIM": "tenant_id", "JWT_KEY": "k" * 32, "HEADER": None},  # the token alone
        {"JWT_CLAIM": "tenant_id", "JWT_KEY": "k" * 32, "AUTHORIZE": "x.y"},  # authorized
        {"JWT_CLAIM": "tenant_id"},  # unverified: W005 speaks about it
        {},  # no token at all
    ],
)
def test_no_trust_warning_without_the_mix(values):
    assert trust_messages(**values) == []


def test_the_trust_check_never_raises_on_a_broken_setting():
    with override_settings(BETTER_TENANT=["HEADER"]):
        assert checks.check_request_trust() == []
