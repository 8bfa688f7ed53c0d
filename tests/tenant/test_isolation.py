"""Attacks that must fail, run as the application role."""

import uuid

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Count, Max, OuterRef, Subquery, Sum

from better_tenant import no_tenant, run_as, run_as_system
from better_tenant.errors import CrossTenantWrite
from tests.testapp.models import Comment, Country, Note

pytestmark = pytest.mark.django_db


@pytest.fixture
def data(tenant, other_tenant):
    with run_as(tenant):
        a1 = Note.objects.create(title="a1", score=1)
        Note.objects.create(title="a2", score=2)
        Comment.objects.create(note=a1, text="ca")
    with run_as(other_tenant):
        b1 = Note.objects.create(title="b1", score=100)
        Comment.objects.create(note=b1, text="cb")
    return {"a": tenant, "b": other_tenant, "a1": a1, "b1": b1}


def raw(query, params=()):
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def test_orm_reads_are_confined(data):
    with run_as(data["a"]):
        assert sorted(Note.objects.values_list("title", flat=True)) == ["a1", "a2"]
        assert not Note.objects.filter(pk=data["b1"].pk).exists()
        assert Note.objects.filter(tenant_id=data["b"].pk).count() == 0


def test_raw_sql_is_confined(data):
    with run_as(data["a"]):
        assert raw("SELECT title FROM test_notes ORDER BY title") == [("a1",), ("a2",)]
        assert raw("SELECT count(*) FROM test_notes WHERE tenant_id = %s", [data["b"].pk]) == [(0,)]


def test_joins_and_subqueries_are_confined(data):
    with run_as(data["a"]):
        assert raw(
            "SELECT n.title, c.text FROM test_notes n JOIN test_comments c ON c.note_id = n.id"
        ) == [("a1", "ca")]
        assert raw(
            "SELECT count(*) FROM test_comments WHERE note_id IN (SELECT id FROM test_notes)"
        ) == [(1,)]
        latest = Comment.objects.filter(note=OuterRef("pk")).values("text")[:1]
        rows = Note.objects.annotate(c=Subquery(latest)).values_list("title", "c")
        assert sorted(rows, key=lambda r: r[0]) == [("a1", "ca"), ("a2", None)]
        assert list(Comment.objects.filter(note__title="b1")) == []


def test_aggregates_are_confined(data):
    with run_as(data["a"]):
        totals = Note.objects.aggregate(total=Sum("score"), top=Max("score"), n=Count("id"))
        assert totals == {"total": 3, "top": 2, "n": 2}
        assert raw("SELECT sum(score) FROM test_notes") == [(3,)]


def test_bulk_update_and_delete_cannot_reach_other_tenants(data):
    with run_as(data["a"]):
        assert Note.objects.update(score=0) == 2
        assert Note.objects.filter(pk=data["b1"].pk).delete()[0] == 0
        assert raw("DELETE FROM test_notes WHERE title = 'b1' RETURNING id") == []
        assert (
            raw(
                "UPDATE test_notes SET score = -1 WHERE tenant_id = %s RETURNING id", [data["b"].pk]
            )
            == []
        )
    with run_as(data["b"]):
        assert Note.objects.get().score == 100


def test_insert_into_another_tenant_is_refused_with_a_clear_error(data):
    with run_as(data["a"]):
        with (
            pytest.raises(
                CrossTenantWrite, match=r"runs as tenant .* written into the tenant in scope"
            ),
            transaction.atomic(),
        ):
            Note.objects.create(title="x", tenant_id=data["b"].pk)
        with pytest.raises(CrossTenantWrite), transaction.atomic():
            raw(
                "INSERT INTO test_notes (tenant_id, title, body, score, created) "
                "VALUES (%s, 'x', '', 0, now())",
                [data["b"].pk],
            )


def test_moving_a_row_to_another_tenant_is_refused(data):
    with run_as(data["a"]):
        with pytest.raises(CrossTenantWrite), transaction.atomic():
            Note.objects.filter(pk=data["a1"].pk).update(tenant_id=data["b"].pk)
        note = Note.objects.get(pk=data["a1"].pk)
        note.tenant_id = data["b"].pk
        with pytest.raises(CrossTenantWrite), transaction.atomic():
            note.save()


