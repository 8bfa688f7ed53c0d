"""Enrichment: specificity tiers, merging, redaction, descriptions, precedence, settings rules."""

from __future__ import annotations

import pytest
from django.test import override_settings

import better_audit as audit
from better_audit.checks import check_configuration
from better_audit.enrichment import registry
from better_audit.exceptions import EnrichmentConflict, InvalidOperation
from better_tenant import run_as
from tests.support.audit import logs
from tests.testapp.models import Invoice, Label

pytestmark = pytest.mark.django_db

AUDIT = {"TABLES": ["test_invoices", "test_labels"]}


def describe(table: str, operation: str) -> tuple:
    resolved = registry.resolve(table, operation)
    return resolved.severity, list(resolved.compliance)


def test_tiers_resolve_from_least_to_most_specific():
    audit.enrich("*", "*", severity="low", compliance=["soc2"])
    audit.enrich("users", "*", severity="medium", compliance=["internal"])
    audit.enrich("users", "DELETE", severity="critical", compliance=["gdpr"])
    assert describe("users", "DELETE") == ("critical", ["soc2", "internal", "gdpr"])
    assert describe("users", "INSERT") == ("medium", ["soc2", "internal"])
    assert describe("orders", "DELETE") == ("low", ["soc2"])


def test_operation_tier_sits_between_global_and_table_rules():
    # Registered most specific first: the tier, not the order of registration, decides.
    audit.enrich("users", "*", label="user changed")
    audit.enrich("*", "DELETE", label="something deleted", severity="high")
    audit.enrich("*", "*", label="change", severity="low", notify=False)
    resolved = registry.resolve("users", "DELETE")
    assert (resolved.label, resolved.severity, resolved.notify) == ("user changed", "high", False)
    assert registry.resolve("orders", "DELETE").label == "something deleted"
    assert registry.resolve("orders", "INSERT").label == "change"


def test_within_a_tier_the_last_registration_wins_and_arrays_deduplicate():
    audit.enrich("users", "UPDATE", label="first", compliance=["gdpr", "soc2"], notify=True)
    audit.enrich("users", "UPDATE", label="second", compliance=["soc2", "hipaa"])
    resolved = registry.resolve("users", "UPDATE")
    assert resolved.label == "second"
    assert resolved.notify is True
    assert list(resolved.compliance) == ["gdpr", "soc2", "hipaa"]


def test_dispose_removes_a_rule():
    dispose = audit.enrich("users", "*", label="temporary")
    assert registry.resolve("users", "INSERT").label == "temporary"
    dispose()
    assert registry.resolve("users", "INSERT").label is None


def test_model_labels_name_their_table():
    audit.enrich("testapp.Invoice", "INSERT", label="invoice issued")
    assert registry.resolve("test_invoices", "INSERT").label == "invoice issued"


def test_rules_enrich_captured_entries(tenant):
    audit.enrich("*", "*", severity="low", compliance=["soc2"])
    audit.enrich(
        "test_invoices", "DELETE", label="Invoice deleted", severity="critical", notify=True
    )
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A-1")
        invoice.delete()
    insert, delete = logs()
    assert (insert.label, insert.severity, insert.compliance, insert.notify) == (
        None,
        "low",
        ["soc2"],
        None,
    )
    assert (delete.label, delete.severity, delete.compliance, delete.notify) == (
        "Invoice deleted",
        "critical",
        ["soc2"],
        True,
    )


# --- redaction ------------------------------------------------------------------------------------


def test_redact_removes_fields_from_images_and_diff(tenant):
    audit.enrich("test_invoices", "*", redact=["secret", "blob"])
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A-1", secret="hunter2")
        invoice.secret = "hunter3"
        invoice.number = "A-2"
        invoice.save()
    insert, update = logs()
    assert "secret" not in insert.after_data and "blob" not in insert.after_data
    assert insert.redacted_fields == ["blob", "secret"]
    assert "secret" not in update.before_data and "secret" not in update.after_data
    assert update.diff == {"changed_fields": ["number"]}
    assert update.redacted_fields == ["blob", "secret"]
    assert "hunter" not in str(insert.after_data) + str(update.before_data)


def test_include_keeps_only_the_listed_fields(tenant):
    audit.enrich("test_invoices", "UPDATE", include=["id", "number"])
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A-1", secret="s")
        invoice.number = "A-2"
        invoice.secret = "t"
        invoice.save()
    update = logs(operation="UPDATE")[0]
    assert update.before_data == {"id": invoice.pk, "number": "A-1"}
    assert update.after_data == {"id": invoice.pk, "number": "A-2"}
    assert update.diff == {"changed_fields": ["number"]}
    assert "secret" in update.redacted_fields and "number" not in update.redacted_fields
    assert update.record_id == str(invoice.pk)


def test_redact_and_include_in_one_rule_are_refused_at_registration():
    with pytest.raises(EnrichmentConflict, match="mutually exclusive"):
        audit.enrich("users", "*", redact=["password"], include=["id"])
    assert registry.resolve("users", "INSERT").redact == ()


