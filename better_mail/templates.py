"""Mail templates: classes declaring typed variables, and the registry of them by name."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import re
import threading
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from better_mail.compiler import RenderedMail, forget, is_precompiled, render_template

# better_mail.apps and better_mail.checks import these two from this module.
from better_mail.exceptions import (
    TemplateDefinitionError,
    TemplateNotFound,
    TemplateVariableError,
)
from better_mail.lint import lint
from better_mail.variables import accepts_none, describe_mismatch, describe_type, mismatch

# is_precompiled and lint are documented as better_mail.templates.is_precompiled / .lint.
__all__ = [
    "MailTemplate",
    "Variable",
    "autodiscover",
    "get_template",
    "is_precompiled",
    "lint",
    "registry",
    "render",
]

# Class attributes that configure a template; they cannot be variable names.
RESERVED_NAMES = frozenset(
    {
        "name",
        "subject",
        "mjml",
        "mjml_file",
        "text",
        "text_file",
        "preview_data",
        "abstract",
        "sensitive",
    }
)

_MISSING: Any = object()
# The class attribute caching ``variables()``.
_VARIABLES_CACHE = "_variables_cache"


@dataclasses.dataclass(frozen=True)
class Variable:
    """One declared variable of a template: its name, type annotation and default."""

    name: str
    annotation: Any
    default: Any = _MISSING

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    @property
    def type_name(self) -> str:
        return describe_type(self.annotation)

    def get_default(self) -> Any:
        # Mutable defaults (lists, dicts) are copied so one render cannot change the next.
        return copy.deepcopy(self.default)


class TemplateRegistry:
    """Templates by name; a template class registers itself when it is defined."""

    def __init__(self) -> None:
        self._templates: dict[str, type[MailTemplate]] = {}
        self._lock = threading.Lock()

    def register(self, template: type[MailTemplate]) -> None:
        with self._lock:
            current = self._templates.get(template.name)
            if current is not None and _qualified(current) != _qualified(template):
                raise TemplateDefinitionError(
                    f"Two mail templates are named {template.name!r}: {_qualified(current)} and "
                    f"{_qualified(template)}. Give one of them another name = '...'."
                )
            # Same class defined again (module reloaded): the new definition wins.
            self._templates[template.name] = template
            forget(current)

    def unregister(self, name: str) -> None:
        with self._lock:
            template = self._templates.pop(name, None)
            forget(template)

    def get(self, name: str) -> type[MailTemplate]:
        try:
            return self._templates[name]
        except KeyError:
            known = ", ".join(sorted(self._templates)) or "none"
            raise TemplateNotFound(
                f"No mail template is named {name!r} (registered: {known}). Define a "
                "MailTemplate subclass in <app>/mail.py of an installed app, or import its module."
            ) from None

    def names(self) -> list[str]:
        return sorted(self._templates)

    def all(self) -> list[type[MailTemplate]]:
        return [self._templates[name] for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._templates

    def __iter__(self) -> Iterator[type[MailTemplate]]:
        return iter(self.all())

    def __len__(self) -> int:
        return len(self._templates)


registry = TemplateRegistry()


def get_template(name: str | type[MailTemplate]) -> type[MailTemplate]:
    """The template class registered as ``name`` (a class is returned as is)."""
    if isinstance(name, type) and issubclass(name, MailTemplate):
        return name
    return registry.get(name)


def autodiscover() -> None:
    """Import ``<app>.mail`` of every installed app so that its templates register."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("mail")


