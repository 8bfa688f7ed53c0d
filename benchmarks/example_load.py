"""Bounded load test of the example SaaS: its tenant-scoped API on loopback, beside a baseline.

The example project (``example_project.settings``: every middleware, audit, JWT, row-level security)
runs in a server process of its own (Django's threaded WSGI server on 127.0.0.1, HTTP/1.1
keep-alive, persistent database connections, ``DEBUG`` turned off once the apps are loaded) on a
database of its own (``bench_example``: created when missing, migrated as the owner role, used as
the application role; ``--drop`` removes it afterwards). Two tenants (Acme and Globex of ``manage.py
demo_data``) get ``--projects`` projects each. This process signs in as alice (Acme) and bob
(Globex) through ``POST /api/auth/token`` and sends ``--requests`` requests per variant from
``--concurrency`` threads, each thread on its own connection, alternating the two tenants:

* ``api``: ``GET /api/projects?limit=<page>``, the SaaS's list view. TenantMiddleware resolves
  the tenant from the token and runs the view as that tenant, each query carrying it (a read
  opens no transaction); DRF authenticates the token and checks the membership; the query has no
  tenant filter of its own (RLS).
* ``baseline``: the same page of the same rows, serialized the same way, from a copy of the table
  without RLS, outside TenantMiddleware: the view verifies the same token, loads the user and
  filters with ``WHERE tenant_id = <the token's tenant>``.

The variants alternate in ``--rounds`` chunks. Every response of both is checked: status 200, a
full page, and each row one of the requesting tenant's own (its id, name and ``tenant_id``).
Afterwards each token asks for a few of the other tenant's projects by id, which must be 404. A
single foreign row or a cross-tenant answer other than 404 is printed and the script exits 1.

The last line gives both rates and their ratio. The absolute figures are those of Django's
development server sharing the machine's cores with PostgreSQL and this client; the ratio is the
cost of the tenancy (tenant resolution, the tenant carried on each query, the membership check,
RLS) on top of the same authentication, serialization and middleware. Usage:
``python benchmarks/example_load.py [--requests 500] [--concurrency 4] [--projects 200]
[--page 20] [--rounds 4] [--database bench_example] [--atomic] [--drop]``; ``--atomic`` runs
each tenant view in one transaction (``BETTER_TENANT["ATOMIC"]``), as before statements carried
the tenant.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATABASE = "bench_example"
PLAIN_TABLE = "bench_projects_plain"
TENANTS = ("acme", "globex")
PROBES = 5  # cross-tenant lookups per token after the timed run


# --- checks (pure functions) ---------------------------------------------------------------------


def check_page(
    status: int, body: bytes, tenant_id: str, own: dict[int, str], page: int
) -> list[str]:
    """What is wrong with one list response for ``tenant_id``; ``own`` maps its ids to names."""
    if status != 200:
        return [f"status {status}: {body[:200]!r}"]
    try:
        rows = json.loads(body)["data"]
    except (ValueError, KeyError, TypeError):
        return [f"not a page of projects: {body[:200]!r}"]
    problems = []
    for row in rows:
        if row.get("tenant_id") != tenant_id or own.get(row.get("id")) != row.get("name"):
            problems.append(f"FOREIGN ROW for tenant {tenant_id}: {row}")
    if len(rows) != min(page, len(own)):
        problems.append(f"{len(rows)} rows instead of {min(page, len(own))}")
    return problems


# --- the server (a process of its own) -----------------------------------------------------------


def configure(database: str, atomic: bool = False) -> None:
    """Set up Django with the example project's settings on the benchmark's database."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
    from django.conf import settings

    owner = settings.DATABASE_OWNER
    default = settings.DATABASES["default"]
    default["NAME"] = database
    default["CONN_MAX_AGE"] = None
    default["TEST"] = {"OWNER": {"USER": owner["USER"], "PASSWORD": owner.get("PASSWORD", "")}}
    settings.BETTER_TENANT = {
        **settings.BETTER_TENANT,
        "EXEMPT_PATHS": [*settings.BETTER_TENANT["EXEMPT_PATHS"], "/baseline/"],
        "ATOMIC": atomic,
    }
    import django

    django.setup()


def plain_model() -> Any:
    """The unmanaged model of the table without RLS that the baseline reads."""
    from django.db import models

    class PlainProject(models.Model):
        tenant_id = models.UUIDField()
        name = models.CharField(max_length=200)
        created_at = models.DateTimeField()

        class Meta:
            app_label = "projects"
            db_table = PLAIN_TABLE
            managed = False
            ordering = ["-created_at", "-id"]

        def __str__(self) -> str:
            return self.name

    return PlainProject


