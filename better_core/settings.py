"""Declarative app settings: typed keys with defaults, check ids and hints, reloaded on change."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from better_core.durations import parse_duration


class SettingsError(ImproperlyConfigured):
    """A setting has a value the app cannot use (raised when a strict key is read)."""


class Invalid(ValueError):
    """Raised by a parser; ``message`` ends the sentence that starts with the setting's name.

    ``id`` and ``hint`` replace the key's own, for a rule of a key that has a check id of its own.
    """

    def __init__(self, message: str, *, id: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.id = id
        self.hint = hint


@dataclass(frozen=True)
class Problem:
    """One bad key as a system check message: ``key`` is its top-level key ("" for the dict)."""

    key: str
    message: str
    hint: str
    id: str
    warning: bool = False

    def as_check(self) -> checks.CheckMessage:
        level = checks.Warning if self.warning else checks.Error
        return level(self.message, hint=self.hint or None, id=self.id)


@dataclass(frozen=True)
class Moved:
    """A key that used to be a setting of its own, ``name``: still read, with a warning.

    ``warning_id`` reports the old setting; ``conflict_id`` reports both being set (the key wins).
    """

    name: str
    warning_id: str
    conflict_id: str


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Default of a key of a Nested dict that must be given.
REQUIRED: Any = _Required()


# --- keys -----------------------------------------------------------------------------------------


class Setting:
    """One key: its default, how a value is read, the check id of a bad value and a one-line hint.

    ``parse`` turns a configured value into what the code gets, or raises Invalid; subclasses
    implement ``convert`` instead. ``validate`` checks the converted value further and may raise
    Invalid with an id of its own. ``nullable`` lets None through untouched.

    Code that reads a bad value gets the default, and the system check reports the value. A key
    is ``strict`` where the default would quietly weaken a guard or record other actors: reading a
    bad value raises SettingsError (an ImproperlyConfigured), so the middleware that reads it when
    it loads refuses to start.
    """

    def __init__(
        self,
        default: Any,
        *,
        id: str,
        hint: str,
        parse: Callable[[Any], Any] | None = None,
        validate: Callable[[Any], None] | None = None,
        nullable: bool = False,
        strict: bool = False,
        moved_from: Moved | None = None,
    ) -> None:
        self.default = default
        self.id = id
        self.hint = hint
        self._parse = parse
        self._validate = validate
        self.nullable = nullable
        self.strict = strict
        self.moved_from = moved_from

    def convert(self, value: Any) -> Any:
        return value

    def to_python(self, value: Any) -> Any:
        """The value the code gets, or Invalid."""
        if value is None and self.nullable:
            return None
        value = self._parse(value) if self._parse is not None else self.convert(value)
        if self._validate is not None:
            self._validate(value)
        return value

    def evaluate(self, value: Any, label: str, key: str) -> tuple[Any, list[Problem]]:
        """``(value the code gets, problems)``: the default stands in for a bad value."""
        try:
            return self.to_python(value), []
        except Invalid as exc:
            problem = self.problem(label, key, exc.message, exc.id, exc.hint)
        except Exception as exc:  # a user's module imported by the parser failed: report, go on
            problem = self.problem(label, key, f"cannot be read: {type(exc).__name__}: {exc}.")
        return self.fallback(), [problem]

    def fallback(self) -> Any:
        return None if self.default is REQUIRED else self.to_python(self.default)

    def problem(
        self,
        label: str,
        key: str,
        message: str,
        id: str | None = None,
        hint: str | None = None,
    ) -> Problem:
        return Problem(key, f"{label} {message}", hint or self.hint, id or self.id)


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


class Bool(Setting):
    """True or False."""

    def convert(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise Invalid(f"must be True or False, got {_describe(value)}.")
        return value


class _Bounded(Setting):
    kinds: tuple[type[float], ...] = ()
    noun = ""

    def __init__(
        self,
        default: Any,
        *,
        min: float | None = None,
        max: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(default, **options)
        self.min = min
        self.max = max

    def convert(self, value: Any) -> Any:
        # bool is an int subclass, and True is no count.
        if isinstance(value, bool) or not isinstance(value, self.kinds):
            raise Invalid(f"must be {self.noun}, got {_describe(value)}.")
        if self.min is not None and value < self.min:
            raise Invalid(f"must be at least {self.min:g}, got {value!r}.")
        if self.max is not None and value > self.max:
            raise Invalid(f"must be at most {self.max:g}, got {value!r}.")
        return value


class Int(_Bounded):
    """A whole number, optionally within ``min`` and ``max``."""

    kinds = (int,)
    noun = "a whole number"


class Number(_Bounded):
    """An int or a float, optionally within ``min`` and ``max``."""

    kinds = (int, float)
    noun = "a number"


class Str(Setting):
    """A string; ``blank=False`` refuses one of only spaces."""

    def __init__(self, default: Any, *, blank: bool = True, **options: Any) -> None:
        super().__init__(default, **options)
        self.blank = blank

    def convert(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise Invalid(f"must be a string, got {_describe(value)}.")
        if not self.blank and not value.strip():
            raise Invalid("is empty.")
        return value


class Choice(Setting):
    """One of ``choices``, compared with their type (True is not 1)."""

    def __init__(self, default: Any, *, choices: Iterable[Any], **options: Any) -> None:
        super().__init__(default, **options)
        self.choices = tuple(choices)

    def convert(self, value: Any) -> Any:
        if not any(type(value) is type(choice) and value == choice for choice in self.choices):
            allowed = ", ".join(map(repr, self.choices))
            raise Invalid(f"is {value!r}; use one of {allowed}.")
        return value


class Strings(Setting):
    """A list (tuple or set) of strings, kept as given; ``empty=False`` refuses an empty one."""

    def __init__(self, default: Any, *, empty: bool = True, **options: Any) -> None:
        super().__init__(default, **options)
        self.empty = empty

    def convert(self, value: Any) -> Any:
        if not isinstance(value, list | tuple | set | frozenset) or not all(
            isinstance(item, str) for item in value
        ):
            raise Invalid(f"must be a list of strings, got {value!r}.")
        if not self.empty and not value:
            raise Invalid("is empty.")
        return value


def to_seconds(value: Any) -> float:
    """A duration (a number of seconds, or a shorthand such as ``"24h"``) in seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration.")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration.")
    duration = parse_duration(value)
    if not duration.seconds:
        # "5m" is five months in a shorthand, which no timeout or window means.
        raise ValueError(f"{value!r} has no fixed length; write minutes as 'min'.")
    return float(duration.seconds)


