"""manage.py better_audit: purge, export, stats, check, verify, migrate; the RETENTION check."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone

from better_audit import integrity
from better_audit.checks import check_query_and_retention, retention_problems
from better_audit.models import AuditLog
from better_tenant import run_as_system
from tests.audit.test_query import NOW, add

pytestmark = pytest.mark.django_db


def run(*args: str, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    call_command("better_audit", *args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def retention(value):
    return override_settings(BETTER_AUDIT={**settings.BETTER_AUDIT, "RETENTION": value})


@pytest.fixture
def fake_purge(monkeypatch):
    calls = []

    def purge(cutoff, tables, batch_size, dry_run, progress):
        calls.append(
            SimpleNamespace(cutoff=cutoff, tables=tables, batch_size=batch_size, dry_run=dry_run)
        )
        if dry_run:
            return 42
        for done in (2, 4, 5):
            progress(done, 5)
        return 5

    monkeypatch.setattr(integrity, "purge", purge)
    return calls


def remaining() -> list[str]:
    with run_as_system():
        return sorted(AuditLog.objects.values_list("record_id", flat=True))


# --- purge ----------------------------------------------------------------------------------------


def test_purge_without_since_or_retention_says_how_to_configure(fake_purge):
    with retention(None), pytest.raises(CommandError, match="No retention policy configured"):
        run("purge", "--yes")
    assert fake_purge == []


def test_purge_uses_retention_days_and_tables(fake_purge):
    with retention({"days": 90, "tables": ["sessions", "testapp.Invoice"]}):
        out, err = run("purge", "--yes", "--batch-size", "2")
    (call,) = fake_purge
    assert abs(call.cutoff - (timezone.now() - timedelta(days=90))) < timedelta(seconds=5)
    assert call.tables == ["sessions", "test_invoices"]
    assert call.batch_size == 2 and call.dry_run is False
    assert "Deleted 5 audit entries" in out and "tables sessions, test_invoices" in out
    # The progress bar is redrawn on stderr at every batch.
    assert err.count("\rpurging [") == 3 and "5/5 (100%)" in err


def test_purge_since_overrides_the_cutoff_and_warns_that_tables_are_ignored(fake_purge):
    with retention({"days": 90, "tables": ["sessions"]}):
        out, err = run("purge", "--since", "2025-01-01", "--yes")
    (call,) = fake_purge
    assert call.cutoff.date().isoformat() == "2025-01-01"
    assert call.tables is None
    assert "--since purges every table" in err and "sessions" in err
    assert "(every table)" in out


def test_purge_since_accepts_durations(fake_purge):
    with retention(None):
        run("purge", "--since", "4w", "--yes")
    assert abs(fake_purge[0].cutoff - (timezone.now() - timedelta(weeks=4))) < timedelta(seconds=5)


def test_purge_dry_run_only_counts(fake_purge):
    with retention({"days": 30}):
        out, _ = run("purge", "--dry-run")
    assert fake_purge[0].dry_run is True
    assert "42 audit entries older than" in out and "Nothing was deleted" in out


def test_purge_refuses_without_yes_when_not_interactive(fake_purge, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with retention({"days": 30}), pytest.raises(CommandError, match="pass --yes to confirm"):
        run("purge")
    assert fake_purge == []


@pytest.mark.parametrize(("answer", "purged"), [("yes", True), ("n", False)])
def test_purge_asks_for_confirmation_on_a_terminal(fake_purge, monkeypatch, answer, purged):
    stdin = io.StringIO("")
    stdin.isatty = lambda: True
    monkeypatch.setattr("sys.stdin", stdin)
    prompts = []
    monkeypatch.setattr("builtins.input", lambda prompt: prompts.append(prompt) or answer)
    with retention({"days": 30}):
        out, _ = run("purge")
    assert "Type 'yes' to continue" in prompts[0]
    assert bool(fake_purge) is purged
    assert ("cancelled" in out) is not purged


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "soon"], "--since: 'soon' is neither a duration"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--batchsize", "5"], "unrecognized arguments: --batchsize"),
    ],
)
def test_purge_bad_flags_name_the_flag(fake_purge, args, message):
    with retention({"days": 30}), pytest.raises(CommandError, match=message):
        run("purge", "--yes", *args)


def test_purge_reports_an_invalid_retention_setting(fake_purge):
    with retention({"days": -1}), pytest.raises(CommandError, match="'days' must be a positive"):
        run("purge", "--yes")


def test_purge_deletes_old_entries_in_batches_through_integrity():
    for n in range(5):
        add(record_id=f"old{n}", table_name="sessions", timestamp=NOW - timedelta(days=100 + n))
    add(record_id="old-kept-table", table_name="users", timestamp=NOW - timedelta(days=100))
    add(record_id="recent", table_name="sessions", timestamp=NOW - timedelta(days=1))
    with retention({"days": 90, "tables": ["sessions"]}):
        out, _ = run("purge", "--dry-run")
        assert "5 audit entries" in out
        assert len(remaining()) == 7
        out, err = run("purge", "--yes", "--batch-size", "2")
    assert "Deleted 5 audit entries" in out
    assert err.count("\rpurging [") == 3
    assert remaining() == ["old-kept-table", "recent"]
    with retention(None):
        run("purge", "--since", "30d", "--yes")
    assert remaining() == ["recent"]


# --- export ---------------------------------------------------------------------------------------


@pytest.fixture
def exportable():
    add(record_id="1", table_name="users", actor_id="user-42", compliance=["gdpr", "soc2"])
    add(record_id="2", table_name="users", actor_id="user-42", severity="critical")
    add(record_id="3", table_name="orders", actor_id="user-7", timestamp=NOW - timedelta(days=9))


def exported(*args: str) -> tuple[list[dict], str]:
    out, err = run("export", "--json-style", "ndjson", *args)
    lines = [json.loads(line) for line in out.splitlines()]
    assert "_chain_head" in lines[-1]
    return lines[:-1], err


def test_export_filters(exportable):
    assert {e["record_id"] for e in exported()[0]} == {"1", "2", "3"}
    assert {e["record_id"] for e in exported("--since", "7d")[0]} == {"1", "2"}
    assert {e["record_id"] for e in exported("--table", "orders")[0]} == {"3"}
    assert {e["record_id"] for e in exported("--actor", "user-42")[0]} == {"1", "2"}
    assert {e["record_id"] for e in exported("--severity", "high,critical")[0]} == {"2"}
    assert {e["record_id"] for e in exported("--compliance", "gdpr,soc2")[0]} == {"1"}
    day = (NOW - timedelta(days=9)).date().isoformat()
    assert {e["record_id"] for e in exported("--from", day, "--to", day)[0]} == {"3"}


def test_export_writes_csv_to_a_file_and_prints_the_chain_head(exportable, tmp_path):
    target = tmp_path / "audit.csv"
    out, err = run("export", "--format", "csv", "-o", str(target))
    assert out == ""
    assert len(target.read_text().splitlines()) == 4
    assert "Exported 3 audit entries; chain head" in err
    head = json.loads(err.split("chain head ", 1)[1])
    assert head["algorithm"] == "sha256"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "7d", "--from", "2025-01-01"], "--since cannot be combined with --from/--to"),
        (["--severity", "urgent"], "--severity: severity must be one of low, medium"),
        (["--format", "xml"], "--format must be json or csv"),
        (["--json-style", "lines"], "--json-style must be array or ndjson"),
        (["--since", "later"], "--since: 'later' is neither"),
        (["--from", "2025-02-01", "--to", "2025-01-01"], "--from/--to: between"),
        (["--actors", "x"], "unrecognized arguments: --actors"),
    ],
)
def test_export_bad_flags_name_the_flag(args, message):
    with pytest.raises(CommandError, match=message):
        run("export", *args)


# --- stats, check, verify, migrate ----------------------------------------------------------------


def test_stats_text_and_json(exportable):
    out, _ = run("stats")
    assert "entries:        3" in out and "user-42" in out
    report = json.loads(run("stats", "--json", "--days", "0")[0])
    assert report["total_logs"] == 3 and report["days"] is None
    with pytest.raises(CommandError, match="--days: days must be from 1 to 365"):
        run("stats", "--days", "400")


def test_check_passes_on_a_migrated_database():
    out, _ = run("check")
    assert "✓ table audit_logs exists" in out
    assert "✓ all 19 columns present" in out
    assert "✓ index audit_logs_actor_idx" in out
    assert "may SELECT on audit_logs" in out and "cannot insert entries into audit_logs" in out
    assert "✓ test_invoices: capture triggers installed" in out
    assert "✓ better_audit migrations applied" in out
    assert "✗" not in out and "checks passed" in out


def test_check_exits_1_when_a_check_fails(monkeypatch):
    monkeypatch.setattr(
        integrity, "check_append_only", lambda: [(False, "better_app may DELETE from audit_logs")]
    )
    with pytest.raises(SystemExit) as exit_info:
        run("check")
    assert exit_info.value.code == 1


def test_verify_reports_success_and_the_first_broken_link(monkeypatch):
    add(record_id="1")
    out, _ = run("verify")
    assert out.startswith("✓") and "verified" in out
    broken = SimpleNamespace(
        ok=False,
        checked=10,
        first_broken={"chain": None, "seq": 4, "problem": "modified"},
        message="Chain global is broken at seq 4: modified.",
    )
    monkeypatch.setattr(integrity, "verify", lambda tenant_id=None, progress=None: broken)
    stdout = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("better_audit", "verify", stdout=stdout, stderr=io.StringIO())
    assert exit_info.value.code == 1
    assert "✗ Chain global is broken at seq 4" in stdout.getvalue()
    assert "seq: 4" in stdout.getvalue() and "problem: modified" in stdout.getvalue()


def test_migrate_dry_run_when_everything_is_applied():
    out, _ = run("migrate", "--dry-run")
    assert out.strip() == "No unapplied better_audit migrations."


def test_unknown_database_names_the_flag():
    with pytest.raises(CommandError, match="--database: no database alias 'nope'"):
        run("stats", "--database", "nope")


# --- system check of RETENTION and MAX_QUERY_LIMIT ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, None),
        ({"days": 365}, None),
        ({"days": 90, "tables": ["sessions"]}, None),
        (365, "must be a dict or None"),
        ({}, "has no 'days'"),
        ({"days": 0}, "'days' must be a positive whole number"),
        ({"days": True}, "'days' must be a positive whole number"),
        ({"days": 30, "tables": "sessions"}, "'tables' must be a non-empty list"),
        ({"days": 30, "tables": []}, "'tables' must be a non-empty list"),
        ({"days": 30, "table": ["x"]}, "unknown keys 'table'"),
    ],
)
def test_retention_problems(value, problem):
    problems = retention_problems(value)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems)


def test_system_check_ids():
    with retention({"days": "a year"}):
        assert [m.id for m in check_query_and_retention()] == ["better_audit.E010"]
    audit_settings = {**settings.BETTER_AUDIT, "MAX_QUERY_LIMIT": 0}
    with override_settings(BETTER_AUDIT=audit_settings):
        assert [m.id for m in check_query_and_retention()] == ["better_audit.E011"]
    assert check_query_and_retention() == []


# --- every flag of every subcommand ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["stats", "--days", "-1"], "--days"),
        (["stats", "--days", "366"], "--days"),
        (["stats", "--days", "week"], "--days"),
        (["stats", "--top", "0"], "--top"),
        (["stats", "--top", "-5"], "--top"),
        (["purge", "--yes", "--since", "soon"], "--since"),
        (["purge", "--yes", "--since", "2025-13-45"], "--since"),
        (["purge", "--yes", "--batch-size", "-1"], "--batch-size"),
        (["purge", "--yes", "--batch-size", "many"], "--batch-size"),
        (["export", "--from", "yesterday"], "--from"),
        (["export", "--to", "2025-02-30"], "--to"),
        (["export", "--severity", ""], "--severity"),
        (["export", "--compliance", " , "], "--compliance"),
        (["export", "--table", ""], "--table"),
        (["export", "--actor", ""], "--actor"),
        (["export", "--format", "CSV;DROP"], "--format"),
        (["export", "--output", "/nonexistent-dir/out.json"], "--output"),
        (["verify", "--tenant", "not-a-uuid"], "--tenant"),
        (["verify", "--tenant", ""], "--tenant"),
        (["verify", "--tenants", "x"], "--tenants"),
        (["migrate", "--dry-run", "now"], "now"),
        (["check", "--fix"], "--fix"),
    ],
)
def test_every_bad_flag_is_a_command_error_naming_it(fake_purge, args, flag):
    with retention({"days": 30}), pytest.raises(CommandError) as raised:
        run(*args)
    assert flag in str(raised.value)


def test_export_csv_neutralizes_formulas_unless_asked_to_keep_them(tmp_path):
    add(record_id="=cmd|' /C calc'!A0", actor_id="@evil")
    path = tmp_path / "out.csv"
    run("export", "--format", "csv", "-o", str(path))
    text = path.read_text()
    assert "'=cmd|' /C calc'!A0" in text and "'@evil" in text
    run("export", "--format", "csv", "--keep-formulas", "-o", str(path))
    rows = list(csv.DictReader(io.StringIO(path.read_text(), newline="")))
    assert rows[0]["record_id"] == "=cmd|' /C calc'!A0" and rows[0]["actor_id"] == "@evil"
