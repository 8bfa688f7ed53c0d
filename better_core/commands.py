"""``SubcommandCommand``: base of ``manage.py <app> <subcommand>`` commands, with ✓/✗/! lines."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

OK = "ok"
ERROR = "error"
WARNING = "warning"
INFO = "info"
SYMBOLS = {OK: "✓", ERROR: "✗", WARNING: "!", INFO: "·"}


class SubcommandCommand(BaseCommand):
    """A management command whose first argument names a subcommand.

    A subclass declares its subcommands in ``add_subcommands(subparsers)`` (each with
    ``subparsers.add_parser(name, help=..., description=...)`` and its own arguments) and handles
    each one in a method ``handle_<name>(self, options)``, hyphens turned into underscores
    (``add-table`` is handled by ``handle_add_table``)::

        class Command(SubcommandCommand):
            help = "Send, retry and inspect webhooks."

            def add_subcommands(self, subparsers):
                retry = subparsers.add_parser("retry", help="Retry failed deliveries.")
                retry.add_argument("--since", help="...")

            def handle_retry(self, options):
                ...
                self.ok("3 deliveries queued")

    Every subcommand also takes ``-v/--verbosity`` (after the subcommand too) and ``--database``;
    ``options["database"]`` reaches the handler as a valid alias, ``default_database()`` when it
    was not given. Results are printed with ``ok()``, ``fail()``, ``warn()`` and ``info()``, or
    ``line(status, ...)``: one line each, led by a ✓, ✗, ! or · that is coloured on a terminal.
    System checks are not run first (``requires_system_checks``): a ``check`` subcommand reports
    them itself, and the other subcommands must keep working while a check fails.
    """

    requires_system_checks: list[str] = []
    verbosity_help = "verbosity level"
    database_help = "database alias (default: default)"

    def add_subcommands(self, subparsers: Any) -> None:
        """Add one parser per subcommand to ``subparsers`` (an argparse subparsers action)."""
        raise ImproperlyConfigured(
            f"{type(self).__module__}.{type(self).__name__} has no subcommands: define "
            "add_subcommands(self, subparsers) and a handle_<name>(self, options) for each one."
        )

    def default_database(self) -> str:
        """The database alias used when ``--database`` is not given."""
        return "default"

    def add_arguments(self, parser: CommandParser) -> None:
        subparsers = parser.add_subparsers(
            dest="subcommand", metavar="SUBCOMMAND", title="subcommands", required=True
        )
        self.add_subcommands(subparsers)
        for sub in subparsers.choices.values():
            # Also accepted after the subcommand; SUPPRESS keeps a value given before it.
            sub.add_argument(
                "-v",
                "--verbosity",
                type=int,
                choices=[0, 1, 2, 3],
                default=argparse.SUPPRESS,
                help=self.verbosity_help,
            )
            sub.add_argument("--database", default=None, help=self.database_help)

    def handle(self, *args: Any, **options: Any) -> None:
        options["database"] = options.get("database") or self.default_database()
        if options["database"] not in connections:
            raise CommandError(
                f"--database: no database alias {options['database']!r}; "
                f"choose one of {', '.join(connections)}."
            )
        name = options.get("subcommand") or ""
        handler = getattr(self, "handle_" + name.replace("-", "_"), None)
        if not name or handler is None:
            raise CommandError(
                f"Unknown subcommand {name!r}; run `manage.py {self._command_name()} --help` "
                "for the list."
            )
        handler(options)

    def _command_name(self) -> str:
        return type(self).__module__.rpartition(".")[2]

    # --- result lines ----------------------------------------------------------------------------

    def symbol(self, status: str) -> str:
        """The mark of ``status`` (``OK``, ``ERROR``, ``WARNING`` or ``INFO``), styled."""
        mark = SYMBOLS[status]
        style = {OK: self.style.SUCCESS, ERROR: self.style.ERROR, WARNING: self.style.WARNING}
        return style[status](mark) if status in style else mark

    def line(self, status: str, message: str, indent: str = "") -> None:
        """Write ``message`` on stdout, led by the mark of ``status``."""
        self.stdout.write(f"{indent}{self.symbol(status)} {message}")

    def ok(self, message: str) -> None:
        self.line(OK, message)

    def fail(self, message: str) -> None:
        self.line(ERROR, message)

    def warn(self, message: str) -> None:
        self.line(WARNING, message)

    def info(self, message: str) -> None:
        self.line(INFO, message)
