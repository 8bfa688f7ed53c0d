"""Django settings of benchmarks/audit_overhead.py: its own database, the three audit libraries.

The database (``bench_audit``) is created by ``_common.bench_database`` and reached as the
application role; ``TEST.OWNER`` names the owner role, which ``connected_as_owner()`` switches to
for the migrations. better_tenant is installed so that the audit table has its row-level security
and the tenant variant can run inside ``run_as``; the compared models themselves are plain tables.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import bench_database  # noqa: E402

DATABASE = "bench_audit"


def _django_database(conninfo: str) -> dict:
    parts = conninfo_to_dict(conninfo)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.get("dbname", DATABASE),
        "USER": parts.get("user", ""),
        "PASSWORD": parts.get("password", ""),
        "HOST": parts.get("host", ""),
        "PORT": parts.get("port", ""),
    }


_bench = bench_database(DATABASE)
_owner = _django_database(_bench.owner_conninfo)
DATABASES = {
    "default": {
        **_django_database(_bench.app_conninfo),
        # One persistent connection: the figures are statements, not connection set-up.
        "CONN_MAX_AGE": None,
        "TEST": {"OWNER": {"USER": _owner["USER"], "PASSWORD": _owner["PASSWORD"]}},
        # BENCH_SERVER_SIDE_BINDING=1: Django's server-side parameters, with which psycopg
        # prepares a statement once it has run five times (every variant's, ours too).
        "OPTIONS": {"server_side_binding": os.environ.get("BENCH_SERVER_SIDE_BINDING") == "1"},
    }
}

SECRET_KEY = "benchmark-only-not-secret"
DEBUG = False  # DEBUG records every query, which would dominate the timings
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "better_tenant",
    "better_audit",
    "auditlog",
    "simple_history",
    "pgtrigger",
    "pghistory",
    "benchmarks.benchapp",
]
MIDDLEWARE: list[str] = []
BETTER_AUDIT = {
    "TABLES": ["bench_audited", "bench_tenant_audited"],
    "CELERY": False,
}
