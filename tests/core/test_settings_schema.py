"""better_core.settings: declared keys, typed reads, one check message per bad key, reloads."""

import os.path

import pytest
from django.core import checks
from django.test import override_settings

from better_core import settings as core_settings
from better_core.settings import (
    REQUIRED,
    AppSettings,
    Bool,
    Choice,
    Duration,
    Import,
    Int,
    Invalid,
    Moved,
    Nested,
    Number,
    Setting,
    SettingsError,
    Str,
    Strings,
)


def _even(value):
    if value % 2:
        raise Invalid(f"is {value}, an odd number.", id="testing.E009", hint="Use an even one.")


SCHEMA = {
    "LIMIT": Int(10, min=1, max=100, id="testing.E002", hint="A page size from 1 to 100."),
    "PAIRS": Int(2, validate=_even, id="testing.E002", hint="An even count."),
    "ENABLED": Bool(True, id="testing.E003", hint="True or False."),
    "RATIO": Number(0.5, min=0, max=1, id="testing.E003", hint="From 0 to 1."),
    "NAME": Str("x", blank=False, nullable=True, id="testing.E003", hint="A name, or None."),
    "MODE": Choice("on", choices=("on", "off", True), id="testing.E004", hint="'on' or 'off'."),
    "WINDOW": Duration("24h", nullable=True, id="testing.E005", hint="e.g. '24h'."),
    "NAMES": Strings([], id="testing.E006", hint="A list of names."),
    "HOOK": Import(None, id="testing.E007", hint="A dotted path to a callable."),
    "HOOKS": Import([], many=True, id="testing.E007", hint="Dotted paths of callables."),
    "GUARD": Import(None, strict=True, id="testing.E008", hint="A dotted path to a callable."),
    "ANY": Setting(object, id="testing.E003", hint="Anything."),
    "LINK": Nested(
        {
            "SIZE": Int(5, min=1, id="testing.E010", hint="At least 1."),
            "DAYS": Int(REQUIRED, min=1, id="testing.E011", hint="The number of days."),
        },
        optional=True,
        id="testing.E012",
        hint="None, or a dict with SIZE and DAYS.",
    ),
    "GROUP": Nested(
        {"ROLE": Str("admin", id="testing.E013", hint="A role name.")},
        id="testing.E013",
        hint="A dict with ROLE.",
        moved_from=Moved("TESTING_GROUP", warning_id="testing.W001", conflict_id="testing.E014"),
    ),
}
app_settings = AppSettings("BETTER_TESTING", SCHEMA, id="testing.E001")


def ids(messages):
    return [message.id for message in messages]


def configured(**values):
    return override_settings(BETTER_TESTING=values)


# --- reading --------------------------------------------------------------------------------------


def test_unset_keys_read_as_their_parsed_defaults():
    assert app_settings.LIMIT == 10
    assert app_settings.ENABLED is True
    assert app_settings.WINDOW == 86400.0
    assert app_settings.HOOK is None and app_settings.HOOKS == []
    assert app_settings.ANY is object
    assert app_settings.LINK is None
    assert app_settings.GROUP == {"ROLE": "admin"}
    assert app_settings.check() == []
    with pytest.raises(AttributeError, match="no setting"):
        app_settings.MISSING  # noqa: B018


def test_values_are_parsed_and_raw_gives_them_as_written():
    with configured(WINDOW="5min", HOOK="os.path.join", LINK={"DAYS": 3}, NAMES=("a",)):
        assert app_settings.WINDOW == 300.0
        assert app_settings.raw("WINDOW") == "5min"
        assert app_settings.HOOK is os.path.join
        assert app_settings.LINK == {"SIZE": 5, "DAYS": 3}
        assert app_settings.NAMES == ("a",)
        assert app_settings.check() == []


def test_a_bad_value_reads_as_the_default_and_the_check_reports_it():
    with configured(LIMIT=0, ENABLED="yes", HOOK="no.such.module.hook"):
        assert app_settings.LIMIT == 10
        assert app_settings.ENABLED is True
        assert app_settings.HOOK is None
        messages = app_settings.check()
    assert ids(messages) == ["testing.E002", "testing.E003", "testing.E007"]
    assert all(isinstance(message, checks.Error) for message in messages)
    limit, enabled, hook = messages
    assert limit.msg == "BETTER_TESTING['LIMIT'] must be at least 1, got 0."
    assert limit.hint == "A page size from 1 to 100."
    assert enabled.msg == "BETTER_TESTING['ENABLED'] must be True or False, got str 'yes'."
    assert "'no.such.module.hook' cannot be imported" in hook.msg


def test_a_strict_key_raises_when_a_bad_value_is_read():
    with configured(GUARD="os.path.sep"):
        with pytest.raises(SettingsError, match=r"BETTER_TESTING\['GUARD'\].*not a callable"):
            app_settings.GUARD  # noqa: B018
        assert ids(app_settings.check()) == ["testing.E008"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"LIMIT": 101}, ["testing.E002"]),
        ({"LIMIT": True}, ["testing.E002"]),
        ({"PAIRS": 3}, ["testing.E009"]),
        ({"PAIRS": "4"}, ["testing.E002"]),
        ({"RATIO": 2}, ["testing.E003"]),
        ({"NAME": "  "}, ["testing.E003"]),
        ({"MODE": 1}, ["testing.E004"]),
        ({"WINDOW": "soon"}, ["testing.E005"]),
        ({"WINDOW": "5m"}, ["testing.E005"]),
        ({"NAMES": "a,b"}, ["testing.E006"]),
        ({"HOOKS": ["os.path.join", 3]}, ["testing.E007"]),
        ({"LINK": "on"}, ["testing.E012"]),
        ({"LINK": {"SIZE": 0, "DAYS": 1}}, ["testing.E010"]),
        ({"LINK": {}}, ["testing.E011"]),
        ({"LINK": {"DAYS": 1, "SIZ": 2}}, ["testing.E012"]),
        ({"NAME": None, "MODE": True, "WINDOW": None, "LINK": False}, []),
    ],
)
def test_one_message_per_bad_key_with_the_id_declared_next_to_it(values, expected):
    with configured(**values):
        assert ids(app_settings.check()) == expected


