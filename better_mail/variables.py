"""Type checks of template variables: whether a value matches its annotation, and type names."""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

__all__ = ["Problem", "accepts_none", "describe_mismatch", "describe_type", "mismatch"]

Problem = tuple[str, Any, str]  # (path, expected annotation, "type" | "missing" | "unknown")


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


def describe_mismatch(value: Any, problem: Problem, root: str) -> str:
    """What is wrong with the variable ``root`` (its ``value``), as ``mismatch`` found it."""
    path, expected, what = problem
    if what == "missing":
        return f"missing {path!r} (expected {describe_type(expected)})"
    if what == "unknown":
        return f"unknown key {path!r}"
    got = _value_at(value, path, root)
    return (
        f"variable {path!r} must be {describe_type(expected)}, got "
        f"{type(got).__name__} {_short_repr(got)}"
    )


def mismatch(value: Any, annotation: Any, path: str) -> Problem | None:
    """The first place where ``value`` does not match ``annotation``, or None."""
    if annotation is Any or annotation is object:
        return None
    if annotation is None or annotation is type(None):
        return None if value is None else (path, annotation, "type")
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return mismatch(value, args[0], path)
    if origin in (Union, types.UnionType):
        problems = [mismatch(value, arg, path) for arg in args]
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


def accepts_none(annotation: Any) -> bool:
    """True for an optional annotation (``X | None``), which makes None the default."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return accepts_none(typing.get_args(annotation)[0])
    return origin in (Union, types.UnionType) and type(None) in typing.get_args(annotation)


def _mismatch_generic(
    value: Any, annotation: Any, origin: Any, args: tuple[Any, ...], path: str
) -> Problem | None:
    import collections.abc as abc

    if origin in (dict, abc.Mapping, abc.MutableMapping):
        if not isinstance(value, Mapping):
            return (path, annotation, "type")
        if len(args) == 2:
            for key, item in value.items():
                problem = mismatch(key, args[0], f"{path}[{key!r}]") or mismatch(
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
            problem = mismatch(item, item_type, f"{path}[{index}]")
            if problem:
                return problem
        return None
    if origin is type:
        return None if isinstance(value, type) else (path, annotation, "type")
    if isinstance(origin, type):
        return None if isinstance(value, origin) else (path, annotation, "type")
    return None


def _mismatch_typeddict(value: Any, annotation: Any, path: str) -> Problem | None:
    if not isinstance(value, Mapping):
        return (path, annotation, "type")
    hints = _hints(annotation)
    for key in sorted(annotation.__required_keys__):
        if key not in value:
            return (f"{path}.{key}", hints[key], "missing")
    for key, item in value.items():
        if key not in hints:
            return (f"{path}.{key}", None, "unknown")
        problem = mismatch(item, hints[key], f"{path}.{key}")
        if problem:
            return problem
    return None


def _mismatch_dataclass(value: Any, annotation: type, path: str) -> Problem | None:
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
        problem = mismatch(item, hints.get(name, Any), f"{path}.{name}")
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
