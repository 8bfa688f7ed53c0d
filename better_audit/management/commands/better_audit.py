"""``manage.py better_audit``: migrate, check, stats, purge, export and verify."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from typing import Any

from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connections
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone

from better_core.commands import SubcommandCommand
from better_core.durations import parse_since
from better_tenant.shortcuts import system_scope

APP = "better_audit"
BAR_WIDTH = 30


class Command(SubcommandCommand):
    help = "Migrate, verify, report on, purge and export the audit log."

    def add_subcommands(self, subparsers: Any) -> None:
        migrate = subparsers.add_parser(
            "migrate",
            help="Apply the audit_logs migrations, or print their SQL with --dry-run.",
            description=(
                "Runs `migrate better_audit` (as the role that owns the tables); with --dry-run "
                "prints the `sqlmigrate` SQL of every migration not applied yet."
            ),
        )
        migrate.add_argument("--dry-run", action="store_true", help="print the SQL, change nothing")

        subparsers.add_parser(
            "check",
            help="Verify table, columns, indexes, append-only privileges and the capture triggers; "
            "exit 1 on failure.",
            description=(
                "Connects as the runtime role and checks that audit_logs exists with the model's "
                "columns and indexes, that its migrations are applied, that the role may SELECT "
                "but not insert, that UPDATE, DELETE and TRUNCATE cannot change the trail, and "
                "that every audited table has its capture triggers."
            ),
        )

        stats = subparsers.add_parser("stats", help="Totals, events per day, top actors/tables.")
        stats.add_argument(
            "--days",
            type=int,
            default=30,
            help="window in days, 1-365 (default 30); 0 means all time",
        )
        stats.add_argument("--top", type=int, default=10, help="rows of the top lists (default 10)")
        stats.add_argument("--json", action="store_true", help="print the report as JSON")

        purge = subparsers.add_parser(
            "purge",
            help="Delete entries older than the retention period, in batches.",
            description=(
                "The cutoff is --since (a duration such as 90d, 4w, 3m, 1y or an ISO date) or "
                "BETTER_AUDIT['RETENTION']['days']. Without --since only the tables of "
                "RETENTION['tables'] are purged (every table when it is unset); --since purges "
                "every table."
            ),
        )
        purge.add_argument("--since", help="cutoff: duration (90d, 1y) or ISO date (2025-01-01)")
        purge.add_argument(
            "--batch-size", type=int, default=1000, help="rows per DELETE batch (default 1000)"
        )
        purge.add_argument(
            "--dry-run", action="store_true", help="print how many rows would be deleted"
        )
        purge.add_argument(
            "--yes", action="store_true", help="do not ask; required when stdin is not a terminal"
        )

        export = subparsers.add_parser(
            "export",
            help="Write entries as JSON or CSV to stdout or a file.",
            description=(
                "Filters combine with AND. Use --since or --from/--to, not both. JSON ends with "
                'a {"_chain_head": ...} record; for CSV the chain head is printed on stderr.'
            ),
        )
        export.add_argument("--since", help="relative start: 1h, 24h, 7d, 90d, 1y")
        export.add_argument("--from", dest="from_", metavar="FROM", help="ISO 8601 start")
        export.add_argument("--to", help="ISO 8601 end (a bare date includes the whole day)")
        export.add_argument("--table", help="table name")
        export.add_argument("--actor", help="actor id")
        export.add_argument("--severity", help="low, medium, high, critical (comma-separated)")
        export.add_argument("--compliance", help="tag(s), comma-separated: entries with all")
        export.add_argument("--format", default="json", help="json (default) or csv")
        export.add_argument(
            "--json-style", default="array", help="array (default) or ndjson, for --format json"
        )
        export.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")
        export.add_argument(
            "--keep-formulas",
            action="store_true",
            help="CSV: write cells as stored, for programs (by default a cell that a spreadsheet "
            "would run as a formula gets a leading ')",
        )

        verify = subparsers.add_parser(
            "verify", help="Verify the tamper-evidence chain; exit 1 when a link is broken."
        )
        verify.add_argument("--tenant", help="verify one tenant's chain (default: every entry)")

    # --- migrate ---------------------------------------------------------------------------------

    def handle_migrate(self, options: dict[str, Any]) -> None:
        alias = options["database"]
        connection = connections[alias]
        if options["dry_run"]:
            loader = MigrationLoader(connection)
            pending = [
                name
                for app, name in loader.graph.forwards_plan(_leaf(loader))
                if app == APP and (app, name) not in loader.applied_migrations
            ]
            if not pending:
                self.stdout.write("No unapplied better_audit migrations.")
                return
            for name in pending:
                self.stdout.write(f"-- better_audit {name}")
                out = StringIO()
                call_command("sqlmigrate", APP, name, database=alias, stdout=out)
                self.stdout.write(out.getvalue().rstrip())
            return
        try:
            call_command(
                "migrate",
                APP,
                database=alias,
                verbosity=options.get("verbosity", 1),
                stdout=self.stdout._out,
            )
        except DatabaseError as exc:
            raise CommandError(
                f"migrate better_audit failed: {str(exc).strip()}\nRun it as the role that owns "
                "the tables (in the example project `manage.py better_audit migrate` connects as "
                "the owner by itself; elsewhere set DB_ROLE=owner or the owner's credentials)."
            ) from exc

    # --- check -----------------------------------------------------------------------------------

    def handle_check(self, options: dict[str, Any]) -> None:
        try:
            results = _schema_checks(options["database"])
        except DatabaseError as exc:
            raise CommandError(
                f"Cannot inspect the database {options['database']!r}: {str(exc).strip()}"
            ) from exc
        if results and results[0][0]:
            from better_audit import integrity

            results += list(integrity.check_append_only())
            results += _trigger_checks(options["database"])
        failed = 0
        for ok, message in results:
            failed += not ok
            (self.ok if ok else self.fail)(message)
        self.stdout.write("")
        if failed:
            self.stdout.write(
                self.style.ERROR(f"{failed} of {len(results)} checks failed.")
                + " Run `manage.py better_audit migrate` as the table owner, then check again."
            )
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS(f"All {len(results)} checks passed."))

    # --- stats -----------------------------------------------------------------------------------

    def handle_stats(self, options: dict[str, Any]) -> None:
        from better_audit.statistics import stats

        days = options["days"] or None
        try:
            with system_scope(using=options["database"]):
                report = stats(days=days, top=options["top"], using=options["database"])
        except ValueError as exc:
            flag = "--top" if str(exc).startswith("top") else "--days"
            raise CommandError(f"{flag}: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
            return
        window = f"last {days} days" if days else "all time"
        self.stdout.write(f"Audit log ({window})")
        self.stdout.write(f"  entries:        {report['total_logs']:,}")
        self.stdout.write(f"  tables audited: {report['tables_audited']:,}")
        ops = ", ".join(f"{k} {v:,}" for k, v in report["operation_breakdown"].items())
        self.stdout.write(f"  operations:     {ops}")
        sev = ", ".join(f"{k} {v:,}" for k, v in report["severity_breakdown"].items())
        self.stdout.write(f"  severities:     {sev}")
        for title, key, name in (
            ("Top tables", "top_tables", "table_name"),
            ("Top actors", "top_actors", "actor_id"),
        ):
            self.stdout.write(f"{title}:")
            for row in report[key] or [{name: "(none)", "count": 0}]:
                self.stdout.write(f"  {row['count']:>10,}  {row[name]}")
        busy = [day for day in report["events_per_day"] if day["count"]]
        self.stdout.write(f"Events per day (days with entries: {len(busy)}):")
        peak = max((day["count"] for day in busy), default=0)
        for day in busy[-31:]:
            bar = "#" * max(1, round(day["count"] / peak * BAR_WIDTH))
            self.stdout.write(f"  {day['date']} {day['count']:>10,} {bar}")

    # --- purge -----------------------------------------------------------------------------------

    def handle_purge(self, options: dict[str, Any]) -> None:
        from better_audit.checks import retention_problems
        from better_audit.conf import audit_settings

        batch_size = options["batch_size"]
        if batch_size < 1:
            raise CommandError(f"--batch-size must be at least 1; got {batch_size}.")
        retention = audit_settings.raw("RETENTION")
        since = options.get("since")
        if since is None and retention is not None and retention_problems(retention):
            raise CommandError(
                "BETTER_AUDIT['RETENTION'] " + " ".join(retention_problems(retention))
            )
        from better_audit.checks import retention_policy

        days, tables = retention_policy()
        if since is not None:
            try:
                cutoff = parse_since(since)
            except ValueError as exc:
                raise CommandError(f"--since: {exc}") from exc
            if tables:
                self.stderr.write(
                    self.style.WARNING(
                        f"Warning: --since purges every table; RETENTION['tables'] "
                        f"({', '.join(tables)}) applies only to the configured retention."
                    )
                )
            tables = None
        elif days is not None:
            cutoff = timezone.now() - timedelta(days=days)
        else:
            raise CommandError(
                "No retention policy configured. Pass --since (e.g. --since 90d) or set "
                "BETTER_AUDIT['RETENTION'] = {'days': N} in your settings."
            )
        scope = "every table" if not tables else "tables " + ", ".join(tables)
        from better_audit import integrity

        alias = options["database"]
        if options["dry_run"]:
            count = integrity.purge(
                cutoff=cutoff, tables=tables, batch_size=batch_size, dry_run=True, progress=None
            )
            self.stdout.write(
                f"{count:,} audit entries older than {cutoff.isoformat()} ({scope}) would be "
                "deleted. Nothing was deleted (dry run)."
            )
            return
        if not options["yes"]:
            if not _interactive():
                raise CommandError(
                    "purge deletes audit entries permanently and stdin is not a terminal: pass "
                    "--yes to confirm (check the count with --dry-run first)."
                )
            answer = input(
                f"Delete audit entries older than {cutoff.isoformat()} ({scope}) from "
                f"{connections[alias].settings_dict.get('NAME')}? Type 'yes' to continue: "
            )
            if answer.strip().lower() not in ("y", "yes"):
                self.stdout.write("Purge cancelled; nothing was deleted.")
                return
        bar = _ProgressBar(self.stderr)
        deleted = integrity.purge(
            cutoff=cutoff,
            tables=tables,
            batch_size=batch_size,
            dry_run=False,
            progress=bar.update,
        )
        bar.finish()
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted {deleted:,} audit entries older than {cutoff.isoformat()} ({scope})."
            )
        )

    # --- export ----------------------------------------------------------------------------------

    def handle_export(self, options: dict[str, Any]) -> None:
        from better_audit.exports import FORMATS, JSON_STYLES, export, snapshot
        from better_audit.queries import AuditQuery

        if options["format"] not in FORMATS:
            raise CommandError(f"--format must be json or csv; got {options['format']!r}.")
        if options["json_style"] not in JSON_STYLES:
            raise CommandError(
                f"--json-style must be array or ndjson; got {options['json_style']!r}."
            )
        if options["since"] and (options["from_"] or options["to"]):
            raise CommandError("--since cannot be combined with --from/--to; use one or the other.")
        alias = options["database"]
        q = AuditQuery(using=alias)
        steps: list[tuple[str, str, Callable[[AuditQuery, Any], AuditQuery]]] = [
            ("--since", "since", lambda q, v: q.since(v)),
            ("--table", "table", lambda q, v: q.resource(v)),
            ("--actor", "actor", lambda q, v: q.actor(v)),
            ("--severity", "severity", lambda q, v: q.severity(*_csv(v))),
            ("--compliance", "compliance", lambda q, v: q.compliance(*_csv(v))),
        ]
        for flag, key, apply in steps:
            if options.get(key) is not None:
                try:
                    q = apply(q, options[key])
                except ValueError as exc:
                    raise CommandError(f"{flag}: {exc}") from exc
        if options["from_"] or options["to"]:
            try:
                q = q.between(options["from_"], options["to"])
            except ValueError as exc:
                raise CommandError(f"--from/--to: {exc}") from exc
        stream = options["output"] or _Raw(self.stdout)
        try:
            with snapshot(alias), system_scope(using=alias):
                summary = export(
                    format=options["format"],
                    json_style=options["json_style"],
                    query=q,
                    output=stream,
                    neutralize_formulas=not options["keep_formulas"],
                )
        except OSError as exc:
            raise CommandError(f"-o/--output: cannot write {options['output']!r}: {exc}") from exc
        head = json.dumps(summary.chain_head, separators=(",", ":"), default=str)
        self.stderr.write(f"Exported {summary.rows:,} audit entries; chain head {head}")

    # --- verify ----------------------------------------------------------------------------------

    def handle_verify(self, options: dict[str, Any]) -> None:
        from better_audit import integrity

        tenant = options.get("tenant")
        if tenant is not None:
            try:
                tenant = str(uuid.UUID(tenant))
            except ValueError:
                raise CommandError(
                    f"--tenant must be a tenant id (a UUID); got {tenant!r}."
                ) from None
        bar = _ProgressBar(self.stderr, label="verifying")
        report = integrity.verify(tenant_id=tenant, progress=bar.update)
        bar.finish()
        if report.ok:
            self.ok(f"{report.checked:,} entries verified. {report.message}")
            return
        self.fail(report.message)
        if report.first_broken:
            self.stdout.write("First broken link:")
            for key, value in report.first_broken.items():
                self.stdout.write(f"  {key}: {value}")
        raise SystemExit(1)


# --- helpers --------------------------------------------------------------------------------------


def _leaf(loader: MigrationLoader) -> tuple[str, str]:
    leaves = loader.graph.leaf_nodes(APP)
    if not leaves:
        raise CommandError("better_audit has no migrations; is it in INSTALLED_APPS?")
    return leaves[0]


def _schema_checks(alias: str) -> list[tuple[bool, str]]:
    from django.db.migrations.recorder import MigrationRecorder

    from better_audit.models import AuditLog

    table = AuditLog._meta.db_table
    connection = connections[alias]
    results: list[tuple[bool, str]] = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [table])
        exists = cursor.fetchone()[0]
        results.append((exists, f"table {table} exists" if exists else f"table {table} is missing"))
        if not exists:
            return results
        cursor.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s",
            [table],
        )
        present = {row[0] for row in cursor.fetchall()}
        # Every concrete field has a column (the stubs type it as optional).
        expected = [f.column for f in AuditLog._meta.concrete_fields if f.column is not None]
        missing = [c for c in expected if c not in present]
        results.append(
            (
                not missing,
                f"all {len(expected)} columns present"
                if not missing
                else f"missing columns: {', '.join(missing)}",
            )
        )
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = %s",
            [table],
        )
        indexes = {row[0] for row in cursor.fetchall()}
        for index in AuditLog._meta.indexes:
            ok = index.name in indexes
            results.append((ok, f"index {index.name}" + ("" if ok else " is missing")))
        cursor.execute(
            "SELECT current_user, has_table_privilege(current_user, %s, 'SELECT')", [table]
        )
        role, ok = cursor.fetchone()
        results.append((ok, f"{role} may SELECT on {table}" + ("" if ok else ": GRANT it")))
        # Entries come from the owner's functions only (better_audit.trail): no INSERT policy may
        # admit the runtime role, whatever it was granted.
        cursor.execute(
            "SELECT c.relrowsecurity AND c.relforcerowsecurity, EXISTS (SELECT 1 FROM pg_policy p "
            "WHERE p.polrelid = c.oid AND p.polcmd IN ('a', '*') AND EXISTS (SELECT 1 FROM "
            "unnest(p.polroles) r WHERE r = 0 OR pg_has_role(current_user, r, 'USAGE'))) "
            "FROM pg_class c WHERE c.oid = to_regclass(%s)",
            [table],
        )
        forced, admitted = cursor.fetchone()
        ok = bool(forced) and not admitted
        results.append(
            (
                ok,
                f"{role} cannot insert entries into {table}"
                if ok
                else f"{role} may insert entries into {table} itself: run manage.py migrate "
                "better_audit (migration 0004 leaves the insert to the owner's functions)",
            )
        )
    loader = MigrationLoader(connection)
    recorder = MigrationRecorder(connection)
    applied = {name for app, name in recorder.applied_migrations() if app == APP}
    pending = sorted(name for app, name in loader.disk_migrations if app == APP)
    pending = [name for name in pending if name not in applied]
    results.append(
        (
            not pending,
            "better_audit migrations applied"
            if not pending
            else f"unapplied better_audit migrations: {', '.join(pending)}",
        )
    )
    return results


def _interactive() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class _Raw:
    """A text stream onto the command's stdout that adds no line endings of its own."""

    def __init__(self, wrapper: Any) -> None:
        self._wrapper = wrapper

    def write(self, text: str) -> int:
        self._wrapper.write(text, ending="")
        return len(text)


class _ProgressBar:
    """A one-line text bar on stderr, redrawn on every batch."""

    def __init__(self, stream: Any, label: str = "purging") -> None:
        self.stream = stream
        self.label = label
        self.drawn = False

    def update(self, done: int, total: int) -> None:
        total = max(total, done, 1)
        filled = round(done / total * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {done:,}/{total:,} ({done / total:.0%})", ending=""
        )
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("")


def _trigger_checks(using: str) -> list[tuple[bool, str]]:
    """One line per audited table: its capture triggers are installed and up to date."""
    from better_audit import trail

    missing = set(trail.missing(using))
    return [
        (
            table not in missing,
            f"{table}: capture triggers "
            + ("installed" if table not in missing else "missing or out of date: run migrate"),
        )
        for table in sorted(trail.wanted(using))
    ]
