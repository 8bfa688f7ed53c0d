"""Many interleaved requests for different tenants, from threads and from asyncio tasks.

Every response must carry exactly its own tenant's rows: a scope leaking between requests that
share a connection, a thread or an event loop would show up as another tenant's title.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from django.core.cache import caches
from django.core.handlers.asgi import ASGIHandler
from django.test import Client

from better_tenant import run_as, run_as_system
from better_tenant.api import create_tenant
from tests.support.concurrency import asgi_get, run_async, run_threads
from tests.testapp.models import Note

pytestmark = [pytest.mark.urls("tests.testapp.urls"), pytest.mark.django_db(transaction=True)]

TENANTS = 6
THREADS = 8
REQUESTS_PER_THREAD = 80  # 640 sync requests
ASYNC_REQUESTS = 480
ASYNC_IN_FLIGHT = 16


@pytest.fixture(autouse=True, params=[False, True], ids=["statements", "atomic"])
def configure(request, settings):
    """Both ways a view runs: each statement carrying the tenant, or one transaction (ATOMIC)."""
    settings.BETTER_TENANT = {
        "HEADER": "X-Tenant-ID",
        "PATH": "/t/:tenantId/*",
        "EXEMPT_PATHS": ["/public/"],
        "ATOMIC": request.param,
    }
    settings.MIDDLEWARE = ["better_tenant.middleware.TenantMiddleware"]
    caches["default"].clear()
    # The failing view's tracebacks would flood the output; its 500s are asserted instead.
    logger = logging.getLogger("django.request")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@pytest.fixture
def tenants():
    made = []
    for index in range(TENANTS):
        suffix = uuid.uuid4().hex[:6]
        tenant = create_tenant(f"Tenant {index} {suffix}", f"t{index}-{suffix}")
        titles = [f"{tenant.slug}-note-{n}" for n in range(index % 3 + 1)]
        with run_as(tenant):
            Note.objects.bulk_create([Note(title=title) for title in titles])
        made.append((tenant, sorted(titles)))
    return made


def request_for(tenants, i: int, j: int):
    """The (path, headers, tenant, titles) of request ``j`` of worker ``i``: tenants interleave."""
    tenant, titles = tenants[(i + j) % len(tenants)]
    variant = j % 4
    if variant == 0:
        return "/notes", {"X-Tenant-ID": str(tenant.pk)}, tenant, titles
    if variant == 1:
        return "/notes", {"X-Tenant-ID": tenant.slug}, tenant, titles
    if variant == 2:
        return f"/t/{tenant.slug}/notes", {}, tenant, titles
    return "/public/decorated", {"X-Tenant-ID": tenant.slug}, tenant, titles


def check(body: dict, tenant, titles, label: str, problems: list[str]) -> None:
    if body.get("tenant_id") != str(tenant.pk) or body.get("titles") != titles:
        problems.append(f"{label}: expected {tenant.slug} {titles}, got {body}")


def test_threads_on_interleaved_tenants_never_see_another_tenants_rows(tenants):
    problems: list[str] = []
    counted = [0] * THREADS

    def work(i: int) -> None:
        client = Client(raise_request_exception=False)
        for j in range(REQUESTS_PER_THREAD):
            path, headers, tenant, titles = request_for(tenants, i, j)
            if j % 10 == 9:
                # A view that writes and raises in its transaction on this thread's connection;
                # the requests after it must neither see its row nor inherit its tenant.
                failed = client.get("/notes/atomic-fail?title=leak", headers=headers)
                if failed.status_code != 500:
                    problems.append(f"thread {i}: failing view answered {failed.status_code}")
            response = client.get(path, headers=headers)
            counted[i] += 1
            if response.status_code != 200:
                problems.append(f"thread {i} {path}: status {response.status_code}")
                continue
            check(response.json(), tenant, titles, f"thread {i} {path}", problems)
        state = client.get("/public/state").json()
        if state["tenant_id"] is not None or state["visible_notes"] or state["setting"]:
            problems.append(f"thread {i}: tenant left on the connection: {state}")

    run_threads(THREADS, work, problems)
    assert problems == []
    assert sum(counted) == THREADS * REQUESTS_PER_THREAD
    with run_as_system():
        assert not Note.objects.filter(title="leak").exists()
        assert Note.objects.count() == sum(len(titles) for _, titles in tenants)


def test_async_requests_on_interleaved_tenants_never_see_another_tenants_rows(tenants):
    handler = ASGIHandler()
    problems: list[str] = []
    paths = ["/async/notes", "/notes", "/public/async/decorated", "/t/{slug}/async/notes"]

    async def one(index: int) -> None:
        tenant, titles = tenants[index % len(tenants)]
        path = paths[(index // len(tenants)) % len(paths)].format(slug=tenant.slug)
        headers = (
            {}
            if "{slug}" in paths[(index // len(tenants)) % len(paths)]
            else {"X-Tenant-ID": tenant.slug if index % 2 else str(tenant.pk)}
        )
        status, body = await asgi_get(handler, path, headers)
        if status != 200:
            problems.append(f"async {index} {path}: status {status} {body}")
            return
        check(body, tenant, titles, f"async {index} {path}", problems)

    run_async(ASYNC_REQUESTS, one, ASYNC_IN_FLIGHT)
    assert problems == []
