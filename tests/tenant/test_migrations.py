"""RLS SQL emitted by migrations: makemigrations, sqlmigrate, reversal and existing tables."""

import io

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection, migrations, models
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.state import ProjectState
from django.db.migrations.writer import MigrationWriter

from better_tenant import run_as
from better_tenant.constraints import TenantRLS
from better_tenant.models import TenantField
from better_tenant.operations import EnableTenantRLS
from better_tenant.sql import POLICY_TENANT
from better_tenant.testing import connected_as_owner
from tests.testapp.models import Comment, Note


def app_role() -> str:
    """The role the suite connects as, whatever DATABASE_URL names (ask before switching)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT session_user")
        return cursor.fetchone()[0]


def policies(table):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT policyname FROM pg_policies WHERE tablename = %s ORDER BY policyname", [table]
        )
        return [row[0] for row in cursor.fetchall()]


def test_every_concrete_tenant_model_carries_the_rls_constraint():
    assert [c for c in Note._meta.constraints if isinstance(c, TenantRLS)] == [
        TenantRLS(name="test_notes_rls")
    ]
    assert TenantRLS(name="test_comments_rls", foreign_keys=["note"]) in Comment._meta.constraints


def test_makemigrations_has_nothing_left_to_emit():
    loader = MigrationLoader(None, ignore_no_migrations=True)
    changes = MigrationAutodetector(loader.project_state(), ProjectState.from_apps(apps)).changes(
        graph=loader.graph
    )
    assert changes == {}


def test_makemigrations_emits_rls_for_a_new_tenant_model():
    loader = MigrationLoader(None, ignore_no_migrations=True)
    before = loader.project_state()
    before.remove_model("testapp", "comment")
    changes = MigrationAutodetector(before, ProjectState.from_apps(apps)).changes(
        graph=loader.graph
    )
    written = MigrationWriter(changes["testapp"][0]).as_string()
    assert (
        "better_tenant.constraints.TenantRLS(foreign_keys=['note'], name='test_comments_rls')"
        in written
    )


@pytest.mark.django_db
def test_sqlmigrate_shows_policies_trigger_and_composite_key():
    out = io.StringIO()
    call_command("sqlmigrate", "testapp", "0001", stdout=out)
    sql = out.getvalue()
    assert 'CREATE POLICY "rls_tenant_test_notes" ON "test_notes" FOR ALL TO PUBLIC' in sql
    assert f"USING (tenant_id = {POLICY_TENANT})" in sql
    assert 'TO "better_tenant_system"' in sql
    assert 'CREATE TRIGGER "set_tenant_id_trigger" BEFORE INSERT ON "test_comments"' in sql
    assert 'FOREIGN KEY (tenant_id, "note_id") REFERENCES "test_notes" (tenant_id, "id")' in sql
    # The tenant path never casts the column and never ORs a bypass.
    assert "(tenant_id)::text" not in sql and " OR " not in sql


@pytest.mark.django_db(transaction=True)
def test_migrating_backwards_removes_the_policies_and_forwards_restores_them():
    assert policies("test_notes") == ["rls_system_test_notes", "rls_tenant_test_notes"]
    app = app_role()
    with connected_as_owner():
        call_command("migrate", "testapp", "zero", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('test_notes')")
            assert cursor.fetchone() == (None,)
        call_command("migrate", "testapp", verbosity=0)
        from better_tenant.conf import tenant_settings
        from better_tenant.sql import grant_privileges_sql

        with connection.cursor() as cursor:
            cursor.execute(grant_privileges_sql(None, app, tenant_settings.SYSTEM_ROLE))
    assert policies("test_notes") == ["rls_system_test_notes", "rls_tenant_test_notes"]


@pytest.mark.django_db(transaction=True)
def test_enable_tenant_rls_operation_on_an_existing_table(tenant, other_tenant):
    op = EnableTenantRLS("legacy_items", foreign_keys=[["note_id", "test_notes"]])
    app = app_role()
    with connected_as_owner():
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE legacy_items (id bigserial PRIMARY KEY, tenant_id uuid NOT NULL "
                "REFERENCES tenants(id), note_id bigint, label text)"
            )
            cursor.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON legacy_items TO "{app}"')
            cursor.execute(f'GRANT USAGE ON SEQUENCE legacy_items_id_seq TO "{app}"')
        with connection.schema_editor() as editor:
            op.database_forwards("testapp", editor, ProjectState(), ProjectState())
    try:
        assert policies("legacy_items") == ["rls_system_legacy_items", "rls_tenant_legacy_items"]
        with run_as(tenant), connection.cursor() as cursor:
            cursor.execute("INSERT INTO legacy_items (label) VALUES ('mine')")
        with run_as(other_tenant), connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM legacy_items")
            assert cursor.fetchone() == (0,)
        with connected_as_owner(), connection.schema_editor() as editor:
            op.database_backwards("testapp", editor, ProjectState(), ProjectState())
        assert policies("legacy_items") == []
    finally:
        with connected_as_owner(), connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS legacy_items")


# --- the order of composite keys ------------------------------------------------------------------


def collected_sql(*operations):
    """The SQL of one migration of the app ``probe`` (not installed), as sqlmigrate prints it."""
    migration = migrations.Migration("0001_initial", "probe")
    migration.operations = list(operations)
    state = MigrationLoader(None, ignore_no_migrations=True).project_state()
    with connection.schema_editor(collect_sql=True, atomic=False) as editor:
        migration.apply(state, editor)
    return "\n".join(editor.collected_sql)


def create(name, *fields, **options):
    return migrations.CreateModel(
        name,
        [("id", models.BigAutoField(primary_key=True)), ("tenant", TenantField()), *fields],
        options=options,
    )


def project_key():
    return models.ForeignKey("probe.project", on_delete=models.CASCADE)


PROJECT_TAG_KEY = (
    'FOREIGN KEY (tenant_id, "project_id") REFERENCES "probe_project" (tenant_id, "id")'
)


@pytest.mark.django_db
def test_a_composite_key_waits_for_the_tenant_rls_of_the_table_it_references():
    # The reported order: ProjectTag's TenantRLS runs before Project's (which waits for tags).
    sql = collected_sql(
        create("Project"),
        create(
            "ProjectTag",
            ("project", project_key()),
            constraints=[TenantRLS(name="probe_projecttag_rls", foreign_keys=["project"])],
        ),
        migrations.AddConstraint("project", TenantRLS(name="probe_project_rls")),
    )
    assert sql.count(PROJECT_TAG_KEY) == 1
    key = sql.index('ADD CONSTRAINT "probe_project_tenant_key" UNIQUE')
    assert (
        key
        < sql.index("-- composite keys of tables migrated before probe_project")
        < sql.index(PROJECT_TAG_KEY)
    )
    # Guarded: it only runs where the database holds Project's key and both columns.
    assert "IF to_regclass('\"probe_project_tenant_key\"') IS NOT NULL" in sql


@pytest.mark.django_db
def test_a_composite_key_to_a_table_whose_key_waits_in_deferred_sql_follows_it():
    # CreateModel runs its TenantRLS at the end of the migration; an AddConstraint in between
    # must not add a key to it before the key exists.
    sql = collected_sql(
        create("Project", constraints=[TenantRLS(name="probe_project_rls")]),
        create("ProjectTag", ("project", project_key())),
        migrations.AddConstraint(
            "projecttag", TenantRLS(name="probe_projecttag_rls", foreign_keys=["project"])
        ),
    )
    assert sql.count(PROJECT_TAG_KEY) == 1
    assert sql.index('ADD CONSTRAINT "probe_project_tenant_key" UNIQUE') < sql.index(
        PROJECT_TAG_KEY
    )


@pytest.mark.django_db
def test_removing_rls_added_earlier_in_the_same_migration_cancels_it():
    # What squashing can leave: CreateModel with its TenantRLS, then that TenantRLS replaced.
    sql = collected_sql(
        create("Project", constraints=[TenantRLS(name="probe_project_rls")]),
        migrations.RemoveConstraint("project", "probe_project_rls"),
        migrations.AddConstraint("project", TenantRLS(name="probe_project_rls")),
    )
    assert sql.count('CREATE POLICY "rls_tenant_probe_project"') == 1
    assert sql.index('DROP POLICY IF EXISTS "rls_tenant_probe_project"') < sql.index(
        'CREATE POLICY "rls_tenant_probe_project"'
    )


@pytest.mark.django_db
def test_a_removed_tenant_key_takes_the_composite_keys_that_reference_it():
    sql = collected_sql(
        create("Project", constraints=[TenantRLS(name="probe_project_rls")]),
        migrations.RemoveConstraint("project", "probe_project_rls"),
    )
    assert 'DROP CONSTRAINT IF EXISTS "probe_project_tenant_key" CASCADE;' in sql


@pytest.mark.django_db
def test_rls_waiting_for_a_table_that_the_same_migration_drops_goes_with_it():
    # Squashed: the model is created with its TenantRLS, loses its fields and is deleted.
    sql = collected_sql(
        create("Project", constraints=[TenantRLS(name="probe_project_rls")]),
        create(
            "Task",
            ("project", project_key()),
            constraints=[TenantRLS(name="probe_task_rls", foreign_keys=["project"])],
        ),
        migrations.RemoveField("task", "tenant"),
        migrations.DeleteModel("Task"),
    )
    assert 'CREATE POLICY "rls_tenant_probe_project"' in sql
    assert 'CREATE POLICY "rls_tenant_probe_task"' not in sql
    assert '"probe_task_project_id_tenant_fk"' not in sql
