"""The example project passes Django's system checks on the Django release of the run."""

from __future__ import annotations

import io

from django.core.management import call_command


def test_the_example_project_passes_djangos_system_checks() -> None:
    # What `migrate` and `runserver` run first: an error here stops `make demo` on this release.
    call_command("check", stdout=io.StringIO())
