"""``manage.py better_webhooks``: worker, replay, check, generate-key and rotate-encryption."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import CommandError
from django.db import DatabaseError, connections
from django.utils import timezone

from better_core.commands import SubcommandCommand
from better_core.durations import parse_since


class Command(SubcommandCommand):
    help = "Run the delivery worker, replay failed deliveries, manage encryption keys."

    def default_database(self) -> str:
        from better_webhooks.conf import webhook_settings

        return webhook_settings.DATABASE

    def handle(self, *args: Any, **options: Any) -> None:
        from better_webhooks.conf import webhook_settings

        # The engine reads and writes the webhook tables on one alias only.
        database = options.get("database")
        if database and database != webhook_settings.DATABASE:
            raise CommandError(
                f"--database: the webhook tables live on {webhook_settings.DATABASE!r} "
                "(BETTER_WEBHOOKS['DATABASE']); leave --database out or name that alias."
            )
        super().handle(*args, **options)

    def add_subcommands(self, subparsers: Any) -> None:
        worker = subparsers.add_parser(
            "worker",
            help="Poll the database and deliver due webhooks until SIGTERM/SIGINT.",
            description=(
                "Claims due deliveries in batches under a lease (FOR UPDATE SKIP LOCKED), sends "
                "them from a thread pool, records every attempt. SIGTERM finishes the batch in "
                "flight and exits; deliveries of a killed worker are claimed again when their "
                "lease expires."
            ),
        )
        worker.add_argument("--batch-size", type=int, help="deliveries per claim")
        worker.add_argument("--concurrency", type=int, help="sending threads")
        worker.add_argument("--interval", type=float, help="seconds between polls when idle")
        worker.add_argument("--lease", type=float, help="seconds a claimed delivery is held")
        worker.add_argument("--once", action="store_true", help="send one batch and exit")
        worker.add_argument(
            "--until-idle", action="store_true", help="exit when nothing is due any more"
        )

        replay = subparsers.add_parser(
            "replay",
            help="Queue failed deliveries again (attempts reset).",
            description="Without filters every failed delivery is queued again.",
        )
        replay.add_argument(
            "--failed", action="store_true", help="replay failed deliveries (the default)"
        )
        replay.add_argument("--since", help="only deliveries created since: 24h, 7d or ISO date")
        replay.add_argument("--endpoint", help="only deliveries of this endpoint id")
        replay.add_argument("--event", help="only deliveries of this event")
        replay.add_argument("--dry-run", action="store_true", help="count, change nothing")

        subparsers.add_parser(
            "check",
            help="Verify settings, tables and that every endpoint secret decrypts; exit 1 on "
            "failure.",
        )
        key = subparsers.add_parser("generate-key", help="Print a new ENCRYPTION_KEYS entry.")
        key.add_argument(
            "--version", dest="key_version", type=int, default=1, help="key version (default 1)"
        )
        subparsers.add_parser(
            "rotate-encryption",
            help="Re-encrypt every endpoint secret under the newest ENCRYPTION_KEYS key.",
        )

    # -- worker ---------------------------------------------------------------------------------

    def handle_worker(self, options: dict[str, Any]) -> None:
        from better_webhooks.worker import Worker

        for flag in ("batch_size", "concurrency"):
            if options.get(flag) is not None and options[flag] < 1:
                raise CommandError(f"--{flag.replace('_', '-')} must be at least 1.")
        for flag in ("interval", "lease"):
            if options.get(flag) is not None and options[flag] <= 0:
                raise CommandError(f"--{flag} must be a positive number of seconds.")
        worker = Worker(
            batch_size=options.get("batch_size"),
            concurrency=options.get("concurrency"),
            interval=options.get("interval"),
            lease=options.get("lease"),
        )
        worker.install_signal_handlers()
        if options["verbosity"] >= 1:
            self.info(
                f"webhook worker {worker.worker_id}: batch {worker.batch_size}, "
                f"{worker.concurrency} threads, lease {worker.lease:g}s"
            )
        try:
            worker.run(max_batches=1 if options["once"] else None, until_idle=options["until_idle"])
        finally:
            worker.close()
        if options["verbosity"] >= 1:
            self.ok(f"stopped: {worker.attempted} attempted, {worker.delivered} delivered")

    # -- replay ---------------------------------------------------------------------------------

    def handle_replay(self, options: dict[str, Any]) -> None:
        from better_webhooks import db
        from better_webhooks.replay import failed_deliveries, recover_failed

        since = None
        if options.get("since"):
            try:
                since = parse_since(options["since"])
            except ValueError as exc:
                raise CommandError(f"--since: {exc}") from exc
        endpoint_id = None
        if options.get("endpoint"):
            try:
                endpoint_id = uuid.UUID(options["endpoint"])
            except ValueError:
                raise CommandError(
                    f"--endpoint: {options['endpoint']!r} is not an endpoint id (a UUID)."
                ) from None
        event = options.get("event") or None
        # System mode: the command replays every tenant's failed deliveries.
        with db.system_scope():
            if options["dry_run"]:
                count = failed_deliveries(since, endpoint_id=endpoint_id, event=event).count()
            else:
                count = recover_failed(since, endpoint_id=endpoint_id, event=event)
        if options["dry_run"]:
            self.info(f"{count} failed deliveries would be queued again")
        else:
            self.ok(f"{count} failed deliveries queued again")

    # -- check ----------------------------------------------------------------------------------

    def handle_check(self, options: dict[str, Any]) -> None:
        from better_webhooks import crypto, db
        from better_webhooks.checks import check_configuration
        from better_webhooks.exceptions import WebhookError
        from better_webhooks.models import WebhookDelivery, WebhookEndpoint

        failed = False
        for message in check_configuration():
            if message.is_serious():
                failed = True
                self.fail(f"{message.id}: {message.msg}")
            else:
                self.warn(f"{message.id}: {message.msg}")
        try:
            with db.system_scope():
                endpoints = list(WebhookEndpoint.objects.using(db.alias()).all())
                due = (
                    WebhookDelivery.objects.using(db.alias())
                    .filter(status="pending", next_attempt_at__lte=timezone.now())
                    .count()
                )
                failures = WebhookDelivery.objects.using(db.alias()).filter(status="failed").count()
        except DatabaseError as exc:
            connections[db.alias()].close()
            self.fail(f"webhook tables cannot be read: {exc}".strip())
            raise CommandError("better_webhooks check failed.") from exc
        self.ok(f"tables readable: {len(endpoints)} endpoints")
        broken = []
        for endpoint in endpoints:
            try:
                crypto.endpoint_secrets(endpoint)
            except WebhookError as exc:
                broken.append(f"{endpoint.id}: {exc}")
        if broken:
            failed = True
            for item in broken:
                self.fail(item)
        elif endpoints:
            self.ok("every endpoint secret decrypts")
        self.info(f"{due} deliveries due, {failures} failed")
        if failed:
            raise CommandError("better_webhooks check failed.")

    # -- keys -----------------------------------------------------------------------------------

    def handle_generate_key(self, options: dict[str, Any]) -> None:
        from better_webhooks.crypto import generate_key

        if options["key_version"] < 1:
            raise CommandError("--version must be at least 1.")
        self.stdout.write(generate_key(options["key_version"]))

    def handle_rotate_encryption(self, options: dict[str, Any]) -> None:
        from better_webhooks import crypto, db
        from better_webhooks.exceptions import WebhookError
        from better_webhooks.models import WebhookEndpoint

        try:
            newest = crypto.configured_keys()[0][0]
        except WebhookError as exc:
            raise CommandError(str(exc)) from exc
        changed = 0
        with db.system_scope():
            manager = WebhookEndpoint.objects.using(db.alias())
            for endpoint in manager.select_for_update().order_by("id"):
                try:
                    secrets = crypto.reencrypted(endpoint)
                except WebhookError as exc:
                    raise CommandError(f"endpoint {endpoint.id}: {exc}") from exc
                if secrets is not None:
                    manager.filter(id=endpoint.id).update(secrets=secrets)
                    changed += 1
        self.ok(f"{changed} endpoints re-encrypted under key {newest}")
