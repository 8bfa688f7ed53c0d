"""``manage.py better_console``: init, token generate/rotate, migrate and check."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connections
from django.utils import timezone

from better_console import commands
from better_console.conf import ALLOWED_EMAILS_ENV, TOKEN_HASH_ENV
from better_console.tokens import generate_token_pair
from better_core.commands import SubcommandCommand


class Command(SubcommandCommand):
    help = "Generate connection tokens, create the console tables and verify the console setup."

    def add_subcommands(self, subparsers: Any) -> None:
        init = subparsers.add_parser(
            "init",
            help="Generate a connection token and print the environment variables to set.",
            description=(
                "Prints a new connection token once, then the BETTER_CONSOLE_TOKEN_HASH and "
                "BETTER_CONSOLE_ALLOWED_EMAILS lines for the server's environment. Asks for the "
                "admin email unless --email is given."
            ),
        )
        init.add_argument(
            "--email", help="admin email address, or several separated by commas (no prompt)"
        )
        init.add_argument(
            "-n",
            "--non-interactive",
            action="store_true",
            help="never prompt; --email is then required",
        )

        token = subparsers.add_parser(
            "token",
            help="generate: print a new token pair; rotate: the same, and end every session.",
            description=(
                "Both print a new connection token and its BETTER_CONSOLE_TOKEN_HASH line. "
                "rotate also deletes every console session and magic link in the "
                "database, so that sessions signed with the old hash stop working at once."
            ),
        )
        token.add_argument("action", choices=["generate", "rotate"], help="generate or rotate")
        token.add_argument(
            "--no-revoke",
            action="store_true",
            help="rotate only: keep the database sessions (they end when the server restarts "
            "with the new hash)",
        )

        migrate = subparsers.add_parser(
            "migrate",
            help="Create the console tables (Django migrations), or print/write their SQL.",
            description=(
                "Without flags runs `migrate better_console` as the role that owns the tables. "
                "--dry-run prints the idempotent SQL (CREATE TABLE/INDEX IF NOT EXISTS) of the "
                "migrations, e.g. to pipe into psql; -o writes it to a file."
            ),
        )
        target = migrate.add_mutually_exclusive_group()
        target.add_argument("--dry-run", action="store_true", help="print the SQL, change nothing")
        target.add_argument(
            "-o",
            "--output",
            metavar="PATH",
            help=f"write the SQL to PATH (.sql file) or to <dir>/<timestamp>_"
            f"{commands.SQL_FILENAME} when PATH is a directory",
        )
        migrate.add_argument(
            "--force", action="store_true", help="with -o: overwrite an existing file"
        )

        subparsers.add_parser(
            "check",
            help="Verify tables, columns, indexes, privileges and settings; exit 1 on failure.",
            description=(
                "Connects as the runtime role and checks that the console tables exist with the "
                "models' columns and indexes and that the role may read and write them, that "
                "TOKEN_HASH is set and well-formed, that ALLOWED_EMAILS is set (a warning "
                "only), and runs better_console's system checks."
            ),
        )

    # --- init ------------------------------------------------------------------------------------

    def handle_init(self, options: dict[str, Any]) -> None:
        if options.get("email") is not None:
            try:
                emails = commands.parse_emails(options["email"])
            except ValueError as exc:
                raise CommandError(f"--email: {exc}") from exc
        elif options["non_interactive"]:
            raise CommandError(
                "--email is required with -n/--non-interactive, e.g. --email admin@example.com."
            )
        else:
            emails = self._ask_email()
        token, token_hash = generate_token_pair()
        self._print_token(token, token_hash)
        self.stdout.write(f"{ALLOWED_EMAILS_ENV}={','.join(emails)}")
        self.stdout.write("")
        self.stdout.write(
            "Set both in the server's environment (e.g. .env) and restart it; BETTER_CONSOLE "
            "reads them by default, and BETTER_CONSOLE = {'MAGIC_LINK': {}} turns on sign-in by "
            "emailed code."
        )

    def _ask_email(self) -> list[str]:
        while True:
            try:
                answer = input("Admin email address: ")
            except EOFError:
                raise CommandError(
                    "--email is required when no answer can be typed: pass --email ADDRESS."
                ) from None
            try:
                return commands.parse_emails(answer)
            except ValueError as exc:
                self.stderr.write(f"{exc} Try again (Ctrl-C to stop).")

    def _print_token(self, token: str, token_hash: str) -> None:
        self.stdout.write("Connection token (save this, it won't be shown again):")
        self.stdout.write(f"  {token}")
        self.stdout.write("")
        self.stdout.write(f"{TOKEN_HASH_ENV}={token_hash}")

    # --- token -----------------------------------------------------------------------------------

    def handle_token(self, options: dict[str, Any]) -> None:
        rotate = options["action"] == "rotate"
        if options["no_revoke"] and not rotate:
            raise CommandError("--no-revoke only applies to `token rotate`.")
        token, token_hash = generate_token_pair()
        self._print_token(token, token_hash)
        if not rotate:
            return
        self.stdout.write("")
        self.warn(
            "Rotating invalidates every existing console session: session tokens are signed "
            f"with the hash. Set {TOKEN_HASH_ENV} to the new value and restart the server."
        )
        if options["no_revoke"]:
            self.info("database sessions kept (--no-revoke)")
            return
        alias = options["database"]
        try:
            revoked = commands.revoke_sessions(alias)
        except DatabaseError as exc:
            raise CommandError(
                f"Revoking the database sessions failed: {str(exc).strip()}\nThe new token above "
                "is valid; run `token rotate` again once the database is reachable, or pass "
                "--no-revoke."
            ) from exc
        if revoked is None:
            self.warn(
                "the console tables do not exist in the database: no session to revoke "
                "(only magic-link sign-in stores sessions there)"
            )
            return
        sessions, links = revoked
        self.ok(
            f"revoked {sessions} database session{'s' * (sessions != 1)} and {links} "
            f"magic link{'s' * (links != 1)}"
        )

    # --- migrate ---------------------------------------------------------------------------------

    def handle_migrate(self, options: dict[str, Any]) -> None:
        alias = options["database"]
        if options["force"] and not options["output"]:
            raise CommandError("--force only applies with -o/--output PATH.")
        if options["dry_run"]:
            self.stdout.write(self._sql(alias), ending="")
            return
        if options["output"]:
            self._write_sql(alias, options["output"], options["force"])
            return
        try:
            call_command(
                "migrate",
                commands.APP,
                database=alias,
                verbosity=options.get("verbosity", 1),
                stdout=self.stdout._out,
            )
        except DatabaseError as exc:
            raise CommandError(
                f"migrate better_console failed: {str(exc).strip()}\nRun it as the role that owns "
                "the tables (in the example project `manage.py better_console migrate` connects "
                "as the owner by itself; elsewhere set DB_ROLE=owner or the owner's credentials), "
                "or apply `manage.py better_console migrate --dry-run` with psql."
            ) from exc

    def _sql(self, alias: str) -> str:
        # The schema editor renders the SQL through the connection (quoting, server version).
        try:
            return commands.migration_sql(alias)
        except DatabaseError as exc:
            raise CommandError(
                f"Cannot reach the database {alias!r} to render the SQL: {str(exc).strip()}"
            ) from exc

    def _write_sql(self, alias: str, output: str, force: bool) -> None:
        path = commands.output_path(output, timezone.now())
        if path.exists() and not force:
            raise CommandError(f"-o/--output: {path} exists; pass --force to overwrite it.")
        sql = self._sql(alias)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(sql, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"-o/--output: cannot write {path}: {exc.strerror or exc}") from exc
        tables = ", ".join(model._meta.db_table for model in commands.console_models())
        self.ok(f"wrote {path} ({tables})")
        self.stdout.write(f"  Apply it with your migration tool or `psql $DATABASE_URL -f {path}`.")

    # --- check -----------------------------------------------------------------------------------

    def handle_check(self, options: dict[str, Any]) -> None:
        alias = options["database"]
        try:
            results = commands.schema_results(alias)
        except DatabaseError as exc:
            connections[alias].close()
            raise CommandError(
                f"Cannot inspect the database {alias!r}: {str(exc).strip()}"
            ) from exc
        results += commands.settings_results()
        results += commands.system_check_results()
        for result in results:
            self.line(result.status, result.message)
        self.stdout.write("")
        failed = [result for result in results if result.failed]
        if not failed:
            self.stdout.write(self.style.SUCCESS(f"All {len(results)} checks passed."))
            return
        self.stdout.write(self.style.ERROR(f"{len(failed)} of {len(results)} checks failed."))
        sections = {result.section for result in failed}
        if commands.TABLES in sections:
            # The runtime role owns nothing, so it cannot create the tables itself.
            self.stdout.write(
                "  Create the tables as the role that owns them: `manage.py better_console "
                "migrate`, or pipe `manage.py better_console migrate --dry-run` into psql."
            )
        if commands.PRIVILEGES in sections:
            self.stdout.write(
                "  As the tables' owner, grant the runtime role SELECT, INSERT, UPDATE and DELETE "
                "on them."
            )
        raise SystemExit(1)
