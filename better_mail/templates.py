"""Mail templates: classes declaring typed variables, a registry, and MJML + Jinja2 rendering."""

from __future__ import annotations

import copy
import dataclasses
import functools
import html as html_module
import inspect
import re
import threading
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

import jinja2
import jinja2.meta
import markupsafe
import mjml as mjml_lib

from better_mail.exceptions import (
    TemplateCompileError,
    TemplateDefinitionError,
    TemplateNotFound,
    TemplateVariableError,
)

__all__ = [
    "VALID_MJML_TAGS",
    "MailTemplate",
    "RenderedMail",
    "Variable",
    "autodiscover",
    "clear_caches",
    "get_template",
    "is_precompiled",
    "lint",
    "mjml_to_text",
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

# Tags of MJML 4 (https://documentation.mjml.io). mjml-python renders an unknown mj- tag as raw
# markup without complaint, so lint() compares against this list.
VALID_MJML_TAGS = frozenset(
    {
        "mjml",
        "mj-head",
        "mj-body",
        "mj-attributes",
        "mj-all",
        "mj-class",
        "mj-breakpoint",
        "mj-font",
        "mj-html-attributes",
        "mj-html-attribute",
        "mj-selector",
        "mj-preview",
        "mj-style",
        "mj-title",
        "mj-include",
        "mj-accordion",
        "mj-accordion-element",
        "mj-accordion-title",
        "mj-accordion-text",
        "mj-button",
        "mj-carousel",
        "mj-carousel-image",
        "mj-column",
        "mj-divider",
        "mj-group",
        "mj-hero",
        "mj-image",
        "mj-navbar",
        "mj-navbar-link",
        "mj-raw",
        "mj-section",
        "mj-social",
        "mj-social-element",
        "mj-spacer",
        "mj-table",
        "mj-text",
        "mj-wrapper",
    }
)

_MISSING: Any = object()


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


@dataclasses.dataclass(frozen=True)
class RenderedMail:
    """A rendered template: subject, HTML (CSS inlined), plain text, and the MJML it came from."""

    template: str
    subject: str
    html: str
    text: str
    context: dict[str, Any]
    _mjml: str | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def mjml(self) -> str:
        """The MJML after Jinja2 (rendered on demand when the HTML came from the precompiled
        template)."""
        if self._mjml is not None:
            return self._mjml
        compiled = _compile(get_template(self.template))
        return compiled.body.render(self.context)


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
            _COMPILED.pop(current, None)

    def unregister(self, name: str) -> None:
        with self._lock:
            template = self._templates.pop(name, None)
            _COMPILED.pop(template, None)

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
        cached = cls.__dict__.get("_variables_cache")
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
                if default is _MISSING and _accepts_none(annotation):
                    default = None
                result[attr] = Variable(attr, annotation, default)
        cls._variables_cache = result
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
            problem = _mismatch(value, variable.annotation, variable.name)
            if problem is not None:
                path, expected, what = problem
                if what == "missing":
                    message = f"missing {path!r} (expected {describe_type(expected)})"
                elif what == "unknown":
                    message = f"unknown key {path!r}"
                else:
                    got = _value_at(value, path, variable.name)
                    message = (
                        f"variable {path!r} must be {describe_type(expected)}, got "
                        f"{type(got).__name__} {_short_repr(got)}"
                    )
                raise TemplateVariableError(
                    f"Mail template {cls.name!r}: {message}.",
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
        return _render(cls, cls.validate(context, **values))

    @classmethod
    def render_preview(cls) -> RenderedMail:
        """Render with ``preview_data``."""
        return _render(cls, cls.get_preview_data())

    @classmethod
    def lint(cls) -> list[str]:
        """Problems of this template (see ``lint``)."""
        return lint(cls)


def render(
    template: str | type[MailTemplate], context: Mapping[str, Any] | None = None, /, **values: Any
) -> RenderedMail:
    """Render a template (class or registered name) with its variables."""
    return get_template(template).render(context, **values)


# Type checking -------------------------------------------------------------------------------


def describe_type(annotation: Any) -> str:
    """A readable name for a type annotation: ``list[str]``, ``int | None``."""
    if annotation is None or annotation is type(None):
        return "None"
    if annotation is Any:
        return "Any"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return describe_type(args[0])
    if origin in (Union, types.UnionType):
        return " | ".join(describe_type(arg) for arg in args)
    if origin is Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin is not None:
        base = getattr(origin, "__name__", str(origin))
        inner = ", ".join("..." if arg is Ellipsis else describe_type(arg) for arg in args)
        return f"{base}[{inner}]" if args else base
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


_Problem = tuple[str, Any, str]  # (path, expected annotation, "type" | "missing" | "unknown")


def _mismatch(value: Any, annotation: Any, path: str) -> _Problem | None:
    """The first place where ``value`` does not match ``annotation``, or None."""
    if annotation is Any or annotation is object:
        return None
    if annotation is None or annotation is type(None):
        return None if value is None else (path, annotation, "type")
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _mismatch(value, args[0], path)
    if origin in (Union, types.UnionType):
        problems = [_mismatch(value, arg, path) for arg in args]
        if any(problem is None for problem in problems):
            return None
        # A nested problem (deeper path) is more useful than "not any of the union".
        deeper = [p for p in problems if p is not None and p[0] != path]
        return deeper[0] if len(deeper) == 1 else (path, annotation, "type")
    if origin is Literal:
        return None if value in args else (path, annotation, "type")
    if origin is not None:
        return _mismatch_generic(value, annotation, origin, args, path)
    if annotation is bool:
        return None if isinstance(value, bool) else (path, annotation, "type")
    if annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else (path, annotation, "type")
    if annotation is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else (path, annotation, "type")
    if typing.is_typeddict(annotation):
        return _mismatch_typeddict(value, annotation, path)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return _mismatch_dataclass(value, annotation, path)
    if isinstance(annotation, type):
        return None if isinstance(value, annotation) else (path, annotation, "type")
    # Annotations we cannot check (TypeVar, protocols, strings) accept any value.
    return None


def _mismatch_generic(
    value: Any, annotation: Any, origin: Any, args: tuple[Any, ...], path: str
) -> _Problem | None:
    import collections.abc as abc

    if origin in (dict, abc.Mapping, abc.MutableMapping):
        if not isinstance(value, Mapping):
            return (path, annotation, "type")
        if len(args) == 2:
            for key, item in value.items():
                problem = _mismatch(key, args[0], f"{path}[{key!r}]") or _mismatch(
                    item, args[1], f"{path}[{key!r}]"
                )
                if problem:
                    return problem
        return None
    if origin in (list, tuple, set, frozenset, abc.Sequence, abc.Iterable, abc.Collection):
        accepted = origin if origin in (list, tuple, set, frozenset) else (list, tuple)
        if not isinstance(value, accepted) or isinstance(value, str | bytes):
            return (path, annotation, "type")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                return (path, annotation, "type")
            pairs = list(zip(value, args, strict=True))
        else:
            item_type = args[0] if args else Any
            pairs = [(item, item_type) for item in value]
        for index, (item, item_type) in enumerate(pairs):
            problem = _mismatch(item, item_type, f"{path}[{index}]")
            if problem:
                return problem
        return None
    if origin is type:
        return None if isinstance(value, type) else (path, annotation, "type")
    if isinstance(origin, type):
        return None if isinstance(value, origin) else (path, annotation, "type")
    return None


def _mismatch_typeddict(value: Any, annotation: Any, path: str) -> _Problem | None:
    if not isinstance(value, Mapping):
        return (path, annotation, "type")
    hints = _hints(annotation)
    for key in sorted(annotation.__required_keys__):
        if key not in value:
            return (f"{path}.{key}", hints[key], "missing")
    for key, item in value.items():
        if key not in hints:
            return (f"{path}.{key}", None, "unknown")
        problem = _mismatch(item, hints[key], f"{path}.{key}")
        if problem:
            return problem
    return None


def _mismatch_dataclass(value: Any, annotation: type, path: str) -> _Problem | None:
    hints = _hints(annotation)
    fields = _fields(annotation)
    if isinstance(value, annotation):
        items = {name: getattr(value, name) for name in fields}
    elif isinstance(value, Mapping):
        # A dict with the dataclass's fields renders the same in Jinja2 (x.field).
        for name, field in fields.items():
            no_default = (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            )
            if name not in value and no_default:
                return (f"{path}.{name}", hints.get(name), "missing")
        for key in value:
            if key not in fields:
                return (f"{path}.{key}", None, "unknown")
        items = dict(value)
    else:
        return (path, annotation, "type")
    for name, item in items.items():
        problem = _mismatch(item, hints.get(name, Any), f"{path}.{name}")
        if problem:
            return problem
    return None


@functools.lru_cache(maxsize=512)
def _hints(annotation: Any) -> dict[str, Any]:
    return typing.get_type_hints(annotation)


@functools.lru_cache(maxsize=512)
def _fields(annotation: Any) -> dict[str, dataclasses.Field]:
    return {field.name: field for field in dataclasses.fields(annotation)}


def _value_at(value: Any, path: str, root: str) -> Any:
    """The part of ``value`` that ``path`` (``items[2].name``) designates."""
    for step in re.findall(r"\[('(?:[^']*)'|\d+|[^\]]+)\]|\.(\w+)", path[len(root) :]):
        index, attribute = step
        try:
            if attribute:
                is_mapping = isinstance(value, Mapping)
                value = value[attribute] if is_mapping else getattr(value, attribute)
            elif index.isdigit():
                value = list(value)[int(index)]
            else:
                key = index.strip("'\"")
                value = value[key] if key in value else value[int(key)]
        except (KeyError, IndexError, AttributeError, TypeError, ValueError):
            return value
    return value


def _short_repr(value: Any) -> str:
    text = repr(value)
    return f"({text[:60]}...)" if len(text) > 60 else f"({text})"


def _accepts_none(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _accepts_none(typing.get_args(annotation)[0])
    return origin in (Union, types.UnionType) and type(None) in typing.get_args(annotation)


def _is_classvar(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return re.match(r"^(typing\.|t\.)?ClassVar\b", annotation.strip()) is not None
    return annotation is ClassVar or typing.get_origin(annotation) is ClassVar


def _snake_case(name: str) -> str:
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# Jinja2 --------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Compiled:
    subject: jinja2.Template
    body: jinja2.Template
    text: jinja2.Template | None
    # The precompiled form (see _precompile); None when the template needs the full pipeline.
    fast_html: jinja2.Template | None = None
    fast_text: jinja2.Template | None = None


_COMPILED: dict[Any, _Compiled] = {}
_ENVIRONMENTS: dict[bool, jinja2.Environment] = {}
_env_lock = threading.Lock()


def mail_dirs() -> list[Path]:
    """The ``mail/`` folders of the installed apps (searched by ``{% include %}``/``extends``)."""
    from django.apps import apps

    return [
        Path(config.path) / "mail"
        for config in apps.get_app_configs()
        if (Path(config.path) / "mail").is_dir()
    ]


def environment(autoescape: bool = True) -> jinja2.Environment:
    """The Jinja2 environment for HTML (autoescaped) or for subject and text (not escaped)."""
    env = _ENVIRONMENTS.get(autoescape)
    if env is None:
        with _env_lock:
            env = _ENVIRONMENTS.get(autoescape)
            if env is None:
                env = jinja2.Environment(
                    loader=jinja2.FileSystemLoader([str(path) for path in mail_dirs()]),
                    autoescape=autoescape,
                    undefined=jinja2.StrictUndefined,
                    keep_trailing_newline=True,
                    auto_reload=False,
                )
                _ENVIRONMENTS[autoescape] = env
    return env


def clear_caches() -> None:
    """Forget compiled templates and Jinja2 environments (after editing template files)."""
    _COMPILED.clear()
    _ENVIRONMENTS.clear()
    _inliner.cache_clear()


def _compile(template: type[MailTemplate]) -> _Compiled:
    compiled = _COMPILED.get(template)
    if compiled is not None:
        return compiled
    html_env, text_env = environment(True), environment(False)
    part = "subject"
    try:
        subject = text_env.from_string(template.subject)
        part = template.mjml_file or "mjml"
        body = html_env.from_string(template.mjml_source())
        text_source = template.text_source()
        part = template.text_file or "text"
        text = text_env.from_string(text_source) if text_source is not None else None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateCompileError(
            f"Mail template {template.name!r}: Jinja2 syntax error in {part} at line "
            f"{exc.lineno}: {exc.message}.",
            template=template.name,
        ) from exc
    compiled = _Compiled(subject, body, text)
    precompiled = _precompile(template.mjml_source(), template.name)
    if precompiled is not None:
        compiled.fast_html, compiled.fast_text = precompiled
    _COMPILED[template] = compiled
    return compiled


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


# Rendering pipeline --------------------------------------------------------------------------

_INLINE_STYLE = re.compile(
    r"<mj-style\b[^>]*\binline\s*=\s*[\"']inline[\"'][^>]*>(.*?)</mj-style\s*>", re.S | re.I
)


def _render(template: type[MailTemplate], values: dict[str, Any]) -> RenderedMail:
    compiled = _compile(template)
    # Markup values are HTML to embed: the full pipeline styles them and turns them into text.
    fast = compiled.fast_html is not None and not any(
        isinstance(value, markupsafe.Markup) for value in values.values()
    )
    part = "subject"
    try:
        subject = compiled.subject.render(values)
        part = "body"
        if fast:
            source = None
            html = compiled.fast_html.render(values)
        else:
            source = compiled.body.render(values)
        part = "text"
        if compiled.text is not None:
            text = compiled.text.render(values).strip() + "\n"
        elif fast and compiled.fast_text is not None:
            text = _tidy_text(compiled.fast_text.render(values))
        else:
            text = None
    except jinja2.UndefinedError as exc:
        raise TemplateVariableError(
            f"Mail template {template.name!r}: the {part} uses something undefined "
            f"({exc.message}). Declare the variable on the class or fix the template.",
            template=template.name,
            variable=_undefined_name(exc.message or ""),
        ) from exc
    except jinja2.TemplateError as exc:
        raise TemplateCompileError(
            f"Mail template {template.name!r}: rendering the {part} failed: {exc}.",
            template=template.name,
        ) from exc
    if source is not None:
        html = compile_mjml(source, template.name)
        if text is None:
            text = mjml_to_text(source)
    return RenderedMail(
        template=template.name,
        subject=" ".join(subject.split()),
        html=html,
        text=text,
        context=values,
        _mjml=source,
    )


# Precompiled templates -----------------------------------------------------------------------
#
# mjml2html, CSS inlining and the HTML-to-text pass cost more than the Jinja2 render. When all
# Jinja2 markup of a body sits where MJML copies it through unchanged (text of content
# components, link and image URLs, {% if %}/{% for %} around the components of a column), the
# MJML is compiled once with the markup replaced by placeholders; the HTML (CSS inlined) and the
# text are then Jinja2 templates rendered per mail. The result is checked when it is built:
# every placeholder must come out exactly once and in order, else the full pipeline is used.

_JINJA_TOKEN = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_UNSUPPORTED_BLOCK = re.compile(
    r"^\{%-?\s*(extends|include|import|from|macro|call|raw|block|filter)\b"
)
_PLACEHOLDER = "bmjph{}x"
_PLACEHOLDER_RE = re.compile(r"bmjph(\d+)x")
_SCAN = re.compile(r"<!--.*?-->|<(/?)([a-zA-Z][\w:.-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>", re.S)
# Components whose content mjml-python copies through as HTML.
_CONTENT_TAGS = frozenset(
    {
        "mj-text",
        "mj-button",
        "mj-table",
        "mj-raw",
        "mj-navbar-link",
        "mj-accordion-title",
        "mj-accordion-text",
        "mj-social-element",
    }
)
_LABEL_TAGS = frozenset({"mj-title", "mj-preview"})
_URL_ATTRIBUTES = frozenset({"href", "src", "alt"})
# Attributes of HTML inside content that CSS inlining reads or rewrites.
_STYLED_ATTRIBUTES = frozenset({"style", "class", "id"})


def _precompile(source: str, template_name: str) -> tuple[jinja2.Template, jinja2.Template] | None:
    """The (HTML, text) Jinja2 templates of a body, or None when it needs the full pipeline."""
    tokens = [match.group(0) for match in _JINJA_TOKEN.finditer(source)]
    if "bmjph" in source or any(_UNSUPPORTED_BLOCK.match(token) for token in tokens):
        return None
    counter = iter(range(len(tokens)))
    marked = _JINJA_TOKEN.sub(lambda _: _PLACEHOLDER.format(next(counter)), source)
    mjml_source = _place(marked, tokens)
    if mjml_source is None:
        return None
    try:
        html = compile_mjml(mjml_source, template_name)
    except TemplateCompileError:
        return None
    if not _placeholders_intact(html, tokens):
        return None

    def restore(text: str) -> str:
        text = re.sub(r"<!--\s*bmjph(\d+)x\s*-->", lambda m: tokens[int(m.group(1))], text)
        return _PLACEHOLDER_RE.sub(lambda m: tokens[int(m.group(1))], text)

    try:
        html_template = environment(True).from_string(restore(html))
        text_template = environment(False).from_string(restore(mjml_to_text(marked)))
    except jinja2.TemplateSyntaxError:
        return None
    return html_template, text_template


def _placeholders_intact(html: str, tokens: list[str]) -> bool:
    """Every token came out, block tags once and in order, each expression in its block.

    MJML may repeat a value (the title is also the body's aria-label): an expression may come
    out more than once, as long as each copy sits between the same block tags as in the source.
    """
    blocks = [i for i, token in enumerate(tokens) if not token.startswith("{{")]
    found = [int(number) for number in _PLACEHOLDER_RE.findall(html)]
    if [i for i in found if i in blocks] != blocks or set(found) != set(range(len(tokens))):
        return False
    block_set = set(blocks)

    def enclosing(index: int) -> int:
        return max((b for b in blocks if b < index), default=-1)

    last_block = -1
    for i in found:
        if i in block_set:
            last_block = i
        elif last_block != enclosing(i):
            return False
    return True


def _place(marked: str, tokens: list[str]) -> str | None:
    """The MJML to compile: block tags as comments (wrapped in mj-raw between components).

    None when a placeholder sits where MJML would interpret it (a layout attribute, a tag name,
    text outside content components).
    """
    out: list[str] = []
    stack: list[str] = []
    content_depth = 0
    position = 0

    def text_part(text: str) -> str | None:
        parent = stack[-1] if stack else ""
        pieces: list[str] = []
        last = 0
        for match in _PLACEHOLDER_RE.finditer(text):
            pieces.append(text[last : match.start()])
            last = match.end()
            token = tokens[int(match.group(1))]
            is_block = not token.startswith("{{")
            if content_depth:
                pieces.append(f"<!--{match.group(0)}-->" if is_block else match.group(0))
            elif parent in _LABEL_TAGS and not is_block:
                pieces.append(match.group(0))
            elif parent == "mj-column" and is_block:
                pieces.append(f"<mj-raw><!--{match.group(0)}--></mj-raw>")
            else:
                return None
        pieces.append(text[last:])
        return "".join(pieces)

    for match in _SCAN.finditer(marked):
        chunk = text_part(marked[position : match.start()])
        if chunk is None:
            return None
        out.append(chunk)
        position = match.end()
        whole, closing, tag, attrs = match.group(0), match.group(1), match.group(2), match.group(3)
        if tag is None:  # a comment: a placeholder inside it stays commented out
            out.append(whole)
            continue
        tag = tag.lower()
        if "bmjph" in tag:
            return None
        is_mj = tag.startswith("mj-") or tag == "mjml"
        if attrs and "bmjph" in attrs:
            for name, value in re.findall(r"([\w:.-]+)\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+)", attrs):
                if "bmjph" not in value:
                    continue
                allowed = (
                    name.lower() in _URL_ATTRIBUTES
                    if is_mj and not content_depth
                    else content_depth and name.lower() not in _STYLED_ATTRIBUTES
                )
                if not allowed:
                    return None
            if "bmjph" in re.sub(r"([\w:.-]+)\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+)", "", attrs):
                return None
        out.append(whole)
        self_closing = attrs.rstrip().endswith("/")
        if content_depth:
            if is_mj and tag in _CONTENT_TAGS and closing:
                content_depth -= 1
                if stack:
                    stack.pop()
            continue
        if not is_mj or self_closing:
            continue
        if closing:
            while stack and stack.pop() != tag:
                pass
        else:
            stack.append(tag)
            if tag in _CONTENT_TAGS:
                content_depth = 1
    chunk = text_part(marked[position:])
    if chunk is None:
        return None
    out.append(chunk)
    return "".join(out)


def _tidy_text(text: str) -> str:
    lines = [line.strip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text + "\n" if text else ""


def compile_mjml(source: str, template_name: str = "<mjml>") -> str:
    """MJML to HTML with mjml-python, then CSS inlining per ``BETTER_MAIL['INLINE_CSS']``."""
    from better_mail.conf import mail_settings

    mode = mail_settings.INLINE_CSS
    # mjml-python ignores <mj-style inline="inline">: take those rules out and inline them here.
    inline_css = ""
    if mode and "inline" in source:
        blocks = _INLINE_STYLE.findall(source)
        if blocks:
            inline_css = "\n".join(blocks)
            source = _INLINE_STYLE.sub("", source)
    fonts = mail_settings.FONTS
    try:
        html = mjml_lib.mjml2html(source, fonts=dict(fonts) if fonts else {})
    except (ValueError, RuntimeError) as exc:
        raise TemplateCompileError(
            f"Mail template {template_name!r}: the MJML does not compile ({exc}). Check the "
            "nesting of mj- tags (mjml > mj-body > mj-section > mj-column > content).",
            template=template_name,
        ) from exc
    if mode == "all" or inline_css:
        html = _inliner(inline_css, mode == "all").inline(html)
    return html


@functools.lru_cache(maxsize=256)
def _inliner(extra_css: str, style_tags: bool) -> Any:
    import css_inline

    return css_inline.CSSInliner(
        inline_style_tags=style_tags,
        # Media queries and client hacks only work from <style>: keep the tags.
        keep_style_tags=True,
        keep_link_tags=True,
        load_remote_stylesheets=False,
        extra_css=extra_css or None,
    )


def _undefined_name(message: str) -> str:
    match = re.search(r"'([^']+)' is undefined|has no attribute '([^']+)'", message)
    if not match:
        return ""
    return match.group(1) or match.group(2)


# Plain text ----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"<!--.*?-->|<!\[CDATA\[(.*?)\]\]>|<(/?)([a-zA-Z][\w:.-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>"
    r"|([^<]+)|<",
    re.S,
)
_ATTRIBUTE = re.compile(r"([\w:.-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>]+))")
_SKIPPED = frozenset(
    {
        "mj-head",
        "head",
        "style",
        "script",
        "title",
        "mj-style",
        "mj-attributes",
        "mj-title",
        "mj-preview",
        "mj-breakpoint",
        "mj-font",
        "mj-html-attributes",
    }
)
_BLOCKS = frozenset(
    {
        "p",
        "div",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "tr",
        "table",
        "ul",
        "ol",
        "blockquote",
        "pre",
        "section",
        "header",
        "footer",
        "mj-text",
        "mj-section",
        "mj-column",
        "mj-wrapper",
        "mj-hero",
        "mj-group",
        "mj-table",
        "mj-raw",
        "mj-button",
        "mj-image",
        "mj-navbar",
        "mj-social",
        "mj-accordion-element",
    }
)


def mjml_to_text(source: str) -> str:
    """A plain-text rendering of MJML (or HTML): paragraphs, list items, links as ``text (url)``."""
    out: list[str] = []
    skip = 0
    links: list[tuple[str, int]] = []
    for match in _TOKEN.finditer(source):
        cdata, closing, tag, attrs, text = match.groups()
        if text is not None or cdata is not None:
            if not skip:
                chunk = text or cdata
                if "&" in chunk:
                    chunk = html_module.unescape(chunk)
                # Collapse whitespace like a browser, keeping one space at each end.
                words = " ".join(chunk.split())
                if words:
                    head = " " if chunk[0].isspace() else ""
                    tail = " " if chunk[-1].isspace() else ""
                    out.append(f"{head}{words}{tail}")
                elif chunk:
                    out.append(" ")
            continue
        if tag is None:
            continue
        tag = tag.lower()
        if tag in _SKIPPED:
            if closing:
                skip = max(skip - 1, 0)
            elif not attrs.rstrip().endswith("/"):
                skip += 1
            continue
        if skip:
            continue
        if closing:
            if tag in ("a", "mj-button", "mj-navbar-link", "mj-social-element") and links:
                href, start = links.pop()
                label = "".join(out[start:]).strip()
                if href and href != label and not href.startswith("#"):
                    shown = href[7:] if href.startswith("mailto:") else href
                    out.append(f" ({shown})" if label else shown)
            if tag in _BLOCKS:
                out.append("\n")
            continue
        attributes = {
            key.lower(): html_module.unescape(dq or sq or bare or "")
            for key, dq, sq, bare in _ATTRIBUTE.findall(attrs or "")
        }
        if tag == "br":
            out.append("\n")
        elif tag in ("hr", "mj-divider"):
            out.append("\n\n---\n\n")
        elif tag == "li":
            out.append("\n- ")
        elif tag in _BLOCKS:
            out.append("\n\n" if tag in ("p", "mj-text", "h1", "h2", "h3", "mj-button") else "\n")
        elif tag in ("td", "th"):
            out.append(" ")
        if tag in ("img", "mj-image") and attributes.get("alt"):
            out.append(f"[{attributes['alt']}]")
        if tag in ("a", "mj-button", "mj-navbar-link", "mj-social-element"):
            links.append((attributes.get("href", ""), len(out)))
    lines = [line.strip() for line in "".join(out).split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return text + "\n" if text else ""


# Lint ----------------------------------------------------------------------------------------

_MJ_TAG = re.compile(r"</?(mj-[\w-]+|mjml)\b([^>]*)>", re.I)
_REMOTE_CSS = re.compile(r"@import\s+(url\()?\s*[\"']?https?:|<link\b[^>]*stylesheet", re.I)


def lint(template: str | type[MailTemplate]) -> list[str]:
    """Problems of a template that rendering does not report: unknown mj- tags, remote fonts,
    undeclared or unresolvable variables, images without alt text, preview data that fails."""
    cls = get_template(template)
    problems: list[str] = []
    prefix = f"{cls.name}:"
    try:
        source = cls.mjml_source()
    except TemplateDefinitionError as exc:
        return [f"{prefix} {exc}"]
    for match in _MJ_TAG.finditer(source):
        tag = match.group(1).lower()
        line = source.count("\n", 0, match.start()) + 1
        if tag not in VALID_MJML_TAGS:
            problems.append(
                f"{prefix} unknown MJML tag <{tag}> at line {line} (mjml-python outputs it as "
                "raw markup). Check the spelling against the MJML components."
            )
        elif tag == "mj-include" and not match.group(0).startswith("</"):
            problems.append(
                f"{prefix} <mj-include> at line {line} is not resolved by better_mail; use "
                "Jinja2's {% include %} or {% extends %} (they search the apps' mail/ folders)."
            )
        elif tag == "mj-font" and not match.group(0).startswith("</"):
            problems.append(
                f"{prefix} <mj-font> at line {line} links a remote font; configure fonts "
                "in BETTER_MAIL['FONTS'] instead so that they are an explicit choice."
            )
        elif (
            tag == "mj-image"
            and not match.group(0).startswith("</")
            and not re.search(r"\balt\s*=", match.group(2))
        ):
            problems.append(f"{prefix} <mj-image> at line {line} has no alt text.")
    if _REMOTE_CSS.search(source):
        problems.append(
            f"{prefix} the MJML loads a remote stylesheet (@import or <link>); mail clients "
            "block it. Put the CSS in <mj-style>."
        )
    if "<mjml" not in source:
        problems.append(f"{prefix} the body does not start with <mjml>.")
    try:
        compiled = _compile(cls)
    except TemplateCompileError as exc:
        return [*problems, f"{prefix} {exc}"]
    del compiled
    declared = set(cls.variables())
    env = environment(True)
    parts = [("subject", cls.subject), ("body", source), ("text", cls.text_source())]
    for part, text in parts:
        if text is None:
            continue
        used = jinja2.meta.find_undeclared_variables(env.parse(text))
        for name in sorted(used - declared - set(env.globals)):
            problems.append(
                f"{prefix} the {part} uses {name!r}, which is not a declared variable. "
                "Declare it with a type annotation."
            )
    try:
        preview = cls.render_preview()
    except (TemplateVariableError, TemplateCompileError) as exc:
        problems.append(f"{prefix} rendering preview_data fails: {exc}")
    else:
        if re.search(r"<link\b[^>]*fonts\.googleapis", preview.html):
            problems.append(f"{prefix} the rendered HTML links a remote font.")
    return problems


def is_precompiled(template: str | type[MailTemplate]) -> bool:
    """True when the template renders from its precompiled HTML (no MJML compile per mail)."""
    return _compile(get_template(template)).fast_html is not None