class Duration(_Bounded):
    """Seconds, or a shorthand such as ``"30min"``, ``"24h"``, ``"7d"``; read as float seconds."""

    def convert(self, value: Any) -> Any:
        try:
            seconds = to_seconds(value)
        except ValueError as exc:
            raise Invalid(f"is not a duration: {exc}") from None
        if self.min is not None and seconds < self.min:
            raise Invalid(f"is {value!r}, shorter than {self.min:g} seconds.")
        if self.max is not None and seconds > self.max:
            raise Invalid(f"is {value!r}, longer than {self.max:g} seconds.")
        return seconds


def import_callable(value: Any) -> Any:
    """A callable, or the callable a dotted path names; Invalid says what is wrong."""
    if callable(value):
        return value
    if not isinstance(value, str):
        raise Invalid(
            f"must be a dotted path to a callable (or the callable), got {type(value).__name__}."
        )
    try:
        target = import_string(value)
    except ImportError as exc:
        raise Invalid(f"{value!r} cannot be imported: {exc}.") from None
    except Exception as exc:  # the user's module failed while importing
        raise Invalid(f"importing {value!r} raised {type(exc).__name__}: {exc}.") from None
    if not callable(target):
        raise Invalid(f"{value!r} is a {type(target).__name__}, not a callable.")
    return target


class Import(Setting):
    """A callable or its dotted path, imported once; ``many``: a list of them.

    With ``many``, a single entry stands for a list of one unless ``single=False``; the value
    keeps its shape (a list of callables, or the one callable).
    """

    def __init__(
        self, default: Any, *, many: bool = False, single: bool = True, **options: Any
    ) -> None:
        options.setdefault("nullable", default is None)
        super().__init__(default, **options)
        self.many = many
        self.single = single

    def convert(self, value: Any) -> Any:
        if not self.many:
            return import_callable(value)
        if not isinstance(value, list | tuple):
            if not self.single:
                raise Invalid(f"must be a list of dotted paths, got {_describe(value)}.")
            return import_callable(value)
        imported = []
        for position, item in enumerate(value):
            try:
                imported.append(import_callable(item))
            except Invalid as exc:
                raise Invalid(f"item {position}: {exc.message}") from None
        return imported


