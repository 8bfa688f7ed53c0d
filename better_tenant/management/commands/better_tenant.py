"""``manage.py better_tenant``: init, migrate, add-table, seed and check."""

from __future__ import annotations

import json
import re
from importlib import import_module
from pathlib import Path
from typing import Any

from django.apps import apps
from django.core import checks as django_checks
from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError, connections, migrations, transaction
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.writer import MigrationWriter
from django.utils.text import slugify

from better_core.commands import SubcommandCommand
from better_tenant import inspection, keys, sql
from better_tenant.conf import tenant_settings
from better_tenant.operations import EnableTenantRLS, InstallTenantRLS, context_functions
from better_tenant.registry import registered_roles

ROLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


class Command(SubcommandCommand):
    help = "Set up, migrate, seed and verify PostgreSQL row-level security for tenants."
    verbosity_help = "for check: 1 lists problems, 2 every check"
    database_help = "database alias (default: BETTER_TENANT['DATABASE'])"

    def default_database(self) -> str:
        return tenant_settings.DATABASE

    def add_subcommands(self, subparsers: Any) -> None:
        init = subparsers.add_parser(
            "init",
            help="Let the app role enter the system role and grant it table privileges.",
            description=(
                "Run as the role that owns the tables: creates the system role if missing, makes "
                "the app role a NOINHERIT member of it (and of the roles installed apps register "
                "for their privileged paths) and grants SELECT, INSERT, UPDATE, DELETE (never "
                "TRUNCATE) on current and future tables."
            ),
        )
        init.add_argument(
            "--app-role",
            help="the role the application connects as (default: USER of the database settings)",
        )
        init.add_argument("--dry-run", action="store_true", help="print the SQL, change nothing")

        migrate = subparsers.add_parser(
            "migrate",
            help="Write a migration enabling RLS on tenant tables created outside TenantModel.",
            description=(
                "Finds tables with a tenant_id column but no row-level security (or takes "
                "--tables) and writes a Django migration using EnableTenantRLS, or prints its SQL."
            ),
        )
        self._add_output_arguments(migrate)
        migrate.add_argument("--tables", help="comma-separated table names (default: detect)")

        add_table = subparsers.add_parser(
            "add-table",
            help="Write a migration enabling RLS on one table.",
            description="Like migrate, for one existing table that has a tenant_id column.",
        )
        add_table.add_argument("table", metavar="NAME", help="the table name in PostgreSQL")
        self._add_output_arguments(add_table)

        seed = subparsers.add_parser("seed", help="Create a tenant (in system mode).")
        seed.add_argument("--name", required=True, help="the tenant's display name")
        seed.add_argument("--slug", help="the tenant's slug (default: the slugified name)")
        seed.add_argument(
            "--if-missing",
            action="store_true",
            help="do nothing when a tenant with this slug exists",
        )

        check = subparsers.add_parser(
            "check",
            help="Verify roles, policies, triggers and isolation; exit 1 on any error.",
            description=(
                "Inspects the database as the runtime role, including views, materialized views "
                "and SECURITY DEFINER functions that read tenant tables past row-level security, "
                "then proves isolation with two throwaway tenants inside a transaction that is "
                "rolled back."
            ),
        )
        check.add_argument("--json", action="store_true", help="print the report as JSON")

    @staticmethod
    def _add_output_arguments(parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group()
        group.add_argument(
            "-o",
            "--output",
            metavar="FILE",
            help="write the migration to FILE, or into the directory FILE with the next number",
        )
        group.add_argument("--dry-run", action="store_true", help="print the SQL instead")

    # --- init ------------------------------------------------------------------------------------

    def handle_init(self, options: dict[str, Any]) -> None:
        alias = options["database"]
        connection = connections[alias]
        system_role = tenant_settings.SYSTEM_ROLE
        roles = [(role, role.role_name()) for role in registered_roles()]
        app_role = options.get("app_role")
        if app_role is not None and not _valid_role(app_role):
            raise CommandError(
                f"--app-role: {app_role!r} is not a role name; use letters, digits and "
                "underscores, starting with a letter or underscore (at most 63 bytes)."
            )
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user, current_schema()")
            owner, schema = cursor.fetchone()
            if app_role is None:
                app_role = connection.settings_dict.get("USER") or ""
                if not app_role or app_role == owner:
                    raise CommandError(
                        f"--app-role is required: init connects as {owner}, the role that owns "
                        "the tables, so it cannot tell which role the application uses. Pass "
                        "--app-role ROLE."
                    )
            if app_role == owner:
                raise CommandError(
                    f"--app-role: {app_role} is the role running init, which owns the tables; "
                    "the application must connect as a role that owns nothing."
                )
            if app_role == system_role:
                raise CommandError(
                    f"--app-role: {app_role} is the system role (BETTER_TENANT['SYSTEM_ROLE']); "
                    "name the role the application connects as."
                )
            for role, name in roles:
                if app_role == name:
                    where = f" ({role.setting})" if role.setting else ""
                    raise CommandError(
                        f"--app-role: {app_role} is {role.label}{where}; name the role the "
                        "application connects as."
                    )
            cursor.execute(
                "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", [app_role]
            )
            row = cursor.fetchone()
        if row is None:
            raise CommandError(
                f"--app-role: the role {app_role!r} does not exist. Create it once as a "
                f"superuser: CREATE ROLE {sql.qn(app_role)} LOGIN PASSWORD '...' NOSUPERUSER "
                "NOBYPASSRLS NOINHERIT;"
            )
        if row[0] or row[1]:
            raise CommandError(
                f"--app-role: {app_role} is {'a superuser' if row[0] else 'BYPASSRLS'}, so "
                "row-level security never applies to it; use a role without either."
            )
        statements = [
            sql.ensure_system_role_sql(system_role),
            sql.membership_sql(app_role, system_role),
        ]
        for role, name in roles:
            if role.ensure_sql is not None:
                statements.append(role.ensure_sql(name))
            statements.append(sql.membership_sql(app_role, name))
        signed = tenant_settings.SIGNED_CONTEXT
        statements.append(context_functions())
        statements.append(sql.grant_privileges_sql(owner, app_role, system_role, schema))
        if options["dry_run"]:
            self.stdout.write(f"-- better_tenant init: run as {owner}")
            self.stdout.write("\n\n".join([*statements, sql.revoke_temporary_sql()]))
            if signed:
                self.stdout.write(
                    "-- then the live keys go into the sequences "
                    f"{', '.join(sql.KEY_SEQUENCES)} as bound parameters"
                )
            return
        try:
            with transaction.atomic(using=alias), connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
                fingerprints = keys.install(connection) if signed else []
        except DatabaseError as exc:
            raise CommandError(
                f"init failed as {owner}: {str(exc).strip()}\nRun it as the role that owns the "
                "tables (in the example project `manage.py better_tenant init` connects as the "
                "owner by itself; elsewhere set the owner's credentials)."
            ) from exc
        self.ok(f"system role {system_role} exists")
        self.ok(f"{app_role} may SET ROLE {system_role} (for run_as_system) without inheriting it")
        for role, name in roles:
            self.ok(f"{app_role} may SET ROLE {name} ({role.describe()}) without inheriting it")
        self.ok(
            f"granted SELECT, INSERT, UPDATE, DELETE on tables and sequence use in {schema} to "
            f"{app_role} and {system_role}, also for tables {owner} creates later"
        )
        if signed:
            self.ok(
                f"signed context: {len(fingerprints)} live key(s) ({', '.join(fingerprints)}), "
                f"readable by {owner} alone"
            )
        else:
            self.ok("unsigned context (BETTER_TENANT['SIGNED_CONTEXT'] is False)")
        try:
            with transaction.atomic(using=alias), connection.cursor() as cursor:
                cursor.execute(sql.revoke_temporary_sql())
        except DatabaseError as exc:
            self.stdout.write(
                f"! TEMPORARY stays granted to PUBLIC ({str(exc).strip().splitlines()[0]}): "
                "as the database owner or a superuser run REVOKE TEMPORARY ON DATABASE <db> "
                "FROM PUBLIC;"
            )
        else:
            self.ok(f"only {owner} may create temporary objects in this database")

    # --- migrate / add-table ---------------------------------------------------------------------

    def handle_migrate(self, options: dict[str, Any]) -> None:
        alias = options["database"]
        model_tables = inspection.tenant_model_tables()
        with connections[alias].cursor() as cursor:
            if options.get("tables"):
                names = [t.strip() for t in options["tables"].split(",") if t.strip()]
                if not names:
                    raise CommandError("--tables: give at least one table name, e.g. --tables a,b.")
                problems = []
                for name in dict.fromkeys(names):
                    try:
                        _validate_table(cursor, name, model_tables, "--tables")
                    except CommandError as exc:
                        problems.append(str(exc))
                if problems:
                    raise CommandError("\n".join(problems))
                tables = list(dict.fromkeys(names))
            else:
                found = inspection.tables_without_rls(cursor)
                for name in found:
                    if name in model_tables:
                        self.stderr.write(
                            f"! {name} belongs to {model_tables[name]}, a TenantModel: run "
                            "`manage.py makemigrations` and `manage.py migrate` for it."
                        )
                tables = [t for t in found if t not in model_tables]
            if not tables:
                self.stdout.write(
                    "Nothing to do: every table with a tenant_id column has row-level security."
                )
                return
            self._emit(cursor, tables, options)

    def handle_add_table(self, options: dict[str, Any]) -> None:
        alias = options["database"]
        with connections[alias].cursor() as cursor:
            _validate_table(cursor, options["table"], inspection.tenant_model_tables(), "add-table")
            self._emit(cursor, [options["table"]], options)

    def _emit(self, cursor: Any, tables: list[str], options: dict[str, Any]) -> None:
        operations, notes = plan_operations(cursor, tables)
        for note in notes:
            self.stderr.write(f"! {note}")
        if options.get("dry_run"):
            self.stdout.write(dry_run_sql(cursor, operations))
            return
        if not options.get("output"):
            raise CommandError(
                "Pass -o FILE (a .py file or an app's migrations/ directory) to write a "
                "migration, or --dry-run to print the SQL."
            )
        path, app_label = write_migration(operations, options["output"], tables)
        where = f" for the app {app_label}" if app_label else ""
        self.stdout.write(f"✓ wrote {path}{where}: row-level security for {', '.join(tables)}")
        if app_label is None:
            self.stdout.write(
                "  Move it into the migrations/ directory of the app that owns these tables and "
                "add that app's latest migration to its dependencies, then run `manage.py migrate`."
            )
        else:
            self.stdout.write("  Apply it with `manage.py migrate`.")

    # --- seed ------------------------------------------------------------------------------------

    def handle_seed(self, options: dict[str, Any]) -> None:
        from better_tenant.api import MAX_SLUG, create_tenant, get_tenant_by_slug, validate_slug
        from better_tenant.exceptions import DuplicateTenantSlug, TenantError

        name = (options["name"] or "").strip()
        if not name:
            raise CommandError("--name: give the tenant a non-empty name.")
        slug = options.get("slug")
        if slug is None:
            slug = re.sub(r"[^a-z0-9]+", "-", slugify(name))[:MAX_SLUG].strip("-")
            if not slug:
                raise CommandError(
                    f"--name {name!r} gives no usable slug; pass --slug with lowercase letters, "
                    "digits and hyphens."
                )
        try:
            validate_slug(slug)
        except TenantError as exc:
            raise CommandError(f"--slug: {exc}") from exc
        if options["if_missing"]:
            existing = get_tenant_by_slug(slug)
            if existing is not None:
                self.stdout.write(f"Tenant already exists: {existing.name} ({existing.slug})")
                self.stdout.write(str(existing.pk))
                return
        try:
            tenant = create_tenant(name, slug)
        except DuplicateTenantSlug as exc:
            raise CommandError(f"--slug: {exc} Or pass --if-missing to keep it.") from exc
        except TenantError as exc:
            raise CommandError(str(exc)) from exc
        except DatabaseError as exc:
            raise CommandError(f"Creating the tenant failed: {str(exc).strip()}") from exc
        self.stdout.write(f"Created tenant: {tenant.name} ({tenant.slug})")
        self.stdout.write(str(tenant.pk))

    # --- check -----------------------------------------------------------------------------------

    def handle_check(self, options: dict[str, Any]) -> None:
        report = inspection.Report()
        report.findings += system_check_findings()
        try:
            database = inspection.run_checks(options["database"])
        except DatabaseError as exc:
            raise CommandError(
                f"Cannot inspect the database {options['database']!r}: {str(exc).strip()}"
            ) from exc
        report.findings += database.findings
        report.tables = database.tables
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
        else:
            self._print_report(report, options.get("verbosity", 1))
        if not report.ok:
            raise SystemExit(1)

    def _print_report(self, report: inspection.Report, verbosity: int) -> None:
        sections: dict[str, list[inspection.Finding]] = {}
        for finding in report.findings:
            sections.setdefault(finding.section, []).append(finding)
        for section, findings in sections.items():
            statuses = {f.status for f in findings}
            status = next(
                (s for s in (inspection.ERROR, inspection.WARNING) if s in statuses), inspection.OK
            )
            passed = sum(1 for f in findings if f.status == inspection.OK)
            shown = [f for f in findings if verbosity >= 2 or f.status != inspection.OK]
            if not shown:
                noun = "check" if passed == 1 else "checks"
                self.stdout.write(f"{self.symbol(status)} {section}: {passed} {noun} passed")
                continue
            self.stdout.write(f"{self.symbol(status)} {section}")
            for finding in shown:
                self.stdout.write(f"    {self.symbol(finding.status)} {finding.message}")
                if finding.hint:
                    self.stdout.write(f"      → {finding.hint}")
            hidden = passed - sum(1 for f in shown if f.status == inspection.OK)
            noun = "check" if hidden == 1 else "checks"
            if hidden:
                self.stdout.write(f"    {self.symbol(inspection.OK)} {hidden} other {noun} passed")
        errors, warnings = len(report.errors), len(report.warnings)
        passed = sum(1 for f in report.findings if f.status == inspection.OK)
        summary = (
            f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}, "
            f"{passed} passed ({len(report.tables)} tenant table{'s' * (len(report.tables) != 1)})"
        )
        style = (
            self.style.ERROR if errors else self.style.WARNING if warnings else self.style.SUCCESS
        )
        self.stdout.write("")
        self.stdout.write(style(summary))


