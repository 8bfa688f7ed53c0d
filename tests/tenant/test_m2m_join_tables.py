"""Automatic many-to-many join tables: a tenant sees and makes only links between its own rows."""

from types import SimpleNamespace

import pytest
from django.db import DatabaseError, connection, models, transaction
from django.db.migrations.state import ModelState, ProjectState
from django.db.migrations.writer import MigrationWriter
from django.test.utils import isolate_apps

from better_tenant import checks, run_as, run_as_system
from better_tenant.constraints import TenantJoinRLS
from better_tenant.context import no_tenant
from better_tenant.errors import CrossTenantWrite
from better_tenant.models import TenantModel
from better_tenant.testing import connected_as_owner
from tests.testapp.models import Country

# Not an installed app: makemigrations and the checks leave these models alone, and the
# fixture below creates their tables (and the RLS of the join tables) with the schema editor.
APP = "m2m_probe"


class Label(TenantModel):
    name = models.CharField(max_length=50)

    class Meta:
        app_label = APP
        db_table = "m2m_probe_labels"


class Task(TenantModel):
    title = models.CharField(max_length=50)
    labels = models.ManyToManyField(Label, related_name="tasks")
    countries = models.ManyToManyField(Country, related_name="+")

    class Meta:
        app_label = APP
        db_table = "m2m_probe_tasks"


TaskLabel = Task.labels.through
TaskCountry = Task.countries.through
RLS_REFUSAL = "row-level security"


@pytest.fixture(scope="module")
def tables(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), connected_as_owner(), connection.schema_editor() as editor:
        editor.create_model(Label)
        editor.create_model(Task)
    yield
    with django_db_blocker.unblock(), connected_as_owner(), connection.schema_editor() as editor:
        editor.delete_model(Task)
        editor.delete_model(Label)


@pytest.fixture
def rows(tables, tenant, other_tenant):
    """A task and a label in each of two tenants, each task linked to its tenant's label."""
    made = SimpleNamespace(a=tenant, b=other_tenant)
    for name, owner in (("a", tenant), ("b", other_tenant)):
        with run_as(owner):
            task = Task.objects.create(title=f"task {name}")
            label = Label.objects.create(name=f"label {name}")
            task.labels.add(label)
        setattr(made, f"{name}_task", task)
        setattr(made, f"{name}_label", label)
    return made


def links(model=TaskLabel, column="label_id"):
    return set(model.objects.values_list("task_id", column))


def test_a_tenant_cannot_link_its_row_to_another_tenants_row(rows):
    with pytest.raises(CrossTenantWrite, match=RLS_REFUSAL), run_as(rows.a):
        rows.a_task.labels.add(rows.b_label)
    with pytest.raises(DatabaseError, match=RLS_REFUSAL), run_as(rows.a):
        TaskLabel.objects.create(task_id=rows.b_task.pk, label_id=rows.a_label.pk)
    with pytest.raises(DatabaseError, match=RLS_REFUSAL), run_as(rows.a):
        # Nor move one of its links onto another tenant's row.
        TaskLabel.objects.filter(task_id=rows.a_task.pk).update(label_id=rows.b_label.pk)
    with run_as_system():
        assert links() == {(rows.a_task.pk, rows.a_label.pk), (rows.b_task.pk, rows.b_label.pk)}


def test_a_tenant_sees_and_removes_only_links_between_its_own_rows(rows):
    with run_as(rows.a):
        assert links() == {(rows.a_task.pk, rows.a_label.pk)}
        assert list(rows.a_label.tasks.all()) == [rows.a_task]
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT task_id, label_id FROM "{TaskLabel._meta.db_table}"')
            assert cursor.fetchall() == [(rows.a_task.pk, rows.a_label.pk)]
        assert TaskLabel.objects.filter(task_id=rows.b_task.pk).delete()[0] == 0
        rows.a_task.labels.clear()
    with run_as(rows.b):
        assert links() == {(rows.b_task.pk, rows.b_label.pk)}
    with no_tenant():
        assert links() == set()
    with run_as_system():
        assert links() == {(rows.b_task.pk, rows.b_label.pk)}


def test_system_mode_sees_every_link_and_a_tenant_none_that_leaves_its_rows(rows):
    with run_as_system():
        # System mode may link across tenants; neither tenant then sees that link.
        rows.a_task.labels.add(rows.b_label)
        assert len(links()) == 3
    with run_as(rows.a):
        assert links() == {(rows.a_task.pk, rows.a_label.pk)}
    with run_as(rows.b):
        assert links() == {(rows.b_task.pk, rows.b_label.pk)}


