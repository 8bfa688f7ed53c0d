"""Cost of a request through TenantMiddleware against the same view without it.

Runs Django's WSGI handler in process, on a database of its own (``bench_better``, created and
migrated as the owner role, dropped at the end unless ``--keep``), as the application role with a
persistent connection, ``DEBUG = False``:

* ``plain``: no TenantMiddleware; the view reads the X-Tenant-ID header and filters a table
  without RLS explicitly (``WHERE tenant_id = ...``); this is the baseline.
* ``uuid`` / ``slug``: TenantMiddleware resolves the X-Tenant-ID header (a UUID, or a slug looked
  up through the cache) and the view queries the RLS table with no filter of its own; the
  statement carries the tenant (``better_tenant.statements``).
* ``one_txn``: ``uuid`` with ``BETTER_TENANT["ATOMIC"] = True``, the whole view in one
  transaction (BEGIN with the settings, the query, COMMIT): the behaviour before statements
  carried the tenant.
* ``run_as``: no middleware; the view wraps its query in ``run_as(uuid)`` by hand (a transaction).
* ``atomic``: the baseline view inside ``transaction.atomic()``, i.e. what ``ATOMIC_REQUESTS``
  costs a project that already runs each view in a transaction.
* ``plain10`` / ``uuid10`` / ``one_txn10``: the same with a view that runs ten queries.

Both tables hold the same rows and the same (tenant_id, created) index. The variants run in
interleaved batches; each figure is the median time per request over the batches. Usage:
``python benchmarks/middleware_overhead.py [--tenants 200] [--rows 500] [--rounds 40]
[--batch 150] [--bare] [--keep]``. Both handlers carry the middleware that ``startproject``
generates; ``--bare`` leaves them out.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402
from _common import grant_app_privileges, round_trip  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.cache import caches  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections, models, transaction  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.urls import path  # noqa: E402

from better_tenant import resolvers, run_as, run_as_system  # noqa: E402
from better_tenant.api import create_tenant  # noqa: E402
from better_tenant.conf import tenant_settings  # noqa: E402
from better_tenant.testing import connected_as_owner  # noqa: E402
from tests.testapp.models import Note  # noqa: E402

DATABASE = "bench_better"
PAGE = 20
TENANT_MIDDLEWARE = "better_tenant.middleware.TenantMiddleware"
# What `django-admin startproject` generates: the stack a real project has around the middleware.
DEFAULT_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]


class PlainNote(models.Model):
    """The same columns as ``Note`` in a table without RLS, filtered by hand."""

    tenant_id = models.UUIDField()
    title = models.CharField(max_length=200)
    body = models.TextField(default="")
    score = models.IntegerField(default=0)
    created = models.DateTimeField()

    class Meta:
        app_label = "testapp"
        db_table = "bench_notes_plain"
        managed = False
        indexes = [models.Index(fields=["tenant_id", "created"], name="bench_plain_tenant_created")]

    def __str__(self) -> str:
        return self.title


def rls_view(request, queries: int = 1):
    rows = []
    for page in range(queries):
        start = page * PAGE
        rows += Note.objects.order_by("-created").values_list("id", "title")[start : start + PAGE]
    return JsonResponse({"notes": rows})


def plain_view(request, queries: int = 1):
    tenant_id = uuid.UUID(request.META["HTTP_X_TENANT_ID"])
    rows = []
    for page in range(queries):
        start = page * PAGE
        rows += (
            PlainNote.objects.filter(tenant_id=tenant_id)
            .order_by("-created")
            .values_list("id", "title")[start : start + PAGE]
        )
    return JsonResponse({"notes": rows})


def atomic_view(request):
    with transaction.atomic():
        return plain_view(request)


def run_as_view(request):
    with run_as(request.META["HTTP_X_TENANT_ID"]):
        return rls_view(request)


urlpatterns = [
    path("rls", rls_view),
    path("plain", plain_view),
    path("rls10", rls_view, {"queries": 10}),
    path("plain10", plain_view, {"queries": 10}),
    path("run-as", run_as_view),
    path("atomic", atomic_view),
]


# --- database ------------------------------------------------------------------------------------


def create_database() -> None:
    with connected_as_owner(), connection._nodb_cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{DATABASE}"')
        cursor.execute(f'CREATE DATABASE "{DATABASE}"')
    for conn in (connection,):
        conn.close()
        conn.settings_dict["NAME"] = DATABASE
    settings.DATABASES["default"]["NAME"] = DATABASE


def drop_database() -> None:
    connections.close_all()
    with connected_as_owner(), connection._nodb_cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{DATABASE}"')


def migrate_and_seed(tenants: int, rows: int) -> list[tuple[str, str]]:
    app = settings.DATABASES["default"]["USER"]
    with connected_as_owner():
        call_command("migrate", verbosity=0)
        with connection.schema_editor() as editor:
            editor.create_model(PlainNote)
            # The schema editor leaves the indexes of unmanaged models out.
            for index in PlainNote._meta.indexes:
                editor.add_index(PlainNote, index)
        grant_app_privileges(connection, app)
    made = []
    rng = random.Random(7)
    start = time.perf_counter()
    for index in range(tenants):
        tenant = create_tenant(f"Bench {index}", f"bench-{index}")
        with run_as(tenant):
            Note.objects.bulk_create(
                [
                    Note(title=f"note {index}-{n}", body="x" * rng.randint(10, 200), score=n)
                    for n in range(rows)
                ],
                batch_size=2000,
            )
        made.append((str(tenant.pk), tenant.slug))
    with run_as_system(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO bench_notes_plain (id, tenant_id, title, body, score, created) "
            "SELECT id, tenant_id, title, body, score, created FROM test_notes"
        )
    with connected_as_owner(), connection.cursor() as cursor:
        cursor.execute("ANALYZE test_notes; ANALYZE bench_notes_plain; ANALYZE tenants")
    print(
        f"seeded {tenants} tenants x {rows} rows in each table in "
        f"{time.perf_counter() - start:.1f} s"
    )
    return made


# --- requests ------------------------------------------------------------------------------------


def environ(path_info: str, tenant_header: str) -> dict:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path_info,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "HTTP_X_TENANT_ID": tenant_header,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def request(handler: WSGIHandler, env: dict) -> bytes:
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    response = handler({**env, "wsgi.input": io.BytesIO(b"")}, start_response)
    try:
        body = b"".join(response)
    finally:
        response.close()
    if not statuses or not statuses[0].startswith("200"):
        raise RuntimeError(f"{env['PATH_INFO']} answered {statuses}: {body[:300]!r}")
    return body


def check_same_answers(variants: dict, tenants: list[tuple[str, str]]) -> None:
    """Every variant must return the same page for the same tenant (else the timing is moot)."""
    for tenant_id, slug in tenants[:5]:
        bodies = {}
        for name, (handler, path_info, atomic) in variants.items():
            with tenant_atomic(atomic):
                bodies[name] = request(
                    handler, environ(path_info, slug if name == "slug" else tenant_id)
                )
        for suffix in ("", "10"):
            group = {v for name, v in bodies.items() if name.endswith("10") == bool(suffix)}
            if len(group) != 1 or b'"notes": []' in bodies["plain" + suffix]:
                raise RuntimeError(f"variants disagree for tenant {slug}: {bodies}")


def tenant_atomic(atomic: bool) -> override_settings:
    return override_settings(
        BETTER_TENANT={"HEADER": "X-Tenant-ID", "EXEMPT_PATHS": [], "ATOMIC": atomic}
    )


def measure(variants: dict, tenants: list[tuple[str, str]], rounds: int, batch: int) -> dict:
    envs = {
        name: [environ(path_info, slug if name == "slug" else tid) for tid, slug in tenants]
        for name, (_handler, path_info, _atomic) in variants.items()
    }
    timings: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    position = 0
    for _ in range(2):  # warm-up: every tenant's identifiers cached, connection, code paths
        for name, (handler, _path, atomic) in variants.items():
            with tenant_atomic(atomic):
                for env in envs[name]:
                    request(handler, env)
    rng = random.Random(11)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            handler, _path, atomic = variants[name]
            batch_envs = [envs[name][(position + k) % len(tenants)] for k in range(batch)]
            with tenant_atomic(atomic):
                start = time.perf_counter()
                for env in batch_envs:
                    request(handler, env)
                timings[name].append((time.perf_counter() - start) / batch)
        position += batch
    return {name: statistics.median(values) for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--rows", type=int, default=500, help="rows per tenant")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--batch", type=int, default=150)
    parser.add_argument("--bare", action="store_true", help="no other middleware")
    parser.add_argument("--keep", action="store_true", help="keep the bench_better database")
    args = parser.parse_args()

    settings.DEBUG = False  # DEBUG records every query, which would dominate the timings
    # Room for every tenant's id and slug: the default 300 entries would evict them and turn
    # cached resolutions into queries (a deployment uses a shared cache such as Redis).
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }
    settings.ROOT_URLCONF = __name__
    settings.DATABASES["default"]["CONN_MAX_AGE"] = None
    connection.settings_dict["CONN_MAX_AGE"] = None
    settings.BETTER_TENANT = {"HEADER": "X-Tenant-ID", "EXEMPT_PATHS": []}
    tenant_settings.reload()
    resolvers.plan.cache_clear()

    create_database()
    try:
        tenants = migrate_and_seed(args.tenants, args.rows)
        base = [] if args.bare else DEFAULT_MIDDLEWARE
        with override_settings(MIDDLEWARE=base):
            plain_handler = WSGIHandler()
        with override_settings(MIDDLEWARE=[*base, TENANT_MIDDLEWARE]):
            tenant_handler = WSGIHandler()
        variants = {
            "plain": (plain_handler, "/plain", False),
            "uuid": (tenant_handler, "/rls", False),
            "slug": (tenant_handler, "/rls", False),
            "one_txn": (tenant_handler, "/rls", True),
            "run_as": (plain_handler, "/run-as", False),
            "atomic": (plain_handler, "/atomic", False),
            "plain10": (plain_handler, "/plain10", False),
            "uuid10": (tenant_handler, "/rls10", False),
            "one_txn10": (tenant_handler, "/rls10", True),
        }
        if caches["default"]._max_entries < 2 * len(tenants):
            raise RuntimeError("the identifier cache is too small for the benchmark's tenants")
        check_same_answers(variants, tenants)
        result = measure(variants, tenants, args.rounds, args.batch)
        trip = round_trip(connection)
    finally:
        if args.keep:
            connections.close_all()
        else:
            drop_database()

    stack = "no other middleware" if args.bare else "startproject's middleware stack"
    total = args.rounds * args.batch
    print(
        f"{total} timed requests per variant, {args.tenants} tenants x {args.rows} rows, "
        f"page of {PAGE}, {stack}, persistent connection"
    )
    for name, seconds in result.items():
        base = result["plain10" if name.endswith("10") else "plain"]
        print(f"  {name:9s} {seconds * 1000:.3f} ms/request  ratio {seconds / base:.2f}")
    print(f"  one database round trip (SELECT 1): {trip * 1e6:.0f} us")
    plain = result["plain"]
    print(
        f"  added per request: {(result['uuid'] - plain) * 1e6:.0f} us with the tenant on the "
        f"statement, {(result['one_txn'] - plain) * 1e6:.0f} us with one transaction (ATOMIC)"
    )
    print(
        f"  ten queries: ratio {result['uuid10'] / result['plain10']:.2f} with the tenant on each "
        f"statement, {result['one_txn10'] / result['plain10']:.2f} in one transaction (ATOMIC)"
    )
    print(
        f"middleware_overhead: ratio {result['uuid'] / result['plain']:.2f} (uuid header) / "
        f"{result['slug'] / result['plain']:.2f} (slug header) vs no middleware, "
        f"{result['one_txn'] / result['plain']:.2f} with ATOMIC (one transaction) "
        f"({result['uuid'] * 1000:.2f} ms vs {result['plain'] * 1000:.2f} ms per request, {stack})"
    )


if __name__ == "__main__":
    main()