# --- helpers (module level so tests and scripts can use them) ---------------------------------


def _valid_role(name: str) -> bool:
    return bool(ROLE_RE.match(name)) and len(name.encode()) <= 63


def system_check_findings() -> list[inspection.Finding]:
    """better_tenant's Django system checks as findings of the report."""
    findings = []
    for message in django_checks.run_checks(tags=["better_tenant"]):
        if message.is_silenced():
            continue
        if message.level >= django_checks.ERROR:
            status = inspection.ERROR
        elif message.level >= django_checks.WARNING:
            status = inspection.WARNING
        else:
            status = inspection.INFO
        findings.append(
            inspection.Finding(
                status, "settings and models", message.id or "", message.msg, message.hint or ""
            )
        )
    if not findings:
        findings.append(
            inspection.Finding(
                inspection.OK,
                "settings and models",
                "system_checks",
                "BETTER_TENANT settings and tenant models pass the system checks",
            )
        )
    return findings


def _validate_table(cursor: Any, table: str, model_tables: dict[str, str], flag: str) -> None:
    from better_tenant.models import Tenant

    if table == Tenant._meta.db_table:
        raise CommandError(
            f"{flag}: {table} is the tenants table; better_tenant's own migrations secure it "
            "(`manage.py migrate better_tenant`)."
        )
    facts = inspection.inspect_table(cursor, table, tenant_settings.SYSTEM_ROLE)
    if not facts.exists:
        raise CommandError(
            f"{flag}: the table {table!r} does not exist. Create it first (a migration or "
            "CREATE TABLE), then run this again."
        )
    if table in model_tables:
        raise CommandError(
            f"{flag}: {table} is the table of {model_tables[table]}, a TenantModel, whose "
            "row-level security comes from its own migrations: run `manage.py makemigrations`."
        )
    if not facts.has_tenant_id:
        raise CommandError(
            f"{flag}: {table} has no tenant_id column. Add it first, e.g. ALTER TABLE "
            f"{sql.qn(table)} ADD COLUMN tenant_id uuid NOT NULL REFERENCES tenants(id); "
            "then run this again."
        )
    if facts.columns["tenant_id"] != "uuid":
        raise CommandError(
            f"{flag}: {table}.tenant_id is {facts.columns['tenant_id']}; the policies compare it "
            "to a uuid. Change the column to uuid first."
        )
    if facts.rls_enabled or facts.policies:
        names = ", ".join(p.name for p in facts.policies) or "none"
        raise CommandError(
            f"{flag}: {table} already has row-level security (policies: {names}); nothing to "
            "add. `manage.py better_tenant check` tells whether it is complete."
        )