def test_links_to_a_shared_model_belong_to_the_tenant_row_they_join(rows):
    canada = Country.objects.create(code="CA")
    with run_as(rows.a):
        rows.a_task.countries.add(canada)
    with run_as(rows.b):
        assert links(TaskCountry, "country_id") == set()
        with pytest.raises(DatabaseError, match=RLS_REFUSAL), transaction.atomic():
            TaskCountry.objects.create(task_id=rows.a_task.pk, country_id=canada.pk)
        rows.b_task.countries.add(canada)
        assert links(TaskCountry, "country_id") == {(rows.b_task.pk, canada.pk)}
    with run_as(rows.a):
        assert links(TaskCountry, "country_id") == {(rows.a_task.pk, canada.pk)}
    with run_as_system():
        assert len(links(TaskCountry, "country_id")) == 2


def test_the_policy_checks_only_the_tenant_rows_a_link_joins():
    with connection.schema_editor(collect_sql=True, atomic=False) as editor:
        labels = str(TenantJoinRLS(name="x", field="labels").create_sql(Task, editor))
        countries = str(TenantJoinRLS(name="y", field="countries").create_sql(Task, editor))
    assert (
        'EXISTS (SELECT 1 FROM "m2m_probe_tasks" r WHERE r."id" = '
        '"m2m_probe_tasks_labels"."task_id")\n    AND EXISTS (SELECT 1 FROM "m2m_probe_labels" r '
        'WHERE r."id" = "m2m_probe_tasks_labels"."label_id")' in labels
    )
    # Rows of a shared model are visible to every tenant anyway: only the task is checked.
    assert '"m2m_probe_tasks_countries"."task_id"' in countries
    assert "test_countries" not in countries


def test_every_automatic_join_table_of_a_tenant_model_gets_tenant_join_rls():
    joins = [c for c in Task._meta.constraints if isinstance(c, TenantJoinRLS)]
    assert joins == [
        TenantJoinRLS(name="m2m_probe_tasks_labels_rls", field="labels"),
        TenantJoinRLS(name="m2m_probe_tasks_countries_rls", field="countries"),
    ]
    written, _ = MigrationWriter.serialize(joins[0])
    assert written == (
        "better_tenant.constraints.TenantJoinRLS(field='labels', name='m2m_probe_tasks_labels_rls')"
    )


@isolate_apps("tests.testapp")
def test_w003_names_join_tables_left_without_row_level_security():
    class Tag(TenantModel):
        class Meta:
            app_label = "testapp"

    class Link(TenantModel):
        tag = models.ForeignKey(Tag, on_delete=models.CASCADE)
        post = models.ForeignKey("Post", on_delete=models.CASCADE)

        class Meta:
            app_label = "testapp"

    class Post(TenantModel):
        tags = models.ManyToManyField(Tag, related_name="posts")
        linked = models.ManyToManyField(Tag, through=Link, related_name="+")

        class Meta:
            app_label = "testapp"

    class Board(models.Model):
        """A shared model: its join table to Post has nothing to secure it with."""

        posts = models.ManyToManyField(Post, related_name="boards")

        class Meta:
            app_label = "testapp"

        def __str__(self):
            return "board"

    # Explicit through models are TenantModels of their own: no join constraint for them.
    assert [c.field for c in Post._meta.constraints if isinstance(c, TenantJoinRLS)] == ["tags"]
    assert [m.id for m in checks.tenant_model_messages(Post)] == []
    (shared,) = checks.shared_reference_messages(Board)
    assert shared.id == "better_tenant.W003"
    assert "testapp.Board.posts links the tenant model testapp.Post" in shared.msg
    assert "Declare the many-to-many field on Post" in shared.hint

    # A join table whose TenantJoinRLS no migration adds yet (e.g. made before it existed).
    state = ProjectState()
    post = ModelState.from_model(Post)
    post.options["constraints"] = [
        c for c in post.options["constraints"] if not isinstance(c, TenantJoinRLS)
    ]
    state.add_model(post)
    (missing,) = checks.rls_migration_messages([Post], state)
    assert missing.id == "better_tenant.W003"
    assert "automatic join table of testapp.Post.tags has no row-level security" in missing.msg
    assert "makemigrations testapp" in missing.hint
    state.add_model(ModelState.from_model(Post))
    assert checks.rls_migration_messages([Post], state) == []


@pytest.mark.django_db
def test_check_treats_a_secured_join_table_as_confined(tables):
    from better_tenant.inspection import _secured_join_table

    with connection.cursor() as cursor:
        # The join table of two tenant models is confined by its policy; a plain table is not.
        assert _secured_join_table(cursor, TaskLabel._meta.db_table) is True
        assert _secured_join_table(cursor, Country._meta.db_table) is False
        assert _secured_join_table(cursor, "no_such_table") is False