def test_foreign_key_to_another_tenants_row_is_refused(data):
    # The plain FK would accept b1's id; the composite (tenant_id, note_id) key does not.
    with (
        run_as(data["a"]),
        pytest.raises(IntegrityError, match="tenant_fk"),
        transaction.atomic(),
    ):
        Comment.objects.create(note_id=data["b1"].pk, text="sneaky")
        # The composite key is DEFERRABLE INITIALLY DEFERRED: force the check now.
        raw("SET CONSTRAINTS ALL IMMEDIATE")


def test_no_tenant_means_no_rows_and_no_inserts(data):
    with no_tenant():
        assert Note.objects.count() == 0
        assert raw("SELECT count(*) FROM test_comments") == [(0,)]
        with pytest.raises(IntegrityError, match="no tenant in scope"), transaction.atomic():
            Note.objects.create(title="orphan")
    # Outside any scope at all (plain autocommit-style code) the same holds.
    assert Note.objects.count() == 0
    with pytest.raises(IntegrityError, match="no tenant in scope"), transaction.atomic():
        Note.objects.create(title="orphan")


def test_system_mode_sees_all_and_must_name_the_tenant_on_insert(data):
    with run_as_system():
        assert Note.objects.count() == 3
        with pytest.raises(IntegrityError, match="set tenant_id explicitly"), transaction.atomic():
            Note.objects.create(title="nowhere")
        Note.objects.create(title="placed", tenant_id=data["b"].pk)
    with run_as(data["b"]):
        assert Note.objects.filter(title="placed").exists()


def test_the_app_role_cannot_write_tenants_outside_system_mode(data):
    with run_as(data["a"]):
        with pytest.raises(DatabaseError), transaction.atomic():
            raw(
                "INSERT INTO tenants (id, name, slug, created_at) VALUES (%s, 'x', 'x', now())",
                [uuid.uuid4()],
            )
        assert raw("UPDATE tenants SET name = 'pwned' RETURNING id") == []
        assert raw("DELETE FROM tenants RETURNING id") == []
        # A tenant reads its own row of tenants and no other.
        assert raw("SELECT id FROM tenants") == [(data["a"].pk,)]


def test_truncate_is_not_granted(data):
    with (
        run_as(data["a"]),
        pytest.raises(DatabaseError, match="permission denied"),
        transaction.atomic(),
    ):
        raw("TRUNCATE test_notes")


def test_resetting_the_setting_by_hand_does_not_widen_access(data):
    with run_as(data["a"]):
        raw("SELECT set_config('app.current_tenant', '', true)")
        assert Note.objects.count() == 0
        raw("SELECT set_config('app.bypass_rls', 'true', true)")
        assert Note.objects.count() == 0


def test_shared_tables_without_tenant_stay_visible(data):
    with run_as_system():
        Country.objects.create(code="FR")
    with run_as(data["a"]):
        assert Country.objects.filter(code="FR").exists()
    with run_as(data["b"]):
        assert Country.objects.filter(code="FR").exists()


def test_nested_savepoints_with_errors_never_cross_over(data):
    a, b = data["a"], data["b"]
    with run_as(a):
        for _ in range(3):
            with pytest.raises(ZeroDivisionError), run_as(b):
                assert list(Note.objects.values_list("title", flat=True)) == ["b1"]
                with run_as(a):
                    assert Note.objects.count() == 2
                1 / 0  # noqa: B018
            assert Note.objects.count() == 2


def test_plugin_isolation_assertion_passes_for_tenant_models(assert_tenant_isolated):
    assert_tenant_isolated(Note, {"title": "probe"})


def test_plugin_isolation_assertion_catches_a_leak(tenant, other_tenant):
    from better_tenant.testing import IsolationError, assert_tenant_isolated

    with pytest.raises(IsolationError, match="visible"):
        # Country has no RLS: a row made "as" one tenant is visible to the other.
        assert_tenant_isolated(
            _TenantlessShim,
            lambda: Country.objects.create(code="XX"),
            tenants=(tenant, other_tenant),
        )


class _TenantlessShim:
    """Country seen through the assertion's eyes, to prove the assertion fails on a leak."""

    _meta = Country._meta
    _default_manager = Country._default_manager
