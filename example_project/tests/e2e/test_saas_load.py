"""The bounded load test of the example SaaS (benchmarks/example_load.py), run with a tiny bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.example_load import check_page

ROOT = Path(__file__).resolve().parents[3]
ACME, GLOBEX = "5b0d9d1e-0000-4000-8000-00000000000a", "5b0d9d1e-0000-4000-8000-00000000000b"


def page(*rows):
    return json.dumps({"data": list(rows), "has_more": False}).encode()


def test_the_checker_flags_a_foreign_row():
    own = {1: "Rocket skates", 2: "Giant magnet"}
    good = page(
        {"id": 1, "name": "Rocket skates", "tenant_id": ACME},
        {"id": 2, "name": "Giant magnet", "tenant_id": ACME},
    )
    assert check_page(200, good, ACME, own, 20) == []
    leaked = page(
        {"id": 1, "name": "Rocket skates", "tenant_id": ACME},
        {"id": 3, "name": "Hammock district", "tenant_id": GLOBEX},
    )
    [problem] = check_page(200, leaked, ACME, own, 20)
    assert problem.startswith("FOREIGN ROW") and "Hammock district" in problem
    # A row relabelled with the right tenant but not one of the tenant's is caught too.
    relabelled = page({"id": 3, "name": "Hammock district", "tenant_id": ACME})
    assert any("FOREIGN ROW" in p for p in check_page(200, relabelled, ACME, own, 20))
    assert check_page(500, b"boom", ACME, own, 20) == ["status 500: b'boom'"]


def test_the_load_test_runs_with_a_tiny_bound():
    database = os.environ.get("BETTER_TEST_DB", "test_better") + "_load"
    command = [
        sys.executable,
        "benchmarks/example_load.py",
        "--requests=24",
        "--concurrency=2",
        "--rounds=2",
        "--projects=30",
        f"--database={database}",
        "--drop",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("example_load: ratio ")
    assert "requests/s vs baseline without tenancy" in last
    assert "24 requests per variant, 2 tenants, 0 foreign rows in 56 responses" in last
    assert "and 10 cross-tenant lookups (404)" in done.stdout
