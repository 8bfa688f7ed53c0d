"""better_core.commands.SubcommandCommand: parsing, dispatch, errors and result lines."""

import io

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from better_core.commands import SubcommandCommand


class Command(SubcommandCommand):
    help = "A command with two subcommands, one of them without a handler."

    def add_subcommands(self, subparsers):
        greet = subparsers.add_parser("greet-all", help="Print one line of each kind.")
        greet.add_argument("--name", default="world")
        subparsers.add_parser("orphan", help="Has no handle_orphan.")

    def handle_greet_all(self, options):
        self.ok(f"hello {options['name']} on {options['database']}")
        self.fail("failed line")
        self.warn("warned line")
        self.info(f"verbosity {options['verbosity']}")


def run(*args):
    out = io.StringIO()
    call_command(Command(), *args, stdout=out, no_color=True)
    return out.getvalue()


def test_a_hyphenated_subcommand_reaches_its_handler_with_the_default_database():
    out = run("greet-all", "--name", "Ada", "-v", "2")
    assert out.splitlines() == [
        "✓ hello Ada on default",
        "✗ failed line",
        "! warned line",
        "· verbosity 2",
    ]


def test_an_unknown_database_alias_names_the_flag_and_the_choices():
    with pytest.raises(CommandError, match=r"--database: no database alias 'nope'; choose one of"):
        run("greet-all", "--database", "nope")


def test_a_subcommand_without_a_handler_is_an_error_not_a_crash():
    with pytest.raises(CommandError, match=r"Unknown subcommand 'orphan'"):
        run("orphan")


def test_a_subcommand_must_be_given():
    with pytest.raises(CommandError, match="SUBCOMMAND"):
        run()


def test_a_command_without_subcommands_says_what_to_define():
    class Empty(SubcommandCommand):
        pass

    with pytest.raises(ImproperlyConfigured, match="define add_subcommands"):
        call_command(Empty(), "anything")
