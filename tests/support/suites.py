"""Run a test suite with settings of its own in a pytest subprocess and read its summary."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 900


def pytest_command(path: str, settings: str, confcutdir: str) -> list[str]:
    """The pytest command line of the suite in ``path`` on ``settings``, run from the root.

    No conftest.py above ``confcutdir`` is loaded.
    """
    return [
        sys.executable,
        "-m",
        "pytest",
        path,
        "-p",
        "no:cacheprovider",
        "-q",
        f"--ds={settings}",
        # tests/conftest.py (the main suite's harness and collect_ignore) stays out of the run.
        f"--confcutdir={confcutdir}",
    ]


def suite_env() -> dict[str, str]:
    """This process's environment without what would change the suite's settings."""
    return {
        key: value
        for key, value in os.environ.items()
        # The suite's own settings; an outer xdist worker's name would rename its database.
        if key != "DJANGO_SETTINGS_MODULE" and not key.startswith("PYTEST_XDIST")
    }


def run_suite(command: list[str], timeout: float = TIMEOUT) -> tuple[int, str]:
    """Run ``command`` from the repository root: its exit code, and stdout and stderr together.

    BETTER_TEST_DB passes through: each suite's settings suffix it with a name of their own, so
    the suites and the main one never share a test database.
    """
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=suite_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return result.returncode, f"{result.stdout}\n{result.stderr}"


def outcome_count(output: str, outcome: str) -> int:
    """The number of tests with ``outcome`` (passed, skipped, ...) in pytest's summary line."""
    found = re.findall(rf"(\d+) {outcome}\b", output)
    return int(found[-1]) if found else 0


def passed_count(output: str) -> int:
    """The number of passed tests in pytest's summary line, 0 without one."""
    return outcome_count(output, "passed")