def test_redact_and_include_from_different_tiers_are_refused_at_write_time(tenant):
    audit.enrich("*", "*", include=["id"])
    audit.enrich("test_invoices", "INSERT", redact=["secret"])
    with pytest.raises(EnrichmentConflict, match="test_invoices"):
        registry.resolve("test_invoices", "INSERT")
    with pytest.raises(EnrichmentConflict), run_as(tenant):
        Invoice.objects.create(number="A-1")
    with pytest.raises(EnrichmentConflict):
        audit.capture_log("test_invoices", "INSERT", "9", after={"id": 9})
    assert logs() == []


# --- descriptions ---------------------------------------------------------------------------------


def test_description_sees_post_redaction_data_actor_and_metadata(tenant):
    seen = {}

    def description(ctx):
        seen.update(before=ctx.before, after=ctx.after, diff=ctx.diff, actor=ctx.actor_id)
        ctx.after["number"] = "tampered"  # a copy: the stored image must not change
        fields = ", ".join(ctx.diff["changed_fields"])
        return f"{ctx.actor_id} changed {fields} ({ctx.metadata['via']})"

    audit.enrich("test_invoices", "*", redact=["secret"])
    audit.enrich("test_invoices", "UPDATE", description=description)
    with audit.audit_context(actor_id="u-1", metadata={"via": "api"}), run_as(tenant):
        invoice = Invoice.objects.create(number="A-1", secret="x")
        invoice.number = "A-2"
        invoice.secret = "y"
        invoice.save()
    update = logs(operation="UPDATE")[0]
    assert update.description == "u-1 changed number (api)"
    assert "secret" not in seen["before"] and "secret" not in seen["after"]
    assert seen["diff"] == {"changed_fields": ["number"]}
    assert update.after_data["number"] == "A-2"


def test_a_failing_description_is_swallowed(tenant):
    audit.enrich("test_invoices", "INSERT", label="issued", description=lambda ctx: 1 / 0)
    with run_as(tenant):
        Invoice.objects.create(number="A-1")
    [row] = logs()
    assert (row.description, row.label) == (None, "issued")


# --- precedence -----------------------------------------------------------------------------------


def test_per_call_values_win_over_context_and_context_over_rules():
    audit.enrich(
        "test_labels",
        "INSERT",
        label="rule label",
        description=lambda ctx: "rule description",
        severity="low",
        compliance=["soc2"],
        notify=False,
    )
    with audit.audit_context(label="context label", compliance=["gdpr"], reason="cleanup"):
        Label.objects.create(name="a")
        audit.capture_log(
            "test_labels",
            "INSERT",
            "manual",
            after={"name": "b"},
            label="call label",
            description="call description",
            severity="high",
            notify=True,
        )
    captured, manual = logs()
    assert (captured.label, captured.description, captured.severity) == (
        "context label",
        "rule description",
        "low",
    )
    assert (captured.compliance, captured.notify, captured.reason) == (
        ["gdpr", "soc2"],
        False,
        "cleanup",
    )
    assert (manual.label, manual.description, manual.severity, manual.notify) == (
        "call label",
        "call description",
        "high",
        True,
    )
    assert manual.compliance == ["gdpr", "soc2"]


# --- settings and validation ----------------------------------------------------------------------


def test_settings_rules_apply_before_runtime_rules():
    settings_rules = [
        {
            "table": "test_labels",
            "operation": "insert",
            "label": "from settings",
            "compliance": ["pci"],
        },
        {"table": "*", "operation": "*", "severity": "medium"},
    ]
    with override_settings(BETTER_AUDIT={**AUDIT, "ENRICHMENT": settings_rules}):
        assert registry.resolve("test_labels", "INSERT").label == "from settings"
        audit.enrich("test_labels", "INSERT", label="from code", compliance=["gdpr"])
        resolved = registry.resolve("test_labels", "INSERT")
        assert (resolved.label, resolved.severity) == ("from code", "medium")
        assert list(resolved.compliance) == ["pci", "gdpr"]
        Label.objects.create(name="a")
    assert registry.resolve("test_labels", "INSERT").severity is None
    [row] = logs()
    assert (row.label, row.severity, row.compliance) == ("from code", "medium", ["pci", "gdpr"])


def test_invalid_options_are_refused_with_the_allowed_values():
    with pytest.raises(ValueError, match="low, medium, high, critical"):
        audit.enrich("users", "*", severity="urgent")
    with pytest.raises(InvalidOperation, match="INSERT, UPDATE, DELETE, \\*"):
        audit.enrich("users", "UPSERT", label="x")
    with pytest.raises(TypeError, match="compliance"):
        audit.enrich("users", "*", compliance=[1])


def test_system_check_reports_bad_settings():
    bad = {
        "TABLES": ["test_invoices", "no_such_table"],
        "ON_MISSING_RECORD_ID": "ignore",
        "ENRICHMENT": [{"table": "x", "operation": "*", "redact": ["a"], "include": ["b"]}],
    }
    with override_settings(BETTER_AUDIT=bad):
        ids = sorted(message.id for message in check_configuration())
    assert ids == ["better_audit.E002", "better_audit.E005", "better_audit.W001"]
    assert check_configuration() == []
