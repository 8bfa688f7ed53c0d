"""Audit context of management commands: entries written by ``manage.py <command>`` name an actor.

When the process was started as ``manage.py <command>``, ``django-admin <command>`` or
``python -m django <command>``, the app's ``ready()`` installs a context for the whole process:
actor ``cli:<operating system user>`` (or the ``BETTER_AUDIT_ACTOR`` environment variable, e.g.
``BETTER_AUDIT_ACTOR=deploy-bot`` for a cron job), metadata ``{"command": <name>}`` and a fresh
correlation id. A command that opens its own ``audit_context(...)`` overrides it inside that block.

Server and test commands (``runserver``, ``testserver``, ``test`` ...) get none: their requests and
tests set their own context, and an operator's name must not appear on what visitors do.

``call_command()`` from code runs in its caller's context; wrap it in ``command_context(name)`` to
give it the same context explicitly.
"""

from __future__ import annotations

import getpass
import os
import sys
import uuid
from collections.abc import Sequence

from better_audit.context import AuditContext, audit_context, set_audit_context
from better_core.scope import Scope

#: Environment variable naming the actor of command-line runs instead of ``cli:<os user>``.
ACTOR_ENV = "BETTER_AUDIT_ACTOR"

#: Commands that serve requests or run tests: no process-wide command context for them.
SKIPPED_COMMANDS = frozenset({"runserver", "runserver_plus", "runworker", "testserver", "test"})

_ENTRY_POINTS = frozenset({"manage.py", "django-admin", "django-admin.py"})


def command_actor() -> str:
    """``BETTER_AUDIT_ACTOR`` if set, else ``cli:<operating system user>``."""
    configured = os.environ.get(ACTOR_ENV, "").strip()
    if configured:
        return configured
    try:
        user = getpass.getuser()
    except (OSError, KeyError, ImportError):
        # A container user without a passwd entry and without USER/LOGNAME set.
        user = f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"


def command_name(argv: Sequence[str] | None = None) -> str | None:
    """The management command this process runs, or None if it was not started as one."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2:
        return None
    program = argv[0].replace("\\", "/")
    is_entry_point = os.path.basename(program) in _ENTRY_POINTS or program.endswith(
        "django/__main__.py"
    )
    if not is_entry_point:
        return None
    name = argv[1]
    if name.startswith("-"):
        return None
    return name


def command_context(name: str) -> Scope:
    """The context a command-line run gets, as a scope (with, async with or decorator)."""
    return audit_context(actor_id=command_actor(), metadata={"command": name})


def install_command_context(argv: Sequence[str] | None = None) -> AuditContext | None:
    """Install the command context for the rest of this thread when run as a command.

    Called from ``BetterAuditConfig.ready()``; returns the installed context, or None.
    """
    name = command_name(argv)
    if name is None or name in SKIPPED_COMMANDS:
        return None
    context = AuditContext(
        actor_id=command_actor(),
        metadata={"command": name},
        correlation_id=str(uuid.uuid4()),
    )
    set_audit_context(context)
    return context
