"""BETTER_CONSOLE: system checks with ids and hints, start-up refusals, the environment rules."""

from __future__ import annotations

import sys

import pytest
from django.apps import apps
from django.core import checks

from better_console import conf, environment
from better_console.checks import check_settings, check_tables
from better_console.conf import parse_lifetime, parse_rate
from better_console.email_policy import email_allowed, split_emails
from better_console.exceptions import (
    ConsoleAutoApproveInProductionError,
    ConsoleSettingsError,
    ConsoleWeakSecretError,
    ConsoleWildcardEmailError,
)
from better_console.models import MagicLink
from better_console.refusals import refuse_unsafe_start
from better_core.settings import Invalid
from tests.support.console import REMOVE

MAGIC = {"ALLOWED_EMAILS": "admin@example.com"}


def ids(messages) -> list[str]:
    return [message.id for message in messages]


def errors(messages) -> list[str]:
    return [m.id for m in messages if m.level >= checks.ERROR]


def test_the_test_settings_pass():
    assert check_settings() == []


def test_unknown_keys_are_named(configure):
    configure(TOKEN_LIFE="24h")
    [message] = check_settings()
    assert message.id == "better_console.E001"
    assert "TOKEN_LIFE" in message.msg and "TOKEN_LIFETIME" in message.hint


def test_the_settings_must_be_a_dict(settings):
    settings.BETTER_CONSOLE = ["TOKEN_HASH"]
    assert ids(check_settings()) == ["better_console.E001"]


def test_a_missing_token_hash(configure, monkeypatch):
    monkeypatch.delenv("BETTER_CONSOLE_TOKEN_HASH", raising=False)
    configure(TOKEN_HASH=REMOVE)
    [message] = check_settings()
    assert message.id == "better_console.E002" and "better_console init" in message.hint


def test_a_token_hash_in_another_form_is_a_warning(configure):
    configure(TOKEN_HASH="x" * 40)
    [message] = check_settings()
    assert message.id == "better_console.W001" and message.level == checks.WARNING


@pytest.mark.parametrize(
    ("overrides", "check_id"),
    [
        ({"AUTO_APPROVE": "yes"}, "better_console.E004"),
        ({"MAGIC_LINK": "admin@example.com"}, "better_console.E005"),
        ({"MAGIC_LINK": {"ALLOWED_EMAILS": []}}, "better_console.E005"),
        ({"MAGIC_LINK": {**MAGIC, "MAX_ATTEMPTS": 0}}, "better_console.E005"),
        ({"MAGIC_LINK": {**MAGIC, "SEND_CODE": "no.such.sender"}}, "better_console.E005"),
        (
            {"MAGIC_LINK": {**MAGIC, "SEND_CODE": "better_console.conf.SCHEMA"}},
            "better_console.E005",
        ),
        ({"MAGIC_LINK": {**MAGIC, "EXPIRY": 5}}, "better_console.E005"),
        ({"TOKEN_LIFETIME": "30min"}, "better_console.E007"),
        ({"TOKEN_LIFETIME": "8d"}, "better_console.E007"),
        ({"TOKEN_LIFETIME": "1m"}, "better_console.E007"),
        ({"TOKEN_LIFETIME": "soon"}, "better_console.E007"),
        ({"ALLOWED_ORIGINS": ["https://console.usebetter.dev/"]}, None),
        ({"ALLOWED_ORIGINS": ["console.usebetter.dev"]}, "better_console.E008"),
        ({"ALLOWED_ORIGINS": ["https://a.example/path"]}, "better_console.E008"),
        ({"ALLOWED_ACTIONS": []}, "better_console.E009"),
        ({"ALLOWED_ACTIONS": ["read", "delete"]}, "better_console.E009"),
        ({"ON_ERROR": "no.such.handler"}, "better_console.E010"),
        ({"THROTTLE": "lots"}, "better_console.E011"),
        ({"POLL_THROTTLE": "0/min"}, "better_console.E011"),
        ({"CACHE": "nowhere"}, "better_console.E012"),
        ({"NUM_PROXIES": -1}, "better_console.E013"),
    ],
)
def test_bad_values_are_check_errors_with_hints(configure, overrides, check_id):
    configure(**overrides)
    messages = check_settings()
    if check_id is None:
        assert messages == []
        return
    assert ids(messages) == [check_id]
    assert messages[0].hint
    # A request is answered with the problem rather than a crash.
    with pytest.raises(ConsoleSettingsError):
        conf.load()


def test_no_session_method(configure):
    configure(AUTO_APPROVE=False, MAGIC_LINK=None)
    [message] = check_settings()
    assert message.id == "better_console.E015" and "MAGIC_LINK" in message.hint


def test_no_way_to_deliver_codes(configure, monkeypatch):
    installed = apps.is_installed
    monkeypatch.setattr(
        apps, "is_installed", lambda name: name != "better_mail" and installed(name)
    )
    configure(MAGIC_LINK=MAGIC)
    assert ids(check_settings()) == ["better_console.E016"]
    configure(MAGIC_LINK={**MAGIC, "SEND_CODE": "tests.support.console.capture_code"})
    assert check_settings() == []


def test_the_unsafe_settings_are_errors_in_production(configure, production):
    configure(
        TOKEN_HASH="short",
        AUTO_APPROVE=True,
        MAGIC_LINK={"ALLOWED_EMAILS": "*", "SEND_CODE": "tests.support.console.capture_code"},
    )
    assert errors(check_settings()) == [
        "better_console.E003",
        "better_console.E006",
        "better_console.E014",
    ]


