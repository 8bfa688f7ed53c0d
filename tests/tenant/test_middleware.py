"""TenantMiddleware, the resolvers and tenant_required, through real requests as the app role."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from asgiref.sync import async_to_sync
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse
from django.test import AsyncClient, Client

from better_tenant import run_as, run_as_system, tenant_required
from better_tenant.api import update_tenant
from better_tenant.middleware import TenantMiddleware
from tests.support.tenants import tenant_with_notes
from tests.testapp.models import Note

pytestmark = [pytest.mark.urls("tests.testapp.urls"), pytest.mark.django_db]

SECRET = "test-secret-0123456789-0123456789-abcdef"
BASE = {
    "HEADER": "X-Tenant-ID",
    "PATH": "/t/:tenantId/*",
    "SUBDOMAIN": True,
    "JWT_CLAIM": "tenant_id",
    "EXEMPT_PATHS": ["/public/"],
}


def tenant_from_query(request: HttpRequest) -> str | None:
    """Custom resolver used by the tests: ``?tenant=<id or slug>``."""
    return request.GET.get("tenant")


def forbidden_workspace(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"error": "Unknown workspace", "path": request.path}, status=403)


async def forbidden_workspace_async(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"error": "Unknown workspace (async)"}, status=403)


@pytest.fixture(autouse=True)
def configure(settings):
    settings.BETTER_TENANT = dict(BASE)
    settings.MIDDLEWARE = [
        "django.middleware.common.CommonMiddleware",
        "better_tenant.middleware.TenantMiddleware",
    ]
    settings.ALLOWED_HOSTS = ["testserver", ".example.com", ".localhost", "127.0.0.1"]
    # Identifier answers are cached; every test starts from a cold cache.
    caches["default"].clear()
    return settings


def configure_tenant(settings, **changes):
    settings.BETTER_TENANT = {**BASE, **changes}


def token(claims: dict, key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def assert_sees(response, tenant, titles):
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["titles"] == sorted(titles)
    assert body["tenant_id"] == str(tenant.pk)
    assert body["request_tenant_id"] == str(tenant.pk)
    return body


def assert_not_resolved(response, status=404):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == "TENANT_NOT_RESOLVED"
    assert "tenant" in body["error"]
    return body


# --- each resolver ----------------------------------------------------------------------------


def test_header_with_uuid_runs_the_view_as_that_tenant(client, acme, globex):
    body = assert_sees(
        client.get("/notes", headers={"X-Tenant-ID": str(acme.pk)}), acme, ["acme-1", "acme-2"]
    )
    # The tenant is set inside the transaction the view runs in.
    assert body["setting"] == str(acme.pk)
    assert body["in_atomic"] is True
    assert_sees(client.get("/notes", headers={"X-Tenant-ID": str(globex.pk)}), globex, ["globex-1"])


def test_header_with_slug_is_looked_up(client, acme, globex):
    assert_sees(
        client.get("/notes", headers={"X-Tenant-ID": acme.slug}), acme, ["acme-1", "acme-2"]
    )
    assert_sees(
        client.get("/notes", headers={"X-Tenant-ID": f"  {globex.slug.upper()} "}),
        globex,
        ["globex-1"],
    )


def test_path_segment(client, acme, globex):
    assert_sees(client.get(f"/t/{acme.slug}/notes"), acme, ["acme-1", "acme-2"])
    assert_sees(client.get(f"/t/{globex.pk}/notes"), globex, ["globex-1"])


def test_subdomain_needs_three_labels(client, acme):
    assert_sees(
        client.get("/notes", HTTP_HOST=f"{acme.slug}.app.example.com"), acme, ["acme-1", "acme-2"]
    )
    assert_sees(
        client.get("/notes", HTTP_HOST=f"{acme.slug}.app.localhost:8000"),
        acme,
        ["acme-1", "acme-2"],
    )
    assert_not_resolved(client.get("/notes", HTTP_HOST=f"{acme.slug}.localhost"))
    assert_not_resolved(client.get("/notes", HTTP_HOST="example.com"))
    assert_not_resolved(client.get("/notes", HTTP_HOST="127.0.0.1"))


def test_jwt_claim_decoded_without_verification(client, acme):
    signed_elsewhere = token({"tenant_id": str(acme.pk)}, key="some-other-service-key-0123456789")
    assert_sees(client.get("/notes", headers=bearer(signed_elsewhere)), acme, ["acme-1", "acme-2"])
    assert_sees(
        client.get("/notes", headers=bearer(token({"tenant_id": acme.slug}))),
        acme,
        ["acme-1", "acme-2"],
    )


@pytest.mark.parametrize(
    "headers",
    [
        bearer(token({"sub": "someone"})),  # claim missing
        bearer(token({"tenant_id": 42})),  # not a string
        bearer(token({"tenant_id": ["a", "b"]})),
        bearer(token({"tenant_id": ""})),
        bearer("not.a.jwt"),
        bearer("%%%"),
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
)
def test_jwt_without_a_usable_claim_resolves_nothing(client, acme, headers):
    assert_not_resolved(client.get("/notes", headers=headers))


def test_jwt_verified_when_a_key_is_set(client, settings, acme):
    configure_tenant(settings, JWT_KEY=SECRET, JWT_ALGORITHMS=["HS256"])
    claims = {"tenant_id": str(acme.pk)}
    assert_sees(client.get("/notes", headers=bearer(token(claims))), acme, ["acme-1", "acme-2"])
    forged = token(claims, key="an-attacker-key-0123456789-0123456789")
    assert_not_resolved(client.get("/notes", headers=bearer(forged)))
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert_not_resolved(client.get("/notes", headers=bearer(unsigned)))
    expired = token({**claims, "exp": int(time.time()) - 60})
    assert_not_resolved(client.get("/notes", headers=bearer(expired)))
    # A token meant for another audience is refused unless JWT_AUDIENCE names it.
    for_api = token({**claims, "aud": "api"})
    assert_not_resolved(client.get("/notes", headers=bearer(for_api)))
    configure_tenant(settings, JWT_KEY=SECRET, JWT_AUDIENCE="api")
    assert_sees(client.get("/notes", headers=bearer(for_api)), acme, ["acme-1", "acme-2"])


def test_custom_resolver(client, settings, acme):
    configure_tenant(settings, CUSTOM_RESOLVER="tests.tenant.test_middleware.tenant_from_query")
    assert_sees(client.get("/notes", {"tenant": acme.slug}), acme, ["acme-1", "acme-2"])
    assert_not_resolved(client.get("/notes"))


def test_resolution_order_header_path_subdomain_jwt_custom(client, settings, tenant_factory):
    configure_tenant(settings, CUSTOM_RESOLVER="tests.tenant.test_middleware.tenant_from_query")
    by_header, by_path, by_subdomain, by_jwt, by_custom = (tenant_factory() for _ in range(5))
    request = {
        "path": f"/t/{by_path.slug}/notes",
        "data": {"tenant": by_custom.slug},
        "HTTP_HOST": f"{by_subdomain.slug}.app.example.com",
        "headers": {"X-Tenant-ID": str(by_header.pk), **bearer(token({"tenant_id": by_jwt.slug}))},
    }

    def winner():
        response = client.get(**request)
        assert response.status_code == 200, response.content
        return response.json()["tenant_id"]

    assert winner() == str(by_header.pk)
    request["headers"]["X-Tenant-ID"] = "   "  # empty values do not count
    assert winner() == str(by_path.pk)
    request["path"] = "/notes"
    assert winner() == str(by_subdomain.pk)
    request["HTTP_HOST"] = "testserver"
    assert winner() == str(by_jwt.pk)
    del request["headers"]["Authorization"]
    assert winner() == str(by_custom.pk)


def test_first_identifier_wins_even_when_it_is_unknown(client, acme):
    # A wrong header is not silently replaced by the path's tenant.
    response = client.get(f"/t/{acme.slug}/notes", headers={"X-Tenant-ID": "no-such-tenant"})
    assert_not_resolved(response)


def test_disabled_strategies_are_skipped(client, settings, acme):
    configure_tenant(settings, HEADER=None, PATH=None, SUBDOMAIN=False, JWT_CLAIM=None)
    assert_not_resolved(
        client.get(
            f"/t/{acme.slug}/notes",
            headers={"X-Tenant-ID": str(acme.pk)},
            HTTP_HOST=f"{acme.slug}.app.example.com",
        )
    )


# --- identifiers to ids -------------------------------------------------------------------------


def test_slug_cache_follows_a_slug_change(client, acme):
    old, new = acme.slug, f"renamed-{uuid.uuid4().hex[:8]}"
    assert_sees(client.get("/notes", headers={"X-Tenant-ID": old}), acme, ["acme-1", "acme-2"])
    assert_not_resolved(client.get("/notes", headers={"X-Tenant-ID": new}))  # a cached miss
    update_tenant(acme.pk, slug=new)
    assert_not_resolved(client.get("/notes", headers={"X-Tenant-ID": old}))
    assert_sees(client.get("/notes", headers={"X-Tenant-ID": new}), acme, ["acme-1", "acme-2"])


def test_unknown_uuid_and_missing_identifier_get_404(client, acme):
    body = assert_not_resolved(client.get("/notes", headers={"X-Tenant-ID": str(uuid.uuid4())}))
    assert set(body) == {"error", "code"}
    body = assert_not_resolved(client.get("/notes"))
    assert "X-Tenant-ID" in body["error"]


@pytest.mark.parametrize(
    "value",
    [
        "'; DROP TABLE tenants; --",
        "1' OR '1'='1",
        'acme" OR 1=1',
        "x" * 10_000,
        "0" * 300,
        "../../etc/passwd",
        "ünïcödé",
        "%27%20OR%201%3D1",
        "acme;SELECT pg_sleep(5)",
        "00000000-0000-0000-0000-00000000000g",
        "$(reboot)",
    ],
)
def test_garbage_and_injection_shaped_headers_are_unknown_tenants(client, acme, value):
    response = client.get("/notes", headers={"X-Tenant-ID": value})
    assert_not_resolved(response)
    # Nothing was executed: the tables and rows are all still there.
    with run_as_system():
        assert Note.objects.count() == 2


def test_injection_shaped_path_segment_is_an_unknown_tenant(client, acme):
    assert_not_resolved(client.get("/t/%27%20OR%20%271%27%3D%271/notes"))
    assert_not_resolved(client.get("/t/acme%00/notes"))


# --- where the middleware applies ---------------------------------------------------------------


def test_exempt_paths_need_no_tenant_and_see_no_rows(client, acme):
    response = client.get("/public/state")
    assert response.status_code == 200
    body = response.json()
    assert body["tenant_id"] is None
    assert body["request_tenant_id"] is None
    assert body["setting"] in ("", None)
    assert body["visible_notes"] == 0


def test_path_prefixes_limit_the_middleware(client, settings, acme):
    configure_tenant(settings, PATH_PREFIXES=["/api/"])
    assert_not_resolved(client.get("/api/notes"))
    assert_sees(
        client.get("/api/notes", headers={"X-Tenant-ID": acme.slug}), acme, ["acme-1", "acme-2"]
    )
    outside = client.get("/notes")
    assert outside.status_code == 200
    assert outside.json()["titles"] == []


def test_a_bad_path_pattern_fails_when_the_middleware_loads(settings):
    configure_tenant(settings, PATH="/t/tenant/*")
    with pytest.raises(ImproperlyConfigured, match=":tenantId"):
        TenantMiddleware(lambda request: None)


# --- answering a missing tenant -----------------------------------------------------------------


def test_missing_tenant_status_is_configurable(client, settings):
    configure_tenant(settings, MISSING_TENANT_STATUS=401)
    assert_not_resolved(client.get("/notes"), status=401)
    assert_not_resolved(async_to_sync(AsyncClient().get)("/async/notes"), status=401)


def test_on_missing_tenant_handler(client, settings):
    configure_tenant(settings, ON_MISSING_TENANT="tests.tenant.test_middleware.forbidden_workspace")
    response = client.get("/notes")
    assert response.status_code == 403
    assert response.json() == {"error": "Unknown workspace", "path": "/notes"}
    response = async_to_sync(AsyncClient().get)("/async/notes")
    assert response.status_code == 403
    assert response.json()["error"] == "Unknown workspace"


def test_async_on_missing_tenant_handler(client, settings):
    configure_tenant(
        settings, ON_MISSING_TENANT="tests.tenant.test_middleware.forbidden_workspace_async"
    )
    assert client.get("/notes").json() == {"error": "Unknown workspace (async)"}
    response = async_to_sync(AsyncClient().get)("/async/notes")
    assert (response.status_code, response.json()) == (403, {"error": "Unknown workspace (async)"})


# --- request attributes, async views ------------------------------------------------------------


def test_request_tenant_is_loaded_lazily(client, acme):
    response = client.get("/tenant", headers={"X-Tenant-ID": str(acme.pk)})
    assert response.json() == {"slug": acme.slug, "same": True}
    response = async_to_sync(AsyncClient().get)("/async/tenant", headers={"X-Tenant-ID": acme.slug})
    assert response.json() == {"slug": acme.slug}


def test_async_view_orm_calls_see_the_tenant(acme, globex):
    client = AsyncClient()
    get = async_to_sync(client.get)
    assert_sees(get("/async/notes", headers={"X-Tenant-ID": acme.slug}), acme, ["acme-1", "acme-2"])
    assert_sees(get(f"/t/{globex.pk}/async/notes"), globex, ["globex-1"])
    assert_not_resolved(get("/async/notes", headers={"X-Tenant-ID": "nobody"}))


def test_writes_get_the_tenant_from_the_scope(client, acme, globex):
    response = client.post("/notes/create?title=fresh", headers={"X-Tenant-ID": acme.slug})
    assert response.status_code == 201
    assert response.json()["tenant_id"] == str(acme.pk)
    assert_sees(
        client.get("/notes", headers={"X-Tenant-ID": acme.slug}),
        acme,
        ["acme-1", "acme-2", "fresh"],
    )
    assert_sees(client.get("/notes", headers={"X-Tenant-ID": globex.slug}), globex, ["globex-1"])


# --- streaming ----------------------------------------------------------------------------------


def _lines(response) -> list[str]:
    return b"".join(response.streaming_content).decode().split()


def test_streamed_queryset_yields_only_the_tenants_rows(client, acme, globex):
    tenant_with_notes("Other", "other-1", "other-2", "other-3")
    response = client.get("/stream", headers={"X-Tenant-ID": acme.slug})
    assert response.status_code == 200
    assert response.streaming
    assert _lines(response) == ["acme-1", "acme-2"]
    response = client.get("/stream", headers={"X-Tenant-ID": str(globex.pk)})
    assert _lines(response) == ["globex-1"]
    # Reading the body left no tenant behind on the connection.
    after = client.get("/public/state").json()
    assert (after["tenant_id"], after["visible_notes"]) == (None, 0)
    assert after["setting"] in ("", None)


def test_streamed_async_iterator_yields_only_the_tenants_rows(acme, globex):
    async def read(path, slug):
        response = await AsyncClient().get(path, headers={"X-Tenant-ID": slug})
        assert response.is_async
        return b"".join([chunk async for chunk in response.streaming_content]).decode().split()

    assert async_to_sync(read)("/async/stream", acme.slug) == ["acme-1", "acme-2"]
    assert async_to_sync(read)("/async/stream", globex.slug) == ["globex-1"]


# --- failures roll back (committed data, so the test runs outside a test transaction) -----------


@pytest.mark.django_db(transaction=True)
def test_view_raising_rolls_back_and_leaves_no_tenant(acme, settings):
    configure_tenant(settings, ATOMIC=True)
    client = Client(raise_request_exception=False)
    before = client.get("/public/state").json()
    response = client.get("/notes/fail?title=doomed", headers={"X-Tenant-ID": acme.slug})
    assert response.status_code == 500
    with run_as_system():
        assert not Note.objects.filter(title="doomed").exists()
    after = client.get("/public/state").json()
    assert after["pid"] == before["pid"]  # the same connection served both requests
    assert after["setting"] in ("", None)
    assert (after["tenant_id"], after["visible_notes"], after["in_atomic"]) == (None, 0, False)
    # The connection still works for the tenant.
    ok = client.get("/notes", headers={"X-Tenant-ID": acme.slug}).json()
    assert ok["titles"] == ["acme-1", "acme-2"]
    assert client.get("/public/state").json()["setting"] in ("", None)


@pytest.mark.django_db(transaction=True)
def test_successful_view_commits(acme):
    client = Client()
    assert (
        client.post("/notes/create?title=kept", headers={"X-Tenant-ID": acme.slug}).status_code
        == 201
    )
    with run_as_system():
        assert Note.objects.get(title="kept").tenant_id == acme.pk
    state = client.get("/public/state").json()
    assert (state["setting"] in ("", None), state["in_atomic"]) == (True, False)


@pytest.mark.django_db(transaction=True)
def test_async_view_raising_rolls_back(acme, settings):
    configure_tenant(settings, ATOMIC=True)
    client = AsyncClient(raise_request_exception=False)
    response = async_to_sync(client.get)(
        "/async/notes/fail?title=doomed-async", headers={"X-Tenant-ID": acme.slug}
    )
    assert response.status_code == 500
    with run_as_system():
        assert not Note.objects.filter(title="doomed-async").exists()
    state = async_to_sync(client.get)("/public/state").json()
    assert state["setting"] in ("", None)
    assert (state["tenant_id"], state["in_atomic"]) == (None, False)


# --- without ATOMIC a view is atomic exactly when the project makes it so -------------------------


@pytest.mark.django_db(transaction=True)
def test_without_atomic_a_raising_view_keeps_its_write_as_django_does_and_leaves_no_tenant(acme):
    client = Client(raise_request_exception=False)
    before = client.get("/public/state").json()
    response = client.get("/notes/fail?title=written", headers={"X-Tenant-ID": acme.slug})
    assert response.status_code == 500
    with run_as_system():
        # Autocommit: the INSERT committed on its own, in the request's tenant.
        assert Note.objects.get(title="written").tenant_id == acme.pk
    after = client.get("/public/state").json()
    assert after["pid"] == before["pid"]
    assert after["setting"] in ("", None)
    assert (after["tenant_id"], after["visible_notes"], after["in_atomic"]) == (None, 0, False)


@pytest.mark.django_db(transaction=True)
def test_without_atomic_a_view_that_is_atomic_rolls_back(acme):
    client = Client(raise_request_exception=False)
    response = client.get("/notes/atomic-fail?title=undone", headers={"X-Tenant-ID": acme.slug})
    assert response.status_code == 500
    with run_as_system():
        assert not Note.objects.filter(title="undone").exists()
    assert client.get("/notes", headers={"X-Tenant-ID": acme.slug}).json()["titles"] == [
        "acme-1",
        "acme-2",
    ]


@pytest.mark.django_db(transaction=True)
def test_without_atomic_atomic_requests_makes_each_view_one_transaction(acme, globex):
    from django.db import connection

    connection.settings_dict["ATOMIC_REQUESTS"] = True
    try:
        client = Client(raise_request_exception=False)
        body = client.get("/notes", headers={"X-Tenant-ID": acme.slug}).json()
        assert (body["titles"], body["in_atomic"]) == (["acme-1", "acme-2"], True)
        assert body["setting"] == str(acme.pk)
        failed = client.get("/notes/fail?title=undone", headers={"X-Tenant-ID": globex.slug})
        assert failed.status_code == 500
    finally:
        connection.settings_dict["ATOMIC_REQUESTS"] = False
    with run_as_system():
        assert not Note.objects.filter(title="undone").exists()


@pytest.mark.django_db(transaction=True)
def test_without_atomic_a_view_runs_outside_a_transaction_and_sees_only_its_tenant(acme, globex):
    client = Client()
    body = client.get("/notes", headers={"X-Tenant-ID": globex.slug}).json()
    assert (body["titles"], body["in_atomic"]) == (["globex-1"], False)
    # The view's own statement carried the tenant.
    assert body["setting"] == str(globex.pk)


# --- tenant_required ----------------------------------------------------------------------------


def test_decorator_resolves_outside_the_middleware(client, acme):
    assert_not_resolved(client.get("/public/decorated"))
    assert_sees(
        client.get("/public/decorated", headers={"X-Tenant-ID": acme.slug}),
        acme,
        ["acme-1", "acme-2"],
    )
    assert_not_resolved(client.get("/public/decorated-401"), status=401)
    assert_sees(
        client.get("/public/decorated-401", headers={"X-Tenant-ID": str(acme.pk)}),
        acme,
        ["acme-1", "acme-2"],
    )


def test_decorator_on_async_view(acme):
    get = async_to_sync(AsyncClient().get)
    assert_not_resolved(get("/public/async/decorated"))
    assert_sees(
        get("/public/async/decorated", headers={"X-Tenant-ID": acme.slug}),
        acme,
        ["acme-1", "acme-2"],
    )


def test_decorator_passes_through_an_active_scope(client, acme, globex):
    # The middleware resolved acme; the decorator neither re-resolves nor opens a second scope.
    assert_sees(
        client.get("/decorated", headers={"X-Tenant-ID": acme.slug}), acme, ["acme-1", "acme-2"]
    )
    calls = []

    @tenant_required
    def view(request):
        calls.append(request.tenant_id)
        return JsonResponse({})

    request = HttpRequest()
    request.META["HTTP_X_TENANT_ID"] = globex.slug  # ignored: a scope is already active
    with run_as(acme):
        assert view(request).status_code == 200
    assert calls == [acme.pk]


def test_decorator_status_and_handler(settings, client):
    configure_tenant(settings, ON_MISSING_TENANT="tests.tenant.test_middleware.forbidden_workspace")
    assert client.get("/public/decorated").status_code == 403  # the handler
    assert_not_resolved(client.get("/public/decorated-401"), status=401)  # explicit status wins


def test_decorator_rejects_a_positional_status():
    with pytest.raises(TypeError, match="status=401"):
        tenant_required(401)
    with pytest.raises(ValueError, match="HTTP error status"):
        tenant_required(status=200)


@pytest.mark.django_db(transaction=True)
def test_decorated_view_raising_rolls_back(acme, settings):
    configure_tenant(settings, ATOMIC=True)
    client = Client(raise_request_exception=False)
    response = client.get(
        "/public/decorated-fail?title=doomed-dec", headers={"X-Tenant-ID": acme.slug}
    )
    assert response.status_code == 500
    with run_as_system():
        assert not Note.objects.filter(title="doomed-dec").exists()
    state = client.get("/public/state").json()
    assert (state["tenant_id"], state["in_atomic"]) == (None, False)
    assert state["setting"] in ("", None)


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/t/:tenantId/*", "/t/acme", "acme"),
        ("/t/:tenantId/*", "/t/acme/projects/7", "acme"),
        ("/t/:tenantId/*", "/x/t/acme", None),
        ("/t/:tenantId", "/t/acme/", "acme"),
        ("/t/:tenantId", "/t/acme/projects", None),
        ("/org/:org/t/:tenantId/*", "/org/one/t/acme/notes", "acme"),
        ("/org/:org/t/:tenantId/*", "/org/t/acme/notes", None),
    ],
)
def test_path_patterns(pattern, path, expected):
    from better_tenant.resolvers import compile_path_pattern

    match = compile_path_pattern(pattern).match(path)
    assert (match.group("tenant") if match else None) == expected
