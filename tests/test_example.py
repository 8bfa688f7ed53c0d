"""The example project's own suite (example_project/tests), run in a pytest subprocess."""

from __future__ import annotations

from tests.support.suites import outcome_count, pytest_command, run_suite

#: The number of tests the example's suite runs at least (a guard against a suite that silently
#: collects less, e.g. after a rename).
EXAMPLE_TESTS = 55


# pytest-django configures Django once per process: the example's settings (its app, URLs and
# audit rules) need a process of their own, and a test database of their own (BETTER_TEST_DB
# suffixed with _example).
def test_the_example_suite_passes() -> None:
    command = pytest_command(
        "example_project/tests",
        "example_project.tests.settings",
        confcutdir="example_project/tests",
    )
    returncode, output = run_suite(command)
    assert returncode == 0, f"example_project/tests failed:\n{output}"
    # Its browser tests skip without Chromium, as the main suite's do, unless the run requires the
    # browser (BETTER_REQUIRE_BROWSER=1, which the subprocess inherits): then they fail instead.
    ran = outcome_count(output, "passed") + outcome_count(output, "skipped")
    assert ran >= EXAMPLE_TESTS, (
        f"example_project/tests ran fewer than {EXAMPLE_TESTS} tests:\n{output}"
    )
