"""The test projects, each with only some of the apps, run in pytest subprocesses of their own."""

from __future__ import annotations

import pytest

from tests.support.suites import ROOT, passed_count, pytest_command, run_suite

#: Each project and the number of tests its suite runs at least (a guard against a suite that
#: silently collects less, e.g. after a rename).
PROJECTS = {
    "audit_only": 11,
    "console_only": 5,
    "mail_only": 10,
    "no_tenant": 27,
    "tenant_only": 6,
}


def project_command(name: str) -> list[str]:
    """The pytest command line of one project, run from the repository root."""
    return pytest_command(
        f"tests/projects/{name}", f"tests.projects.{name}.settings", confcutdir="tests/projects"
    )


def test_every_project_directory_is_run():
    folders = {path.parent.name for path in (ROOT / "tests" / "projects").glob("*/settings.py")}
    assert folders == set(PROJECTS)


# pytest-django configures Django once per process, from one settings module: each project's
# INSTALLED_APPS need a process of their own.
@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_project_suite_passes(name: str) -> None:
    returncode, output = run_suite(project_command(name))
    assert returncode == 0, f"tests/projects/{name} failed:\n{output}"
    assert passed_count(output) >= PROJECTS[name], (
        f"tests/projects/{name} ran fewer than {PROJECTS[name]} tests:\n{output}"
    )