class MailTemplate:
    """Base class of mail templates.

    Subclasses declare variables as annotated class attributes (a value is the default), a Jinja2
    ``subject``, an MJML body as ``mjml = "..."`` or ``mjml_file = "path"`` (relative to the
    ``mail/`` folder of the app defining the class), optionally a Jinja2 ``text`` (or
    ``text_file``) for the plain-text part, and ``preview_data`` (a dict or a classmethod
    returning one). ``name`` defaults to the snake_case class name; ``abstract = True`` makes a
    base class that is not registered. ``sensitive = True`` marks mails that carry a credential
    (a sign-in code, a reset link): their bodies are never stored, whatever ``STORE_BODIES``.
    """

    name: ClassVar[str] = ""
    subject: ClassVar[str] = ""
    mjml: ClassVar[str | None] = None
    mjml_file: ClassVar[str | None] = None
    text: ClassVar[str | None] = None
    text_file: ClassVar[str | None] = None
    preview_data: ClassVar[Any] = None
    abstract: ClassVar[bool] = True
    sensitive: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.abstract = bool(cls.__dict__.get("abstract", False))
        for attr, annotation in inspect.get_annotations(cls).items():
            if attr in RESERVED_NAMES and not _is_classvar(annotation):
                raise TemplateDefinitionError(
                    f"{_qualified(cls)}: {attr!r} configures the template and cannot be a "
                    f"variable. Rename the variable (e.g. 'user_{attr}')."
                )
        if cls.abstract:
            return
        cls.name = cls.__dict__.get("name") or _snake_case(cls.__name__)
        if not cls.subject:
            raise TemplateDefinitionError(f"Mail template {cls.name!r} has no subject = '...'.")
        if not cls.mjml and not cls.mjml_file:
            raise TemplateDefinitionError(
                f"Mail template {cls.name!r} has no body: set mjml = '''<mjml>...</mjml>''' or "
                "mjml_file = 'path relative to the app's mail/ folder'."
            )
        registry.register(cls)

    # Variables -------------------------------------------------------------------------------

    @classmethod
    def variables(cls) -> dict[str, Variable]:
        """The declared variables, in declaration order (base classes first)."""
        cached = cls.__dict__.get(_VARIABLES_CACHE)
        if cached is not None:
            return cached
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except Exception as exc:
            raise TemplateDefinitionError(
                f"Mail template {cls.name or _qualified(cls)!r}: cannot resolve the type "
                f"annotations of its variables ({exc}). Import the types used in the module "
                "that defines the template."
            ) from exc
        result: dict[str, Variable] = {}
        for klass in reversed(cls.__mro__):
            for attr in inspect.get_annotations(klass):
                annotation = hints.get(attr)
                if attr.startswith("_") or attr in RESERVED_NAMES or _is_classvar(annotation):
                    continue
                default = cls.__dict__.get(attr, _MISSING)
                if default is _MISSING:
                    default = getattr(cls, attr, _MISSING)
                if default is _MISSING and accepts_none(annotation):
                    default = None
                result[attr] = Variable(attr, annotation, default)
        # Set on each class itself, so that a subclass never reads its base's variables.
        setattr(cls, _VARIABLES_CACHE, result)
        return result

    @classmethod
    def validate(cls, context: Mapping[str, Any] | None = None, /, **values: Any) -> dict[str, Any]:
        """The complete, checked variables for a render; raises ``TemplateVariableError``."""
        given = {**(context or {}), **values}
        declared = cls.variables()
        unknown = sorted(set(given) - set(declared))
        if unknown:
            names = ", ".join(declared) or "none"
            raise TemplateVariableError(
                f"Mail template {cls.name!r}: unknown variable {unknown[0]!r} (declared: {names}). "
                "Declare it on the template class with a type annotation, or do not pass it.",
                template=cls.name,
                variable=unknown[0],
            )
        result: dict[str, Any] = {}
        for variable in declared.values():
            if variable.name in given:
                value = given[variable.name]
            elif variable.required:
                raise TemplateVariableError(
                    f"Mail template {cls.name!r}: missing variable {variable.name!r} "
                    f"(expected {variable.type_name}).",
                    template=cls.name,
                    variable=variable.name,
                    expected=variable.type_name,
                )
            else:
                value = variable.get_default()
            problem = mismatch(value, variable.annotation, variable.name)
            if problem is not None:
                path, expected, _ = problem
                raise TemplateVariableError(
                    f"Mail template {cls.name!r}: "
                    f"{describe_mismatch(value, problem, variable.name)}.",
                    template=cls.name,
                    variable=path,
                    expected=describe_type(expected),
                )
            result[variable.name] = value
        return result

    @classmethod
    def get_preview_data(cls) -> dict[str, Any]:
        """The sample variables of ``preview_data`` (dict or callable), defaults filled in."""
        data = cls.preview_data
        if callable(data):
            data = data()
        return cls.validate(dict(data or {}))

    # Sources ---------------------------------------------------------------------------------

    @classmethod
    def mjml_source(cls) -> str:
        """The MJML body source (Jinja2 markup not yet rendered)."""
        if cls.mjml:
            return cls.mjml
        return _read_file(cls, cls.mjml_file or "")

    @classmethod
    def text_source(cls) -> str | None:
        """The plain-text Jinja2 source, or None when text is generated from the HTML."""
        if cls.text:
            return cls.text
        if cls.text_file:
            return _read_file(cls, cls.text_file)
        return None

    # Rendering -------------------------------------------------------------------------------

    @classmethod
    def render(cls, context: Mapping[str, Any] | None = None, /, **values: Any) -> RenderedMail:
        """Validate the variables and render the subject, HTML and text."""
        return render_template(cls, cls.validate(context, **values))

    @classmethod
    def render_preview(cls) -> RenderedMail:
        """Render with ``preview_data``."""
        return render_template(cls, cls.get_preview_data())

    @classmethod
    def lint(cls) -> list[str]:
        """Problems of this template (see ``better_mail.lint.lint``)."""
        return lint(cls)


def render(
    template: str | type[MailTemplate], context: Mapping[str, Any] | None = None, /, **values: Any
) -> RenderedMail:
    """Render a template (class or registered name) with its variables."""
    return get_template(template).render(context, **values)


def _is_classvar(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return re.match(r"^(typing\.|t\.)?ClassVar\b", annotation.strip()) is not None
    return annotation is ClassVar or typing.get_origin(annotation) is ClassVar


def _snake_case(name: str) -> str:
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _read_file(template: type[MailTemplate], relative: str) -> str:
    path = Path(relative)
    if not path.is_absolute():
        from django.apps import apps

        config = apps.get_containing_app_config(template.__module__)
        if config is None:
            raise TemplateDefinitionError(
                f"Mail template {template.name!r} is defined in {template.__module__}, which is "
                f"not part of an installed app, so {relative!r} has no mail/ folder to be "
                "relative to. Use an absolute path or an inline mjml = '''...'''."
            )
        path = Path(config.path) / "mail" / relative
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateDefinitionError(
            f"Mail template {template.name!r}: cannot read {path} ({exc.strerror}). Check the "
            "file name (relative to the app's mail/ folder)."
        ) from exc