class Nested(Setting):
    """A dict with keys of its own, each a Setting; unknown keys are reported.

    Read as a dict of the parsed keys (a bad key gets its default), or as what ``build`` makes
    of that dict. ``optional``: None or False turns the whole dict off (read as None) and True
    takes every default. A key whose default is REQUIRED must be given.
    """

    def __init__(
        self,
        keys: Mapping[str, Setting],
        *,
        default: Any = None,
        optional: bool = False,
        build: Callable[[dict[str, Any]], Any] | None = None,
        **options: Any,
    ) -> None:
        if default is None and not optional:
            default = {}
        super().__init__(default, **options)
        self.keys = dict(keys)
        self.optional = optional
        self.build = build

    def to_python(self, value: Any) -> Any:
        parsed, problems = self.evaluate(value, "", "")
        if problems:
            raise Invalid(problems[0].message.strip(), id=problems[0].id, hint=problems[0].hint)
        return parsed

    def evaluate(self, value: Any, label: str, key: str) -> tuple[Any, list[Problem]]:
        if self.optional and (value is None or value is False):
            return None, []
        if self.optional and value is True:
            value = {}
        if not isinstance(value, Mapping):
            kind = "a dict or None" if self.optional else "a dict"
            message = f"must be {kind}, got {type(value).__name__}."
            return self.fallback(), [self.problem(label, key, message)]
        problems = [
            self.problem(
                label,
                key,
                f"has an unknown key {name!r}.",
                hint=_unknown_hint(name, self.keys),
            )
            for name in sorted(set(value) - set(self.keys), key=str)
        ]
        parsed: dict[str, Any] = {}
        for name, setting in self.keys.items():
            if name in value:
                parsed[name], found = setting.evaluate(value[name], f"{label}[{name!r}]", key)
                problems += found
            elif setting.default is REQUIRED:
                parsed[name] = None
                problems.append(setting.problem(label, key, f"has no {name!r}."))
            else:
                parsed[name] = setting.fallback()
        if self.build is None:
            return parsed, problems
        try:
            return self.build(parsed), problems
        except Invalid as exc:
            # Reported once: after a bad key, what the defaults build is no news.
            if not problems:
                problems.append(self.problem(label, key, exc.message, exc.id, exc.hint))
            return self.fallback(), problems

    def fallback(self) -> Any:
        if self.default is None:
            return None
        parsed, _ = self.evaluate(self.default, "", "")
        return parsed


def of_type(*kinds: type) -> Callable[[Any], Any]:
    """A parser accepting instances of ``kinds`` as they are (bool only if listed)."""
    names = " or ".join(kind.__name__ for kind in kinds)

    def parse(value: Any) -> Any:
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise Invalid(f"must be {names}, got {_describe(value)}.")
        return value

    return parse


_ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def role_name(value: str) -> None:
    """Validate a PostgreSQL role name that is used unquoted in messages and hints."""
    if not _ROLE_NAME.match(value) or len(value.encode()) > 63:
        raise Invalid(f"{value!r} is not a PostgreSQL role name.")


def _unknown_hint(name: Any, known: Iterable[str]) -> str:
    known = list(known)
    hint = "Remove or rename it."
    match = difflib.get_close_matches(name, known, n=1) if isinstance(name, str) else []
    if match:
        hint += f" Did you mean: {name!r} -> {match[0]!r}?"
    return hint + f" Known keys: {', '.join(known)}."


# --- an app's settings ----------------------------------------------------------------------------


