"""Capture on the Django release that runs: verified, wrapped as written, and loud when not."""

from __future__ import annotations

import django
import pytest
from django.core import checks
from django.db import models

from better_audit import capture, seams
from better_audit.checks import check_django_release


def test_the_running_django_is_a_verified_release_with_every_method_as_written():
    # Each cell of the test matrix runs this: capture is verified on the Django it runs on.
    assert seams.running() in seams.VERIFIED, django.get_version()
    assert seams.problems() == []
    assert check_django_release() == []


def test_every_write_path_is_wrapped_and_single_rows_fold():
    assert capture._FOLDED_INSERT and capture._FOLDED_UPDATE
    assert set(capture._originals) == {
        "save_base",
        "_do_update",
        "_do_insert",
        "delete_batch",
        "_raw_delete",
        "update",
        "update_batch",
        "bulk_create",
        "_insert",
    }
    assert models.Model._do_update is capture._do_update
    assert models.Model.save_base.__wrapped__ is capture._originals["save_base"]


def test_an_unverified_release_is_a_system_check_error(monkeypatch):
    monkeypatch.setattr(django, "VERSION", (9, 9, 0, "final", 0))
    monkeypatch.setattr(django, "get_version", lambda: "9.9")
    # Then the methods are compared with the newest verified release's, which may add errors.
    error, *others = check_django_release()
    assert error.level == checks.ERROR and error.id == "better_audit.E012"
    assert all(other.id == "better_audit.E012" for other in others)
    assert "Django 9.9 is not a release" in error.msg
    assert "5.2" in error.msg and "6.1" in error.msg


def test_a_changed_method_is_named_by_the_check(monkeypatch):
    def _do_insert(self, manager, using, fields, returning_fields, raw, on_conflict):
        raise AssertionError("never called")

    monkeypatch.setattr(models.Model, "_do_insert", _do_insert, raising=True)
    assert not seams.matches("Model._do_insert")
    [error] = check_django_release()
    assert error.id == "better_audit.E012"
    assert "Model._do_insert(self, manager, using, fields, returning_fields, raw, on_conflict)" in (
        error.msg
    )


def test_a_missing_method_is_named_by_the_check(monkeypatch):
    monkeypatch.delattr(models.QuerySet, "_prepare_for_bulk_create")
    assert "QuerySet._prepare_for_bulk_create does not exist" in seams.mismatches()


def test_a_method_whose_parameters_changed_is_not_wrapped(monkeypatch):
    # install() on a Django whose _do_update takes other parameters: left alone, logged, no fold.
    def _do_update(self, base_qs, using, pk_val, values, update_fields, forced_update, extra):
        return False

    monkeypatch.setattr(capture, "_originals", {})
    monkeypatch.setattr(capture, "_FOLDED_UPDATE", True)
    monkeypatch.setattr(capture, "_FOLDED_INSERT", True)
    for owner, name in [
        (models.Model, "save_base"),
        (models.Model, "_do_insert"),
        (models.query.QuerySet, "update"),
        (models.query.QuerySet, "bulk_create"),
        (models.query.QuerySet, "_insert"),
        (models.query.QuerySet, "_raw_delete"),
        (models.sql.DeleteQuery, "delete_batch"),
        (models.sql.UpdateQuery, "update_batch"),
    ]:
        # The originals, so that install() wraps them afresh (monkeypatch restores the wrappers).
        monkeypatch.setattr(owner, name, owner.__dict__[name].__wrapped__)
    monkeypatch.setattr(models.Model, "_do_update", _do_update)
    capture.install()
    assert models.Model._do_update is _do_update
    assert "_do_update" not in capture._originals and "_do_insert" in capture._originals
    assert not capture._FOLDED_UPDATE
    assert not capture._can_fold(models.Model, ())
    assert check_django_release()[0].msg.startswith("Model._do_update(")


@pytest.mark.parametrize("release", sorted(seams.VERIFIED))
def test_each_verified_release_lists_every_method(release):
    assert set(seams.VERIFIED[release].signatures) == set(seams._SHARED)
    assert all(seams.VERIFIED[release].signatures.values())