def test_the_unsafe_settings_are_accepted_in_tests(configure):
    configure(
        TOKEN_HASH="short",
        AUTO_APPROVE=True,
        MAGIC_LINK={"ALLOWED_EMAILS": "*", "SEND_CODE": "tests.support.console.capture_code"},
    )
    assert errors(check_settings()) == []


def test_a_process_local_throttle_is_a_warning_in_production(configure, production):
    configure(AUTO_APPROVE=False)
    assert ids(check_settings()) == ["better_console.W002"]


# --- start-up -------------------------------------------------------------------------------------


def test_auto_approve_in_production_stops_start_up(configure, production):
    configure(AUTO_APPROVE=True)
    with pytest.raises(ConsoleAutoApproveInProductionError) as caught:
        apps.get_app_config("better_console").ready()
    assert caught.value.code == "AUTO_APPROVE_IN_PRODUCTION"
    assert "DEBUG" in str(caught.value)


def test_a_weak_secret_in_production_stops_start_up(configure, production):
    configure(AUTO_APPROVE=False, TOKEN_HASH="sha256:tooshort")
    with pytest.raises(ConsoleWeakSecretError) as caught:
        refuse_unsafe_start()
    assert caught.value.code == "WEAK_SECRET"
    assert "token generate" in str(caught.value)


def test_the_wildcard_in_production_stops_start_up(configure, production):
    configure(AUTO_APPROVE=False, MAGIC_LINK={"ALLOWED_EMAILS": ["*"]})
    with pytest.raises(ConsoleWildcardEmailError) as caught:
        refuse_unsafe_start()
    assert caught.value.code == "WILDCARD_EMAIL_IN_PRODUCTION"
    configure(
        AUTO_APPROVE=False,
        MAGIC_LINK={"ALLOWED_EMAILS": ["*"], "ALLOW_UNAUTHENTICATED_EMAILS": True},
    )
    refuse_unsafe_start()


def test_a_safe_production_configuration_starts(configure, production):
    configure(AUTO_APPROVE=False)
    refuse_unsafe_start()


def test_development_allows_auto_approve_and_short_secrets(configure, settings, monkeypatch):
    monkeypatch.setattr(environment, "is_test_run", lambda: False)
    settings.DEBUG = True
    configure(AUTO_APPROVE=True, TOKEN_HASH="dev")
    assert environment.environment() == "development"
    refuse_unsafe_start()


def test_check_still_runs_to_report_the_refusals(configure, production, monkeypatch):
    configure(AUTO_APPROVE=True)
    monkeypatch.setattr(sys, "argv", ["manage.py", "check"])
    refuse_unsafe_start()
    monkeypatch.setattr(sys, "argv", ["manage.py", "runserver"])
    with pytest.raises(ConsoleAutoApproveInProductionError):
        refuse_unsafe_start()


def test_a_test_run_is_detected(settings, monkeypatch):
    settings.DEBUG = False
    # pytest-django has set up Django's test environment.
    assert environment.is_test_run() and environment.environment() == "test"
    monkeypatch.delenv("PYTEST_VERSION", raising=False)
    assert environment.is_test_run()


def test_a_test_run_is_detected_before_the_test_environment(monkeypatch):
    from django.test import utils

    monkeypatch.delattr(utils._TestState, "saved_data", raising=False)
    monkeypatch.setenv("PYTEST_VERSION", "9")
    assert environment.is_test_run()
    monkeypatch.delenv("PYTEST_VERSION")
    monkeypatch.setattr(sys, "argv", ["manage.py", "test"])
    assert environment.is_test_run()
    monkeypatch.setattr(sys, "argv", ["gunicorn", "example_project.wsgi"])
    assert not environment.is_test_run()


# --- tables ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_tables_check_passes_when_migrated():
    assert check_tables(databases=["default"]) == []
    # Without a database to look at (plain `check`), it says nothing.
    assert check_tables(databases=None) == []


@pytest.mark.django_db
def test_magic_link_without_its_tables_is_adapter_required(monkeypatch):
    monkeypatch.setattr(MagicLink._meta, "db_table", "better_console_magic_links_absent")
    [message] = check_tables(databases=["default"])
    assert message.id == "better_console.E017" and message.level == checks.ERROR
    assert "ADAPTER_REQUIRED" in message.msg and "migrate" in message.hint


@pytest.mark.django_db
def test_auto_approve_alone_needs_no_tables(configure, monkeypatch):
    configure(MAGIC_LINK=None)
    monkeypatch.setattr(MagicLink._meta, "db_table", "better_console_magic_links_absent")
    assert check_tables(databases=["default"]) == []


# --- parsing --------------------------------------------------------------------------------------


def test_lifetimes():
    assert parse_lifetime("24h") == 86400
    assert parse_lifetime("1h") == 3600
    assert parse_lifetime("7d") == 7 * 86400
    assert parse_lifetime(7200) == 7200
    for bad in ("59min", "169h", "1w2", True, 1.5):
        with pytest.raises(Invalid):
            parse_lifetime(bad)


def test_rates():
    assert parse_rate("20/min") == (20, 60)
    assert parse_rate("20/m") == (20, 60)
    assert parse_rate("5/10s") == (5, 10)
    assert parse_rate("100 / h") == (100, 3600)
    with pytest.raises(Invalid):
        parse_rate("lots")


def test_email_patterns():
    patterns = split_emails(" Admin@Example.com, *@ops.example.com ,,")
    assert patterns == ("admin@example.com", "*@ops.example.com")
    assert email_allowed("ADMIN@example.com", patterns)
    assert email_allowed("x@ops.example.com", patterns)
    assert not email_allowed("x@example.com", patterns)
    # "?" and "[...]" are literal, only "*" is a wildcard.
    assert not email_allowed("a@example.com", ("?@example.com",))
    assert email_allowed("anyone@anywhere.io", ("*",))