def baseline_urlpatterns() -> list[Any]:
    from django.contrib.auth import get_user_model
    from django.urls import include, path
    from rest_framework import serializers
    from rest_framework.authentication import BaseAuthentication
    from rest_framework.exceptions import AuthenticationFailed
    from rest_framework.response import Response

    from better_core.jwt import bearer_token
    from example_project.projects.api.views import ApiView, _listing
    from example_project.projects.auth import read_token

    plain = plain_model()

    class PlainSerializer(serializers.ModelSerializer):
        class Meta:
            model = plain
            fields = ["id", "name", "tenant_id", "created_at"]

    class TokenOnly(BaseAuthentication):
        """The API's token check and user lookup, without tenant or membership."""

        def authenticate(self, request: Any) -> Any:
            token = bearer_token(request)
            claims = read_token(token) if token else None
            if claims is None:
                raise AuthenticationFailed("invalid token", code="TOKEN_INVALID")
            user = get_user_model().objects.filter(pk=int(claims["sub"]), is_active=True).first()
            if user is None:
                raise AuthenticationFailed("inactive", code="USER_INACTIVE")
            return user, claims

    class BaselineView(ApiView):
        authentication_classes = [TokenOnly]
        permission_classes: list[Any] = []

        def get(self, request: Any) -> Response:
            rows = plain.objects.filter(tenant_id=request.auth["tenant"])
            return _listing(request, rows, PlainSerializer)

    return [
        path("baseline/projects", BaselineView.as_view()),
        path("", include("example_project.urls")),
    ]


def serve(database: str, atomic: bool) -> None:
    """Serve the example project (and the baseline view) on 127.0.0.1 until SIGTERM."""
    configure(database, atomic)
    import types

    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    # After setup: the apps check their settings against DEBUG as configured. DEBUG records
    # every query, which would dominate the timings.
    settings.DEBUG = False
    urls = types.ModuleType("example_load_urls")
    urls.urlpatterns = baseline_urlpatterns()
    sys.modules[urls.__name__] = urls
    settings.ROOT_URLCONF = urls.__name__

    class QuietHandler(WSGIRequestHandler):
        def setup(self) -> None:
            super().setup()
            # wsgiref writes the headers and the body separately: without this, Nagle's algorithm
            # holds the body back until the client's delayed ACK (40 ms) of the headers.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler)
    server.request_queue_size = 64
    server.set_app(WSGIHandler())
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()


# --- the database --------------------------------------------------------------------------------


def prepare(projects: int) -> dict[str, Any]:
    """Migrate, seed both tenants with ``projects`` projects each, copy them to the plain table."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from benchmarks._common import grant_app_privileges
    from better_tenant import run_as, run_as_system
    from better_tenant.testing import connected_as_owner
    from example_project.projects import demo
    from example_project.projects.models import Project

    app = settings.DATABASES["default"]["USER"]
    with connected_as_owner():
        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {PLAIN_TABLE} "
                "(LIKE projects INCLUDING DEFAULTS INCLUDING INDEXES)"
            )
        grant_app_privileges(connection, app)
    seeded = demo.seed("http://127.0.0.1:9")
    own: dict[str, dict[int, str]] = {}
    for slug in TENANTS:
        with run_as(seeded.tenants[slug]):
            have = set(Project.objects.values_list("name", flat=True))
            missing = [
                f"{slug} load {n:05d}"
                for n in range(projects)
                if f"{slug} load {n:05d}" not in have
            ]
            Project.objects.bulk_create([Project(name=name) for name in missing], batch_size=1000)
            own[str(seeded.tenants[slug].pk)] = dict(Project.objects.values_list("id", "name"))
    with run_as_system(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {PLAIN_TABLE}")
        cursor.execute(
            f"INSERT INTO {PLAIN_TABLE} (id, tenant_id, name, created_at) "
            "SELECT id, tenant_id, name, created_at FROM projects"
        )
    with connected_as_owner(), connection.cursor() as cursor:
        cursor.execute(f"ANALYZE projects; ANALYZE {PLAIN_TABLE}; ANALYZE memberships")
    return own


def drop(database: str) -> None:
    from django.db import connection, connections

    from better_tenant.testing import connected_as_owner

    connections.close_all()
    with connected_as_owner(), connection._nodb_cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


# --- the client ----------------------------------------------------------------------------------


class Server:
    """The server process, started with this script's ``--serve``."""

    def __init__(self, database: str, atomic: bool) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--serve", "--database", database]
        command += ["--atomic"] if atomic else []
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ}
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.startswith("listening "):
            self.stop()
            raise SystemExit(f"The server did not start (it printed {line!r}).")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def request(
    conn: HTTPConnection, method: str, path: str, token: str | None = None, body: Any = None
) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def sign_in(port: int) -> dict[str, str]:
    """tenant id -> access token of the tenant's owner, through POST /api/auth/token."""
    from example_project.projects import demo

    conn = HTTPConnection("127.0.0.1", port, timeout=30)
    tokens = {}
    for _name, slug, email, _projects in demo.TENANTS:
        status, body = request(
            conn,
            "POST",
            "/api/auth/token",
            body={"email": email, "password": demo.DEMO_PASSWORD, "tenant": slug},
        )
        if status != 200:
            raise SystemExit(f"POST /api/auth/token for {email} answered {status}: {body[:200]!r}")
        answer = json.loads(body)
        tokens[answer["tenant"]["id"]] = answer["access"]
    conn.close()
    return tokens


