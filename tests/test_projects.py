"""The test projects, each with only some of the apps, run in pytest subprocesses of their own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Each project and the number of tests its suite runs at least (a guard against a suite that
#: silently collects less, e.g. after a rename).
PROJECTS = {
    "audit_only": 11,
    "console_only": 5,
    "mail_only": 10,
    "no_tenant": 28,
    "tenant_only": 6,
}


def project_command(name: str) -> list[str]:
    """The pytest command line of one project, run from the repository root."""
    return [
        sys.executable,
        "-m",
        "pytest",
        f"tests/projects/{name}",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--ds=tests.projects.{name}.settings",
        # tests/conftest.py (the main suite's harness and collect_ignore) stays out of the run.
        "--confcutdir=tests/projects",
    ]


def passed_count(output: str) -> int:
    """The number of passed tests in pytest's summary line, 0 without one."""
    found = re.findall(r"(\d+) passed", output)
    return int(found[-1]) if found else 0


def test_every_project_directory_is_run():
    folders = {path.parent.name for path in (ROOT / "tests" / "projects").glob("*/settings.py")}
    assert folders == set(PROJECTS)


# pytest-django configures Django once per process, from one settings module: each project's
# INSTALLED_APPS need a process of their own.
@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_project_suite_passes(name: str) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        # The project's own settings; an outer xdist worker's name would rename its database.
        if key != "DJANGO_SETTINGS_MODULE" and not key.startswith("PYTEST_XDIST")
    }
    # BETTER_TEST_DB passes through: each project's settings suffix it with the project's name,
    # so the projects and the main suite never share a test database.
    result = subprocess.run(
        project_command(name),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, f"tests/projects/{name} failed:\n{output}"
    assert passed_count(result.stdout) >= PROJECTS[name], (
        f"tests/projects/{name} ran fewer than {PROJECTS[name]} tests:\n{output}"
    )