def plan_operations(cursor: Any, tables: list[str]) -> tuple[list[EnableTenantRLS], list[str]]:
    """One EnableTenantRLS per table, parents first, with composite keys where possible."""
    system_role = tenant_settings.SYSTEM_ROLE
    facts = {t: inspection.inspect_table(cursor, t, system_role) for t in tables}
    tenant_set = set(inspection.tenant_tables(cursor))
    notes: list[str] = []
    foreign_keys: dict[str, list[list[str]]] = {}
    parents: dict[str, set[str]] = {}
    others: dict[str, inspection.TableFacts] = {}
    for table, table_facts in facts.items():
        covered = {
            tuple(zip(fk.columns, fk.ref_columns, strict=True))
            for fk in table_facts.foreign_keys
            if "tenant_id" in fk.columns
        }
        foreign_keys[table] = []
        parents[table] = set()
        for fk in table_facts.foreign_keys:
            if len(fk.columns) != 1 or "tenant_id" in fk.columns or fk.ref_table not in tenant_set:
                continue
            column, ref, ref_column = fk.columns[0], fk.ref_table, fk.ref_columns[0]
            if any(
                set(pairs) == {("tenant_id", "tenant_id"), (column, ref_column)}
                for pairs in covered
            ):
                continue
            if ref in facts:
                keyed = facts[ref].pk_column == ref_column
            else:
                if ref not in others:
                    others[ref] = inspection.inspect_table(cursor, ref, system_role)
                keyed = others[ref].has_unique_on(("tenant_id", ref_column))
            if not keyed:
                notes.append(
                    f"{table}.{column} -> {ref}.{ref_column}: no composite key added, because "
                    f"{ref} has no UNIQUE (tenant_id, {ref_column}); add one and run add-table "
                    "again, or add the composite foreign key by hand."
                )
                continue
            foreign_keys[table].append(
                [column, ref] if ref_column == "id" else [column, ref, ref_column]
            )
            if ref in facts and ref != table:
                parents[table].add(ref)
    operations = []
    for table in _parents_first(tables, parents):
        operations.append(
            EnableTenantRLS(
                table=table,
                pk_column=facts[table].pk_column,
                foreign_keys=foreign_keys[table] or None,
            )
        )
        if facts[table].pk_column is None:
            notes.append(
                f"{table} has no single-column primary key: no UNIQUE (tenant_id, pk) key is "
                "added, so other tables cannot get composite foreign keys to it."
            )
    return operations, notes


