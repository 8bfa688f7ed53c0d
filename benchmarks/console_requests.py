"""The console's tenant list route against a DRF list view, through Django's request stack.

Runs Django's WSGI handler in process (startproject's middleware stack, ``DEBUG = False``, one
persistent connection as the application role) on a database of its own (``bench_console``:
created when missing, migrated as the owner role, its ``--tenants`` tenants kept for the next
run). Each request asks for the first page of 50 tenants, oldest first:

* ``magic``: ``GET /.well-known/better/tenant/tenants?limit=50`` with the session token of a magic
  link sign-in (HS256 verification, then the ``better_console_sessions`` row looked up by the
  token's sha256); the handler reads in system mode (a transaction under the system role) and
  answers a bare array paged by ``limit`` and ``offset`` (no count), as the published tenant
  server does. The token comes from the handshake timed below.
* ``stateless``: the same route with an auto-approve token (HS256 verification only). Such tokens
  are accepted only in development or a test run, so the script sets up Django's test
  environment (``setup_test_environment(debug=False)``), as a test runner does.
* ``drf``: the baseline, the usual Django way: a DRF ``ListAPIView`` over the same tenants with
  ``TokenAuthentication`` (``rest_framework.authtoken``) and ``IsAdminUser``, a ``CursorPagination``
  of 50 ordered by ``(created_at, id)`` (no count, as the console's page) and a ``ModelSerializer``
  of ``id``, ``name``, ``slug`` and ``createdAt``.
* ``drf_offset``: the same view with ``LimitOffsetPagination`` (``?limit=50``), which also counts
  the table; shown for reference.

Before timing, every variant must answer 200 with the same 50 tenant ids in the same order. The
variants run in interleaved batches in a new random order each round; each figure is the median
time per request over the batches. The magic link handshake (``session/init`` with a
``SEND_CODE`` callable that keeps the code, ``session/verify``, ``session/claim``: three requests,
throttle counters included) is timed on its own, as handshakes per second. Usage:
``python benchmarks/console_requests.py [--tenants 1000] [--rounds 25] [--batch 40]
[--handshakes 200]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402
from _common import bench_database, grant_app_privileges, round_trip  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import (  # noqa: E402
    CaptureQueriesContext,
    override_settings,
    setup_test_environment,
)
from django.urls import include, path  # noqa: E402
from rest_framework import generics, serializers  # noqa: E402
from rest_framework.authentication import TokenAuthentication  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402
from rest_framework.pagination import CursorPagination, LimitOffsetPagination  # noqa: E402
from rest_framework.permissions import IsAdminUser  # noqa: E402

from better_console.conf import load  # noqa: E402
from better_console.models import ConsoleSession, MagicLink  # noqa: E402
from better_tenant import run_as_system  # noqa: E402
from better_tenant.api import create_tenant  # noqa: E402
from better_tenant.models import Tenant  # noqa: E402
from better_tenant.testing import connected_as_owner  # noqa: E402

DATABASE = "bench_console"
PAGE = 50
EMAIL = "bench@console.example.com"
CONSOLE_PATH = "/.well-known/better/tenant/tenants"
ORIGIN = "https://console.usebetter.dev"
# What `django-admin startproject` generates: the stack a real project has around both views.
DEFAULT_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# The codes SEND_CODE was handed, by session id (the handshake reads them back, not a mailbox).
codes: dict[str, str] = {}


def capture_code(email: str, session_id: str, code: str, **context: Any) -> None:
    codes[session_id] = code


def console_config(*, auto_approve: bool) -> dict[str, Any]:
    return {
        "TOKEN_HASH": "sha256:" + "b3c4f1a9" * 8,
        "AUTO_APPROVE": auto_approve,
        "MAGIC_LINK": {"ALLOWED_EMAILS": [EMAIL], "SEND_CODE": capture_code},
        "ALLOWED_ORIGINS": [ORIGIN],
        # Counted as usual, at a rate the timed handshakes never reach.
        "THROTTLE": "1000000/min",
    }


# --- the baseline ---------------------------------------------------------------------------------


class TenantSerializer(serializers.ModelSerializer):
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = Tenant
        fields = ["id", "name", "slug", "createdAt"]


class TenantCursorPagination(CursorPagination):
    page_size = PAGE
    page_size_query_param = "limit"
    max_page_size = 200
    ordering = ("created_at", "id")


class TenantOffsetPagination(LimitOffsetPagination):
    default_limit = PAGE
    max_limit = 200


class TenantList(generics.ListAPIView):
    queryset = Tenant.objects.all()
    serializer_class = TenantSerializer
    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAdminUser]
    pagination_class = TenantCursorPagination

    def list(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # Only system mode reads every tenant; the console's list runs in it too.
        with run_as_system():
            return super().list(request, *args, **kwargs)


class TenantOffsetList(TenantList):
    queryset = Tenant.objects.order_by("created_at", "id")
    pagination_class = TenantOffsetPagination


urlpatterns = [
    path("drf/tenants", TenantList.as_view()),
    path("drf/tenants-offset", TenantOffsetList.as_view()),
    path("", include("better_console.urls")),
]


# --- database -------------------------------------------------------------------------------------


def prepare(tenants: int) -> str:
    """Migrate as the owner, grant the app role, top the tenants up to ``tenants``."""
    bench_database(DATABASE)
    settings.DATABASES["default"]["NAME"] = DATABASE
    connection.close()
    connection.settings_dict["NAME"] = DATABASE
    app = settings.DATABASES["default"]["USER"]
    with connected_as_owner():
        call_command("migrate", verbosity=0)
        grant_app_privileges(connection, app)
    # The previous run's handshakes; every other row is kept.
    MagicLink.objects.filter(email=EMAIL).delete()
    ConsoleSession.objects.filter(email=EMAIL).delete()
    with run_as_system():
        have = set(Tenant.objects.values_list("slug", flat=True))
    start = time.perf_counter()
    # One transaction each, as sign-ups create them: distinct created_at values.
    made = 0
    for index in range(tenants):
        slug = f"bench-{index:05d}"
        if slug not in have:
            create_tenant(f"Bench tenant {index}", slug)
            made += 1
    with run_as_system():
        total = Tenant.objects.count()
    with connected_as_owner(), connection.cursor() as cursor:
        cursor.execute("ANALYZE tenants; ANALYZE better_console_sessions; ANALYZE authtoken_token")
    if made:
        return f"created {made:,} tenants in {time.perf_counter() - start:.1f} s ({total:,} in all)"
    return f"reused {total:,} tenants"


def drf_token() -> str:
    user, _ = get_user_model().objects.get_or_create(
        username="bench-console-admin", defaults={"is_staff": True, "email": EMAIL}
    )
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    token, _ = Token.objects.get_or_create(user=user)
    return token.key


# --- requests -------------------------------------------------------------------------------------


def environ(
    method: str, path_info: str, query: str = "", authorization: str = "", body: Any = None
) -> dict[str, Any]:
    raw = b"" if body is None else json.dumps(body).encode()
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path_info,
        "SCRIPT_NAME": "",
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "HTTP_ACCEPT": "application/json",
        # The console UI is a browser page of another origin.
        "HTTP_ORIGIN": ORIGIN,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "_body": raw,
    }
    if authorization:
        env["HTTP_AUTHORIZATION"] = authorization
    if body is not None:
        env["CONTENT_TYPE"] = "application/json"
        env["CONTENT_LENGTH"] = str(len(raw))
    return env


def request(handler: WSGIHandler, env: dict[str, Any]) -> bytes:
    statuses = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    response = handler({**env, "wsgi.input": io.BytesIO(env["_body"])}, start_response)
    try:
        body = b"".join(response)
    finally:
        response.close()
    if not statuses or not statuses[0].startswith(("200", "201")):
        raise RuntimeError(
            f"{env['REQUEST_METHOD']} {env['PATH_INFO']} answered {statuses}: {body[:300]!r}"
        )
    return body


def handshake(handler: WSGIHandler) -> str:
    """init -> verify -> claim over HTTP; returns the session token."""
    base = "/.well-known/better/console/session/"
    answer = json.loads(request(handler, environ("POST", base + "init", body={"email": EMAIL})))
    session_id = answer["sessionId"]
    code = codes.pop(session_id)
    verified = json.loads(
        request(
            handler, environ("POST", base + "verify", body={"session_id": session_id, "code": code})
        )
    )
    if verified.get("status") != "verified":
        raise RuntimeError(f"session/verify answered {verified}")
    claimed = json.loads(
        request(handler, environ("POST", base + "claim", body={"session_id": session_id}))
    )
    return claimed["sessionToken"]


def time_handshakes(handler: WSGIHandler, count: int) -> tuple[float, float, str]:
    """(handshakes per second, median ms per handshake, the last token)."""
    token = handshake(handler)  # warm-up
    samples = []
    start = time.perf_counter()
    for _ in range(count):
        begun = time.perf_counter()
        token = handshake(handler)
        samples.append(time.perf_counter() - begun)
    elapsed = time.perf_counter() - start
    return count / elapsed, statistics.median(samples) * 1000, token


def tenant_ids(name: str, body: bytes) -> list[str]:
    answer = json.loads(body)
    rows = answer["results"] if name.startswith("drf") else answer
    return [row["id"] for row in rows]


def check_same_answers(handler: WSGIHandler, envs: dict[str, dict[str, Any]]) -> list[str]:
    """Every variant must list the same tenants in the same order (else the timing is moot)."""
    ids = {name: tenant_ids(name, request(handler, env)) for name, env in envs.items()}
    first = ids["drf"]
    if len(first) != PAGE or any(found != first for found in ids.values()):
        raise RuntimeError(
            f"variants disagree: { {name: found[:3] for name, found in ids.items()} }"
        )
    return first


def queries_per_request(handler: WSGIHandler, env: dict[str, Any]) -> int:
    with CaptureQueriesContext(connection) as captured:
        request(handler, env)
    return len(captured.captured_queries)


def measure(
    handler: WSGIHandler, envs: dict[str, dict[str, Any]], rounds: int, batch: int
) -> dict[str, float]:
    for _ in range(50):  # warm-up: connection, plans, code paths
        for env in envs.values():
            request(handler, env)
    timings: dict[str, list[float]] = {name: [] for name in envs}
    order = list(envs)
    rng = random.Random(5)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            env = envs[name]
            start = time.perf_counter()
            for _ in range(batch):
                request(handler, env)
            timings[name].append((time.perf_counter() - start) / batch)
    return {name: statistics.median(values) for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--handshakes", type=int, default=200)
    args = parser.parse_args()
    if args.tenants < PAGE:
        parser.error(f"--tenants must be at least {PAGE} (one full page)")
    for name in ("rounds", "batch", "handshakes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")

    # Auto-approve tokens are refused outside development and test runs; DEBUG stays off, since
    # it records every query, which would dominate the timings.
    setup_test_environment(debug=False)
    settings.ROOT_URLCONF = __name__
    settings.DATABASES["default"]["CONN_MAX_AGE"] = None
    connection.settings_dict["CONN_MAX_AGE"] = None
    print(f"{DATABASE}: {prepare(args.tenants)}")
    drf_key = drf_token()

    with override_settings(MIDDLEWARE=DEFAULT_MIDDLEWARE):
        handler = WSGIHandler()

    # The handshake runs with magic links only: with AUTO_APPROVE on, init answers a token.
    with override_settings(BETTER_CONSOLE=console_config(auto_approve=False)):
        load()  # parsed once, as in a running server
        rate, handshake_ms, magic_token = time_handshakes(handler, args.handshakes)

    with override_settings(BETTER_CONSOLE=console_config(auto_approve=True)):
        load()
        init = environ("POST", "/.well-known/better/console/session/init", body={})
        stateless_token = json.loads(request(handler, init))["sessionToken"]
        query = f"limit={PAGE}"
        envs = {
            "magic": environ("GET", CONSOLE_PATH, query, f"Bearer {magic_token}"),
            "stateless": environ("GET", CONSOLE_PATH, query, f"Bearer {stateless_token}"),
            "drf": environ("GET", "/drf/tenants", query, f"Token {drf_key}"),
            "drf_offset": environ("GET", "/drf/tenants-offset", query, f"Token {drf_key}"),
        }
        ids = check_same_answers(handler, envs)
        queries = {name: queries_per_request(handler, env) for name, env in envs.items()}
        result = measure(handler, envs, args.rounds, args.batch)
        # The session must still be good after the run (nothing was timed against errors).
        check_same_answers(handler, envs)
    trip = round_trip(connection)

    labels = {
        "magic": "console, magic link session (JWT + session row)",
        "stateless": "console, auto-approve token (JWT only)",
        "drf": "DRF ListAPIView, TokenAuthentication, CursorPagination",
        "drf_offset": "DRF ListAPIView, TokenAuthentication, LimitOffsetPagination",
    }
    total = args.rounds * args.batch
    with run_as_system():
        tenant_count = Tenant.objects.count()
    print(
        f"{total:,} timed requests per variant, {tenant_count:,} tenants, first page of "
        f"{PAGE} (same {len(ids)} ids in every variant), startproject's middleware stack, "
        "persistent connection"
    )
    drf = result["drf"]
    for name, seconds in result.items():
        print(
            f"  {name:10s} {seconds * 1000:.3f} ms  {1 / seconds:7,.0f} requests/s  "
            f"ratio {seconds / drf:.2f}  {queries[name]} SQL statements  {labels[name]}"
        )
    print(f"  one database round trip (SELECT 1): {trip * 1e6:.0f} us")
    print(
        f"  magic link handshake (init, verify, claim): {rate:,.0f} handshakes/s, "
        f"{handshake_ms:.2f} ms median, {args.handshakes} handshakes"
    )
    magic, stateless = result["magic"], result["stateless"]
    print(
        f"console_requests: ratio {magic / drf:.2f} in time per request (console with a magic "
        f"link session {1 / magic:,.0f} requests/s vs DRF ListAPIView + TokenAuthentication "
        f"{1 / drf:,.0f} requests/s); auto-approve token ratio {stateless / drf:.2f} "
        f"({1 / stateless:,.0f} requests/s); {tenant_count:,} tenants, page of {PAGE}; "
        f"handshake {rate:,.0f}/s"
    )


if __name__ == "__main__":
    main()
