"""``manage.py better_mail``: preview, send-test, check, send-due and cleanup."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from typing import Any

from django.core.management.base import CommandError
from django.utils import autoreload

from better_core.commands import SubcommandCommand
from better_tenant.shortcuts import narrowed_scope, system_scope, tenancy_installed


class Command(SubcommandCommand):
    help = (
        "Preview, check and test-send the mail templates; send the mails that are due; delete "
        "old mails."
    )

    def add_subcommands(self, subparsers: Any) -> None:
        preview = subparsers.add_parser(
            "preview",
            help="Serve every template rendered with its preview data on a local web server.",
            description=(
                "Lists the registered templates; each page shows the subject, the HTML part at "
                "mobile (375 px) and desktop (700 px) width, the text part, and any validation, "
                "compile or lint problem. Restarts when Python code changes (like runserver)."
            ),
        )
        preview.add_argument("--port", type=int, default=8025, help="port (default 8025)")
        preview.add_argument(
            "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)"
        )
        preview.add_argument(
            "--noreload", action="store_true", help="do not restart when code changes"
        )

        send_test = subparsers.add_parser(
            "send-test",
            help="Send one message rendered with the template's preview data, now.",
            description=(
                "Renders --template with its preview data (keys of --data replace them), sends "
                "it to --to through EMAIL_BACKEND without a queue, and prints the MailLog."
            ),
        )
        send_test.add_argument("--template", required=True, help="registered template name")
        send_test.add_argument("--to", required=True, help="recipient address")
        send_test.add_argument(
            "--data", help='JSON object of variables over the preview data, e.g. \'{"name": "A"}\''
        )
        send_test.add_argument("--from", dest="from_email", help="sender (default: the setting)")
        send_test.add_argument(
            "--tenant", help="send in this tenant's scope (id or slug; with better_tenant)"
        )

        subparsers.add_parser(
            "check",
            help="Render every template with its preview data and lint its MJML; exit 1 on "
            "failure.",
        )

        send_due = subparsers.add_parser(
            "send-due",
            help="Send the queued mails that are due (the polling runner, e.g. from cron).",
        )
        send_due.add_argument(
            "--limit", type=int, default=100, help="mails to claim at most (default 100)"
        )

        cleanup = subparsers.add_parser(
            "cleanup",
            help="Delete sent, failed and cancelled mails (and their attempts) older than --days.",
            description=(
                "Queued and sending mails are never deleted. Covers every tenant. Without --days, "
                "BETTER_MAIL['RETENTION'] is used."
            ),
        )
        cleanup.add_argument(
            "--days", type=int, help="age in days (default: BETTER_MAIL['RETENTION'])"
        )
        cleanup.add_argument(
            "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
        )

    # --- preview ---------------------------------------------------------------------------------

    def handle_preview(self, options: dict[str, Any]) -> None:
        port, host = options["port"], options["host"]
        if not 0 <= port <= 65535:
            raise CommandError(f"--port must be between 0 and 65535; got {port}.")
        if not host.strip():
            raise CommandError("--host must be an address such as 127.0.0.1 or ::1.")
        if options["noreload"]:
            self._serve(host, port)
        else:
            autoreload.run_with_reloader(self._serve, host, port)

    def _serve(self, host: str, port: int) -> None:
        from better_mail.preview import make_server, template_names

        try:
            server = make_server(host, port)
        except OSError as exc:
            raise CommandError(
                f"--host/--port: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                "pick another --port or stop the process using it."
            ) from exc
        bound_host, bound_port = server.server_address[:2]
        assert isinstance(bound_host, str)  # an AF_INET(6) socket names its host as text
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        count = len(template_names())
        self.stdout.write(
            f"Previewing {count} mail template{'s' if count != 1 else ''} at "
            f"http://{shown}:{bound_port}/ (Ctrl-C to stop)"
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()

    # --- send-test -------------------------------------------------------------------------------

    def handle_send_test(self, options: dict[str, Any]) -> None:
        from better_mail.exceptions import (
            InvalidRecipient,
            MailError,
            TemplateNotFound,
            TemplateVariableError,
        )
        from better_mail.preview import preview_data
        from better_mail.sending import send
        from better_mail.templates import get_template

        try:
            template = get_template(options["template"])
        except TemplateNotFound as exc:
            raise CommandError(f"--template: {exc}") from exc
        data = preview_data(template)
        if options["data"] is not None:
            try:
                extra = json.loads(options["data"])
            except json.JSONDecodeError as exc:
                raise CommandError(f"--data is not valid JSON: {exc}") from exc
            if not isinstance(extra, dict):
                raise CommandError(
                    f"--data must be a JSON object of variables; got {type(extra).__name__}."
                )
            data.update(extra)
        extra_args = {"from_email": options["from_email"]} if options.get("from_email") else {}
        try:
            with _scope(options["database"], options.get("tenant")):
                # Delivered in this process once the scope's transaction commits.
                log = send(template, to=options["to"], context=data, async_=False, **extra_args)
        except InvalidRecipient as exc:
            flag = "--from" if str(exc).startswith("from_email") else "--to"
            raise CommandError(f"{flag}: {exc}") from exc
        except TemplateVariableError as exc:
            source = "--data" if options["data"] is not None else "its preview_data"
            raise CommandError(f"{exc} (variables from {source})") from exc
        except MailError as exc:
            raise CommandError(str(exc)) from exc
        log = log.refresh()
        line = f"MailLog {log.pk}: {log.status} ({log.template} to {', '.join(log.to)})"
        if log.status != "sent":
            detail = f": {log.error}" if log.error else ""
            self.fail(f"{line}{detail}")
            raise SystemExit(1)
        self.ok(line)
        if log.provider_message_id:
            self.stdout.write(f"  provider message id: {log.provider_message_id}")

    # --- check -----------------------------------------------------------------------------------

    def handle_check(self, options: dict[str, Any]) -> None:
        from better_mail.preview import previews

        results = previews()
        if not results:
            self.stdout.write(
                "No mail templates are registered. Declare MailTemplate subclasses in an "
                "installed app's mail.py."
            )
            return
        failed = 0
        for result in results:
            if result.ok and not result.warnings:
                self.ok(f"{result.name}: {result.subject}")
                continue
            failed += 1
            self.fail(result.name)
            for problem in [*result.errors, *result.warnings]:
                for line in problem.rstrip().splitlines():
                    self.stdout.write(f"    {line}")
        self.stdout.write("")
        if failed:
            self.stdout.write(
                self.style.ERROR(f"{failed} of {len(results)} templates failed.")
                + " Fix them, then run `manage.py better_mail preview` to see the result."
            )
            raise SystemExit(1)
        count = f"{len(results)} template{'s' if len(results) != 1 else ''}"
        self.stdout.write(self.style.SUCCESS(f"Every template renders and lints ({count})."))

    # --- send-due --------------------------------------------------------------------------------

    def handle_send_due(self, options: dict[str, Any]) -> None:
        from better_mail.delivery import queued_count, send_due

        limit = options["limit"]
        if limit < 1:
            raise CommandError(f"--limit must be at least 1; got {limit}.")
        sent = send_due(limit=limit)
        left = queued_count()
        self.stdout.write(f"Sent {sent} mail{'s' if sent != 1 else ''}; {left} still queued.")

    # --- cleanup ---------------------------------------------------------------------------------

    def handle_cleanup(self, options: dict[str, Any]) -> None:
        from datetime import timedelta

        from better_mail.conf import mail_settings
        from better_mail.retention import cleanup

        days = options["days"]
        if days is None:
            if mail_settings.RETENTION is None:
                raise CommandError(
                    "--days is required while BETTER_MAIL['RETENTION'] is None (keep forever); "
                    "e.g. --days 90."
                )
            age = timedelta(seconds=mail_settings.RETENTION)
        elif days < 1:
            raise CommandError(f"--days must be at least 1; got {days}.")
        else:
            age = timedelta(days=days)
        result = cleanup(age, dry_run=options["dry_run"])
        verb = "Would delete" if options["dry_run"] else "Deleted"
        self.stdout.write(
            f"{verb} {result.mails} mail{'s' if result.mails != 1 else ''} and "
            f"{result.attempts} attempt{'s' if result.attempts != 1 else ''} older than "
            f"{age.days} day{'s' if age.days != 1 else ''}."
        )


# --- helpers --------------------------------------------------------------------------------------


def _scope(alias: str, tenant: str | None) -> AbstractContextManager[Any]:
    # Outside a tenant the log row belongs to no tenant, which only system mode may write.
    if not tenant:
        return system_scope(using=alias)
    if not tenancy_installed():
        raise CommandError("--tenant needs better_tenant in INSTALLED_APPS.")
    from better_tenant.lookup import resolve_to_id

    try:
        tenant_id = resolve_to_id(tenant)
    except Exception as exc:
        raise CommandError(f"--tenant: {exc}") from exc
    if tenant_id is None:
        raise CommandError(f"--tenant: no tenant has the id or slug {tenant!r}.")
    return narrowed_scope(tenant_id, using=alias)