def _parents_first(tables: list[str], parents: dict[str, set[str]]) -> list[str]:
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(table: str) -> None:
        if table in ordered or table in visiting:
            return
        visiting.add(table)
        for parent in sorted(parents.get(table, ())):
            visit(parent)
        visiting.discard(table)
        ordered.append(table)

    for table in tables:
        visit(table)
    return ordered


def dry_run_sql(cursor: Any, operations: list[EnableTenantRLS]) -> str:
    """The SQL the migration would run, with the trigger function first when it is missing."""
    from better_tenant.models import Tenant

    parts = []
    if not inspection.trigger_function_exists(cursor):
        tenants = inspection.inspect_table(
            cursor, Tenant._meta.db_table, tenant_settings.SYSTEM_ROLE
        )
        if tenants.policies:
            parts.append(
                f"-- better_tenant: the {sql.TRIGGER_FUNCTION}() function is missing\n"
                + sql.ensure_system_role_sql(tenant_settings.SYSTEM_ROLE)
                + "\n"
                + sql.trigger_function_sql()
            )
        else:
            parts.append(
                "-- better_tenant: trigger function and tenants-table policies (InstallTenantRLS)\n"
                + InstallTenantRLS(tenants_table=Tenant._meta.db_table).forward_sql()
            )
    for operation in operations:
        parts.append(f"-- {operation.describe()}\n{operation.forward_sql()}")
    return "\n\n".join(parts)