def run_chunk(
    port: int,
    path: str,
    count: int,
    concurrency: int,
    tokens: dict[str, str],
    own: dict[str, dict[int, str]],
    page: int,
    problems: list[str],
) -> float:
    """``count`` requests of ``path`` from ``concurrency`` threads; returns the seconds taken."""
    tenants = list(tokens)
    shares = [
        count // concurrency + (1 if n < count % concurrency else 0) for n in range(concurrency)
    ]
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1)

    def work(index: int, share: int) -> None:
        conn = HTTPConnection("127.0.0.1", port, timeout=60)
        conn.connect()
        barrier.wait()
        found = []
        for n in range(share):
            tenant = tenants[(index + n) % len(tenants)]
            status, body = request(conn, "GET", f"{path}?limit={page}", tokens[tenant])
            found.extend(check_page(status, body, tenant, own[tenant], page))
        conn.close()
        if found:
            with lock:
                problems.extend(f"{path}: {problem}" for problem in found)

    threads = [threading.Thread(target=work, args=(i, share)) for i, share in enumerate(shares)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def probe_other_tenants(
    port: int, tokens: dict[str, str], own: dict[str, dict[int, str]]
) -> tuple[int, list[str]]:
    """Each token asks for some of the other tenant's projects by id: all must be 404."""
    conn = HTTPConnection("127.0.0.1", port, timeout=30)
    problems, probes = [], 0
    for tenant, token in tokens.items():
        for other, rows in own.items():
            if other == tenant:
                continue
            for project_id in sorted(rows)[:PROBES]:
                status, body = request(conn, "GET", f"/api/projects/{project_id}", token)
                probes += 1
                if status != 404:
                    problems.append(
                        f"FOREIGN ROW: tenant {tenant} read project {project_id} of {other}: "
                        f"{status} {body[:200]!r}"
                    )
    conn.close()
    return probes, problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="requests per variant")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads")
    parser.add_argument("--projects", type=int, default=200, help="projects per tenant")
    parser.add_argument("--page", type=int, default=20, help="rows per page (1-200)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating chunks per variant")
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument(
        "--atomic",
        action="store_true",
        help="BETTER_TENANT['ATOMIC'] = True: each tenant view in one transaction",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.database, args.atomic)
        return
    for name in ("requests", "concurrency", "projects", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if not 1 <= args.page <= 200:
        parser.error("--page must be from 1 to 200")
    if args.requests < args.rounds * args.concurrency:
        parser.error("--requests must be at least --rounds x --concurrency")

    from benchmarks._common import bench_database

    bench_database(args.database)
    configure(args.database)
    started = time.perf_counter()
    own = prepare(args.projects)
    print(
        f"example_load: database {args.database}, 2 tenants x {args.projects} projects "
        f"(+ the demo's), prepared in {time.perf_counter() - started:.1f} s"
    )
    server = Server(args.database, args.atomic)
    problems: list[str] = []
    try:
        tokens = sign_in(server.port)
        variants = {"api": "/api/projects", "baseline": "/baseline/projects"}
        # Warm-up: connections, code paths, caches of both variants.
        for path in variants.values():
            run_chunk(
                server.port,
                path,
                2 * args.concurrency,
                args.concurrency,
                tokens,
                own,
                args.page,
                problems,
            )
        seconds = dict.fromkeys(variants, 0.0)
        chunk = args.requests // args.rounds
        for round_number in range(args.rounds):
            size = (
                chunk
                if round_number < args.rounds - 1
                else args.requests - chunk * (args.rounds - 1)
            )
            order = list(variants) if round_number % 2 == 0 else list(reversed(variants))
            for name in order:
                seconds[name] += run_chunk(
                    server.port,
                    variants[name],
                    size,
                    args.concurrency,
                    tokens,
                    own,
                    args.page,
                    problems,
                )
        probes, cross = probe_other_tenants(server.port, tokens, own)
        problems.extend(cross)
    finally:
        server.stop()
        if args.drop:
            drop(args.database)
    rates = {name: args.requests / spent for name, spent in seconds.items()}
    responses = 2 * (args.requests + 2 * args.concurrency)
    print(
        f"  {args.requests:,} requests per variant from {args.concurrency} threads over keep-alive "
        f"connections, page of {args.page}, alternating acme and globex"
    )
    print(f"  api      {rates['api']:,.0f} requests/s  GET /api/projects (JWT, tenant scope, RLS)")
    print(f"  baseline {rates['baseline']:,.0f} requests/s  same page, no tenancy, WHERE tenant_id")
    print(
        f"  checked {responses:,} list responses row by row and {probes} cross-tenant lookups (404)"
    )
    if problems:
        for problem in problems[:20]:
            print(f"  {problem}", file=sys.stderr)
        print(
            f"example_load: FAILED, {len(problems)} responses broke tenant isolation or failed "
            "(first ones above)"
        )
        raise SystemExit(1)
    print(
        f"example_load: ratio {rates['baseline'] / rates['api']:.2f} in time per request "
        f"(api {rates['api']:,.0f} requests/s vs baseline without tenancy "
        f"{rates['baseline']:,.0f} requests/s), {args.requests:,} requests per variant, "
        f"2 tenants, 0 foreign rows in {responses:,} responses"
    )


if __name__ == "__main__":
    main()
