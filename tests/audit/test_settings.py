"""BETTER_AUDIT: unknown keys, one check message per bad key, INTEGRITY and its old setting."""

import pytest
from django.conf import settings as django_settings
from django.core import checks
from django.test import override_settings

from better_audit import integrity
from better_audit.checks import check_configuration, check_query_and_retention
from better_audit.conf import audit_settings


def audit(**values):
    return override_settings(BETTER_AUDIT={**django_settings.BETTER_AUDIT, **values})


def ids(messages):
    return [message.id for message in messages]


def test_the_test_settings_pass():
    assert check_configuration() == []
    assert check_query_and_retention() == []


def test_an_unknown_key_is_an_error_with_a_suggestion():
    with audit(TABELS=["test_invoices"]):
        (message,) = check_configuration()
    assert message.id == "better_audit.E013"
    assert "'TABELS'" in message.msg and "'TABELS' -> 'TABLES'" in message.hint


def test_a_setting_that_is_not_a_dict_is_an_error():
    with override_settings(BETTER_AUDIT=["TABLES"]):
        assert "better_audit.E013" in ids(check_configuration())


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"ASYNC_WRITE": "yes", "CELERY": 1}, ["better_audit.E017", "better_audit.E017"]),
        ({"ON_ERROR": "no.such.module.handler"}, ["better_audit.E016"]),
        ({"BEFORE_LOG": ["better_audit.conf.SCHEMA"]}, ["better_audit.E016"]),
        ({"ON_MISSING_RECORD_ID": "ignore"}, ["better_audit.E002"]),
        ({"BATCH_SIZE": 0, "MAX_BEFORE_STATE_ROWS": -1}, ["better_audit.E003"] * 2),
        ({"SKIP_BEFORE_STATE": "test_events"}, ["better_audit.E001"]),
        ({"ENRICHMENT": {"table": "x"}}, ["better_audit.E005"]),
    ],
)
def test_each_bad_key_is_one_message_with_its_id(values, expected):
    with audit(**values):
        assert ids(check_configuration()) == expected


def test_a_bad_value_reads_as_the_default():
    with audit(FAIL_CLOSED="no", CORRELATION_HEADER=7):
        assert audit_settings.FAIL_CLOSED is False
        assert audit_settings.CORRELATION_HEADER == "X-Request-ID"


# --- INTEGRITY ------------------------------------------------------------------------------------


def test_integrity_defaults():
    assert audit_settings.INTEGRITY == {
        "ADMIN_ROLE": "better_audit_admin",
        "LATE_TOLERANCE": 3600,
        "BATCH_SIZE": 1000,
    }
    assert integrity.admin_role() == "better_audit_admin"


def test_integrity_is_read_from_better_audit():
    with audit(INTEGRITY={"ADMIN_ROLE": "audit_owner", "LATE_TOLERANCE": None}):
        assert integrity.admin_role() == "audit_owner"
        assert audit_settings.INTEGRITY["LATE_TOLERANCE"] is None
        assert audit_settings.INTEGRITY["BATCH_SIZE"] == 1000
        assert check_configuration() == []


@pytest.mark.parametrize(
    "value",
    [
        {"ADMIN_ROLE": "audit admin; DROP"},
        {"LATE_TOLERANCE": "1h"},
        {"BATCH_SIZE": 0},
        {"BATCH_SIZ": 10},
        "better_audit_admin",
    ],
)
def test_a_bad_integrity_value_is_an_error(value):
    with audit(INTEGRITY=value):
        (message,) = check_configuration()
        assert audit_settings.INTEGRITY["BATCH_SIZE"] == 1000
    assert message.id == "better_audit.E015"
    assert message.msg.startswith("BETTER_AUDIT['INTEGRITY']")


def test_the_old_setting_is_still_read_with_a_warning(settings):
    settings.BETTER_AUDIT_INTEGRITY = {"ADMIN_ROLE": "audit_owner", "BATCH_SIZE": 10}
    assert integrity.admin_role() == "audit_owner"
    assert audit_settings.INTEGRITY["BATCH_SIZE"] == 10
    (message,) = check_configuration()
    assert message.id == "better_audit.W003" and message.level == checks.WARNING
    assert "BETTER_AUDIT_INTEGRITY" in message.msg
    assert "BETTER_AUDIT['INTEGRITY']" in message.hint


def test_the_old_setting_is_checked_under_its_own_name(settings):
    settings.BETTER_AUDIT_INTEGRITY = {"BATCH_SIZE": "all"}
    messages = check_configuration()
    assert ids(messages) == ["better_audit.W003", "better_audit.E015"]
    assert messages[1].msg.startswith("BETTER_AUDIT_INTEGRITY['BATCH_SIZE']")


def test_both_settings_are_an_error_and_better_audit_wins(settings):
    settings.BETTER_AUDIT_INTEGRITY = {"ADMIN_ROLE": "audit_old"}
    settings.BETTER_AUDIT = {**settings.BETTER_AUDIT, "INTEGRITY": {"ADMIN_ROLE": "audit_new"}}
    assert integrity.admin_role() == "audit_new"
    (message,) = check_configuration()
    assert message.id == "better_audit.E014" and message.level == checks.ERROR
    assert "BETTER_AUDIT_INTEGRITY" in message.msg
