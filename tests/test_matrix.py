"""The matrix of supported versions: the cell runs on what it names, and the lists agree."""

from __future__ import annotations

import ast
import io
import os
import re
from pathlib import Path

import django
import pytest
from django.db import connection

from better_audit import seams

ROOT = Path(__file__).resolve().parent.parent


def _cells() -> list[tuple[str, str, str]]:
    """noxfile.CELLS, read without importing nox."""
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CELLS":
            return [tuple(cell) for cell in ast.literal_eval(node.value)]
    raise AssertionError("noxfile.py has no CELLS")


def _readme_table() -> list[tuple[str, str, str]]:
    """The rows of the README's table of supported versions: (Python, Django, PostgreSQL)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Supported versions", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| (3\.\d+) \| (\d\.\d) \| (\d+) \|", section, re.MULTILINE)


@pytest.mark.django_db
def test_the_cell_runs_on_the_postgresql_it_names():
    wanted = os.environ.get("BETTER_MATRIX_POSTGRES")
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version_num')::int / 10000")
        major = cursor.fetchone()[0]
    assert major >= 15  # the oldest major the roles and policies are written for
    if wanted:
        assert str(major) == wanted


def test_the_cell_runs_on_the_django_it_names():
    wanted = os.environ.get("BETTER_MATRIX_DJANGO")
    if wanted:
        assert f"{django.VERSION[0]}.{django.VERSION[1]}" == wanted


def test_the_full_test_project_passes_djangos_system_checks():
    # Every app installed at once, on this release; the example's own check runs in its suite
    # (example_project/tests/test_checks.py, through tests/test_example.py).
    from django.core.management import call_command

    call_command("check", stdout=io.StringIO())


def test_the_readme_table_is_the_matrix_and_every_release_is_verified_for_capture():
    cells = _cells()
    assert _readme_table() == cells
    releases = {tuple(int(part) for part in cell[1].split(".")) for cell in cells}
    assert releases == set(seams.VERIFIED)
    # Every Django release meets every PostgreSQL major of the matrix.
    majors = {cell[2] for cell in cells}
    for release in {cell[1] for cell in cells}:
        assert {cell[2] for cell in cells if cell[1] == release} == majors, release


def test_the_package_admits_exactly_the_releases_of_the_matrix():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"Django>=5.2,<6.2"' in text
    assert 'requires-python = ">=3.11"' in text
    assert {cell[0] for cell in _cells()} == {"3.11", "3.12", "3.13"}