def test_a_rule_with_an_id_of_its_own_gives_its_hint():
    with configured(PAIRS=3):
        (message,) = app_settings.check()
    assert message.msg == "BETTER_TESTING['PAIRS'] is 3, an odd number."
    assert message.hint == "Use an even one."


def test_nested_keys_are_named_with_their_path():
    with configured(LINK={"SIZE": 0, "DAYS": "x", "SIZ": 2}):
        messages = app_settings.check()
        # Each bad key reads as its default; a required one has none.
        assert app_settings.LINK == {"SIZE": 5, "DAYS": None}
    assert [m.msg for m in messages] == [
        "BETTER_TESTING['LINK'] has an unknown key 'SIZ'.",
        "BETTER_TESTING['LINK']['SIZE'] must be at least 1, got 0.",
        "BETTER_TESTING['LINK']['DAYS'] must be a whole number, got str 'x'.",
    ]
    assert "Did you mean: 'SIZ' -> 'SIZE'?" in messages[0].hint


def test_unknown_keys_are_errors_with_a_suggestion():
    with configured(LIMT=5, OTHER=1):
        messages = app_settings.check()
    assert ids(messages) == ["testing.E001", "testing.E001"]
    limt, other = messages
    assert limt.msg == "BETTER_TESTING has an unknown key 'LIMT'."
    assert "Did you mean: 'LIMT' -> 'LIMIT'?" in limt.hint
    assert "Known keys: LIMIT, PAIRS," in other.hint and "Did you mean" not in other.hint


def test_unknown_keys_may_have_an_id_of_their_own():
    schema = AppSettings("BETTER_TESTING", SCHEMA, id="testing.E001", unknown_id="testing.E015")
    with configured(LIMT=5):
        assert ids(schema.check()) == ["testing.E015"]


def test_a_namespace_that_is_not_a_dict_is_one_error_and_reads_as_the_defaults():
    with override_settings(BETTER_TESTING=["LIMIT"]):
        (message,) = app_settings.check()
        assert app_settings.LIMIT == 10
        assert app_settings.raw("LIMIT") == 10
    assert message.id == "testing.E001"
    assert message.msg == "settings.BETTER_TESTING must be a dict, got list."


# --- reloading and importing ----------------------------------------------------------------------


def test_values_reload_when_the_setting_changes():
    assert app_settings.LIMIT == 10
    with configured(LIMIT=5):
        assert app_settings.LIMIT == 5
        with configured(LIMIT=7):
            assert app_settings.LIMIT == 7
        assert app_settings.LIMIT == 5
    assert app_settings.LIMIT == 10


def test_reload_on_names_the_settings_the_parsers_consult(settings):
    def parse(value):
        from django.conf import settings as django_settings

        return f"{value}:{django_settings.TESTING_SUFFIX}"

    watching = AppSettings(
        "BETTER_TESTING",
        {"LABEL": Setting("a", parse=parse, id="testing.E003", hint="A label.")},
        id="testing.E001",
        reload_on=("TESTING_SUFFIX",),
    )
    settings.TESTING_SUFFIX = "1"
    assert watching.LABEL == "a:1"
    settings.TESTING_SUFFIX = "2"
    assert watching.LABEL == "a:2"


def test_a_dotted_path_is_imported_once(monkeypatch):
    calls = []

    def counting(path):
        calls.append(path)
        return os.path.join

    monkeypatch.setattr(core_settings, "import_string", counting)
    with configured(HOOK="os.path.join", HOOKS=["os.path.join", os.path.split]):
        assert app_settings.HOOK is os.path.join
        assert app_settings.HOOK is os.path.join
        hooks = app_settings.HOOKS
        assert hooks == [os.path.join, os.path.split]
        assert app_settings.HOOKS is hooks
    assert calls == ["os.path.join", "os.path.join"]


# --- a key that moved -----------------------------------------------------------------------------


def test_a_moved_key_still_reads_its_old_setting_with_a_warning(settings):
    settings.TESTING_GROUP = {"ROLE": "auditor"}
    assert app_settings.GROUP == {"ROLE": "auditor"}
    (message,) = app_settings.check()
    assert message.id == "testing.W001" and isinstance(message, checks.Warning)
    assert "TESTING_GROUP" in message.msg and "BETTER_TESTING['GROUP']" in message.hint


def test_the_old_setting_is_checked_under_its_own_name(settings):
    settings.TESTING_GROUP = {"ROLE": 1}
    assert app_settings.GROUP == {"ROLE": "admin"}
    assert [m.msg for m in app_settings.check()][1:] == [
        "TESTING_GROUP['ROLE'] must be a string, got int 1."
    ]


def test_a_moved_key_set_in_both_places_is_an_error_and_the_new_one_wins(settings):
    settings.TESTING_GROUP = {"ROLE": "auditor"}
    settings.BETTER_TESTING = {"GROUP": {"ROLE": "owner"}}
    assert app_settings.GROUP == {"ROLE": "owner"}
    (message,) = app_settings.check()
    assert message.id == "testing.E014" and isinstance(message, checks.Error)
