"""Where the process runs: development, a test run or production, as the seed's rules see it.

Development, test run, production
    The seed allows auto-approve, short secrets and the ``"*"`` email pattern only in development
    or in tests. Here *development* means ``settings.DEBUG`` is on, and *a test run* means one of:

    - Django's test environment is set up (``django.test.utils.setup_test_environment()`` has
      run, as ``manage.py test`` and pytest-django do before the first test);
    - the process is pytest (pytest sets ``PYTEST_VERSION`` for its whole run, which covers the
      start-up of Django, before the test environment exists);
    - the process is ``manage.py test``.

    Anything else is production. ``environment()`` is evaluated again on every request, so that
    a process whose settings change while it runs is refused at request time too.
"""

from __future__ import annotations

import os
import sys


def is_test_run() -> bool:
    """True in a test run (see the module docstring for what counts as one)."""
    from django.test import utils as test_utils

    if hasattr(getattr(test_utils, "_TestState", None), "saved_data"):
        return True
    if "PYTEST_VERSION" in os.environ:
        return True
    return len(sys.argv) > 1 and sys.argv[0].endswith("manage.py") and sys.argv[1] == "test"


def is_development() -> bool:
    """True when settings.DEBUG is on."""
    from django.conf import settings

    return bool(settings.DEBUG)


def environment() -> str:
    """``"development"``, ``"test"`` or ``"production"``."""
    if is_development():
        return "development"
    if is_test_run():
        return "test"
    return "production"


def relaxed_environment() -> bool:
    """True where the seed relaxes its safety rules: development or a test run."""
    return environment() != "production"