def migrations_app_for(directory: Path) -> str | None:
    """The label of the app whose migrations package is ``directory``, if any."""
    target = directory.resolve()
    for app_config in apps.get_app_configs():
        module_name, _ = MigrationLoader.migrations_module(app_config.label)
        if module_name is None:
            continue
        try:
            module = import_module(module_name)
            folders = [Path(p) for p in getattr(module, "__path__", [])]
        except ImportError:
            folders = [Path(app_config.path) / "migrations"]
        if any(folder.resolve() == target for folder in folders):
            return app_config.label
    return None


def write_migration(
    operations: list[EnableTenantRLS], output: str, tables: list[str]
) -> tuple[Path, str | None]:
    """Write a migration with ``operations`` to ``output`` (a .py file or a directory)."""
    path = Path(output)
    directory = path if path.is_dir() or output.endswith(("/", "\\")) else path.parent
    if not directory.is_dir():
        raise CommandError(f"-o: the directory {directory} does not exist; create it first.")
    app_label = migrations_app_for(directory)
    loader = MigrationLoader(None, ignore_no_migrations=True)
    dependencies = list(loader.graph.leaf_nodes("better_tenant"))
    if app_label and app_label != "better_tenant":
        dependencies += loader.graph.leaf_nodes(app_label)
    if directory == path:
        # The app's migrations when the directory is one, else the numbered files in it.
        names = [name for label, name in loader.disk_migrations if label == app_label]
        if not app_label:
            names = [f.stem for f in directory.glob("[0-9]*.py")]
        numbers = [MigrationAutodetector.parse_number(name) for name in names]
        number = max((n for n in numbers if n is not None), default=0) + 1
        suffix = tables[0] if len(tables) == 1 else "tables"
        name = f"{number:04d}_tenant_rls_{re.sub(r'[^0-9a-zA-Z_]+', '_', suffix)}"[:60]
        path = directory / f"{name}.py"
    elif path.suffix != ".py":
        raise CommandError(f"-o: {output} must be a .py file or an existing directory.")
    else:
        name = path.stem
    if not re.fullmatch(r"\w+", name):
        raise CommandError(f"-o: {path.name} is not a valid migration file name.")
    if path.exists():
        raise CommandError(f"-o: {path} already exists; choose another name.")
    migration = migrations.Migration(name, app_label or "better_tenant")
    # Migration declares both per class; this one-off instance carries its own.
    migration.dependencies = sorted(set(dependencies))  # type: ignore[misc]
    migration.operations = list(operations)  # type: ignore[misc]
    path.write_text(MigrationWriter(migration).as_string())
    return path, app_label