class AppSettings:
    """``settings.<namespace>``, a dict, read through ``schema`` (key -> Setting).

    Attribute access returns the parsed value of a key, cached until a ``setting_changed`` of the
    namespace, of a moved key's old setting or of a setting in ``reload_on`` (those the parsers
    consult). ``check()`` gives one system check message per bad key: ``id`` when the namespace
    is not a dict, ``unknown_id`` (default ``id``) for each unknown key, and each key's own id.
    """

    def __init__(
        self,
        namespace: str,
        schema: Mapping[str, Setting],
        *,
        id: str,
        unknown_id: str | None = None,
        reload_on: Iterable[str] = (),
    ) -> None:
        self.namespace = namespace
        self.schema = dict(schema)
        self.id = id
        self.unknown_id = unknown_id or id
        moved = [s.moved_from.name for s in self.schema.values() if s.moved_from is not None]
        self._watched = frozenset({namespace, *reload_on, *moved})
        self._cache: dict[str, Any] = {}
        setting_changed.connect(self._on_setting_changed, weak=False)

    def label(self, key: str) -> str:
        return f"{self.namespace}[{key!r}]"

    def _user(self) -> Mapping[str, Any] | None:
        """The configured dict ({} when unset), or None when it is not a dict."""
        value = getattr(django_settings, self.namespace, None)
        if value is None:
            return {}
        return value if isinstance(value, Mapping) else None

    def _source(self, key: str) -> tuple[Any, str]:
        """The value configured for ``key`` (or its default) and the name it goes by."""
        setting = self.schema[key]
        user = self._user() or {}
        if key in user:
            return user[key], self.label(key)
        moved = setting.moved_from
        if moved is not None:
            old = getattr(django_settings, moved.name, None)
            if old is not None:
                return old, moved.name
        return setting.default, self.label(key)

    def raw(self, key: str) -> Any:
        """The configured value of ``key`` (or its default) as given: not parsed, never raising."""
        if key not in self.schema:
            raise AttributeError(f"{self.namespace} has no setting {key!r}")
        return self._source(key)[0]

    def __getattr__(self, key: str) -> Any:
        # Through __dict__: an instance being copied or unpickled has no schema yet.
        schema = self.__dict__.get("schema", {})
        if key.startswith("_") or key not in schema:
            raise AttributeError(f"{self.__dict__.get('namespace')} has no setting {key!r}")
        try:
            return self._cache[key]
        except KeyError:
            pass
        setting = self.schema[key]
        value, problems = setting.evaluate(*self._source(key), key)
        if problems and setting.strict:
            first = problems[0]
            raise SettingsError(f"{first.message} {first.hint} ({first.id})")
        self._cache[key] = value
        return value

    def problems(self) -> list[Problem]:
        """Every bad key, read afresh (nothing cached, nothing raised)."""
        user = self._user()
        problems: list[Problem] = []
        if user is None:
            value = getattr(django_settings, self.namespace)
            problems.append(
                Problem(
                    "",
                    f"settings.{self.namespace} must be a dict, got {type(value).__name__}.",
                    f"Set {self.namespace} = {{...}} with the keys: {', '.join(self.schema)}.",
                    self.id,
                )
            )
            user = {}
        for name in sorted(set(user) - set(self.schema), key=str):
            problems.append(
                Problem(
                    "",
                    f"{self.namespace} has an unknown key {name!r}.",
                    _unknown_hint(name, self.schema),
                    self.unknown_id,
                )
            )
        for key, setting in self.schema.items():
            problems += self._moved_problems(key, setting, user)
            _, found = setting.evaluate(*self._source(key), key)
            problems += found
        return problems

    def _moved_problems(self, key: str, setting: Setting, user: Mapping[str, Any]) -> list[Problem]:
        moved = setting.moved_from
        if moved is None or getattr(django_settings, moved.name, None) is None:
            return []
        label = self.label(key)
        if key in user:
            return [
                Problem(
                    key,
                    f"Both {label} and {moved.name} are set; {moved.name} is ignored.",
                    f"Remove {moved.name}: {label} replaces it.",
                    moved.conflict_id,
                )
            ]
        return [
            Problem(
                key,
                f"{moved.name} is read for now, but it has moved to {label}.",
                f"Move its dict to {label} and remove {moved.name}.",
                moved.warning_id,
                warning=True,
            )
        ]

    def check(self) -> list[checks.CheckMessage]:
        """The problems as system check messages."""
        return [problem.as_check() for problem in self.problems()]

    def reload(self) -> None:
        self._cache.clear()

    def _on_setting_changed(self, *, setting: str, **_: Any) -> None:
        if setting in self._watched:
            self.reload()


# --- dotted paths outside settings ----------------------------------------------------------------


def perform_import(value: Any, label: str) -> Any:
    """Import a dotted path, or each path of a list; callables and None pass through."""
    if value is None or callable(value):
        return value
    if isinstance(value, str):
        try:
            return import_string(value)
        except ImportError as exc:
            raise SettingsError(f"{label}: cannot import {value!r} ({exc}).") from exc
    if isinstance(value, list | tuple):
        return [perform_import(item, label) for item in value]
    return value


def check_callable(value: Any, label: str) -> Callable[..., Any] | None:
    """Resolve ``value`` (a callable or dotted path) or raise SettingsError naming ``label``."""
    resolved = perform_import(value, label)
    if resolved is not None and not callable(resolved):
        raise SettingsError(f"{label} must be a callable or a dotted path to one.")
    return resolved
