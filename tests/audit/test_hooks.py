"""BEFORE_LOG / AFTER_LOG hooks: mutation, aborting, read-only observation, errors, settings."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from django.test import override_settings

import better_audit as audit
from better_audit.models import AuditLog
from better_tenant import run_as_system
from tests.support.audit import logs
from tests.testapp.models import Label

pytestmark = pytest.mark.django_db

AUDIT = {"TABLES": ["test_labels"]}
errors: list[tuple[BaseException, object]] = []
calls: list[str] = []


def record_error(exc, entry):
    errors.append((exc, entry))


def settings_hook(entry):
    calls.append("settings")
    entry.metadata["env"] = "test"


@pytest.fixture(autouse=True)
def _reset():
    errors.clear()
    calls.clear()
    yield


def test_before_hook_may_change_the_entry():
    def tag(entry):
        entry.metadata = {**entry.metadata, "service": "api"}
        entry.label = "tagged"

    audit.on_before_log(tag)
    Label.objects.create(name="a")
    [row] = logs()
    assert (row.metadata, row.label) == ({"service": "api"}, "tagged")


def test_before_hook_sees_the_enriched_redacted_entry():
    seen = []
    audit.enrich("test_labels", "*", redact=["color"], severity="high")
    audit.on_before_log(lambda entry: seen.append((entry.severity, dict(entry.after_data))))
    Label.objects.create(name="a", color="red")
    assert seen[0][0] == "high"
    assert "color" not in seen[0][1]


def test_a_raising_before_hook_aborts_only_that_entry():
    def refuse(entry):
        if entry.after_data["name"] == "secret":
            raise PermissionError("not this one")

    with override_settings(BETTER_AUDIT={**AUDIT, "ON_ERROR": record_error}):
        audit.on_before_log(refuse)
        Label.objects.create(name="secret")
        Label.objects.create(name="public")
    assert Label.objects.filter(name="secret").exists()
    assert [r.after_data["name"] for r in logs()] == ["public"]
    [(exc, entry)] = errors
    assert isinstance(exc, PermissionError)
    assert entry.after_data["name"] == "secret"


def test_after_hook_gets_a_read_only_copy_of_the_written_entry():
    observed = []

    def observe(entry):
        with run_as_system():
            written = AuditLog.objects.filter(pk=entry.id).exists()
        try:
            entry.label = "changed"
        except dataclasses.FrozenInstanceError:
            frozen = True
        else:
            frozen = False
        entry.after_data["name"] = "changed"
        observed.append((entry.id, written, frozen))

    with override_settings(BETTER_AUDIT={**AUDIT, "ON_ERROR": record_error}):
        audit.on_after_log(observe)
        Label.objects.create(name="a")
    [row] = logs()
    assert observed == [(row.id, True, True)]
    assert row.after_data["name"] == "a"
    assert errors == []


def test_a_raising_after_hook_is_reported_and_the_change_stands():
    with override_settings(BETTER_AUDIT={**AUDIT, "ON_ERROR": record_error}):
        audit.on_after_log(lambda entry: 1 / 0)
        Label.objects.create(name="a")
    assert Label.objects.filter(name="a").exists()
    assert len(logs()) == 1
    [(exc, entry)] = errors
    assert isinstance(exc, ZeroDivisionError) and entry.table_name == "test_labels"


def test_default_error_report_logs_no_personal_data(caplog):
    audit.on_before_log(lambda entry: (_ for _ in ()).throw(ValueError("alice@example.com")))
    with caplog.at_level(logging.ERROR, logger="better_audit"):
        Label.objects.create(name="alice@example.com")
    assert "ValueError" in caplog.text and "test_labels" in caplog.text
    assert "alice@example.com" not in caplog.text
    assert logs() == []


def test_settings_hooks_run_first_and_dispose_unregisters():
    audit.on_before_log(lambda entry: calls.append("runtime"))
    dispose = audit.on_before_log(lambda entry: calls.append("second"))
    hooks = {**AUDIT, "BEFORE_LOG": ["tests.audit.test_hooks.settings_hook"]}
    with override_settings(BETTER_AUDIT=hooks):
        Label.objects.create(name="a")
        dispose()
        Label.objects.create(name="b")
    assert calls == ["settings", "runtime", "second", "settings", "runtime"]
    assert [r.metadata for r in logs()] == [{"env": "test"}, {"env": "test"}]
