"""Namespaced app settings with defaults, dotted-path imports and reload on `setting_changed`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string


class SettingsError(Exception):
    """A setting has a value the app cannot use."""


class AppSettings:
    """Reads ``settings.<NAMESPACE>`` (a dict) over ``defaults``.

    Attribute access returns the merged value; keys listed in ``import_strings`` are dotted paths
    (or lists of them) that are imported once and cached. Unknown keys are not raised at import
    time: ``unknown_keys()`` reports them so that a system check can name them.
    """

    def __init__(
        self,
        namespace: str,
        defaults: Mapping[str, Any],
        import_strings: Iterable[str] = (),
    ) -> None:
        self.namespace = namespace
        self.defaults = dict(defaults)
        self.import_strings = frozenset(import_strings)
        self._cache: dict[str, Any] = {}
        setting_changed.connect(self._on_setting_changed, weak=False)

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(django_settings, self.namespace, None) or {}
        if not isinstance(value, Mapping):
            raise SettingsError(
                f"settings.{self.namespace} must be a dict, got {type(value).__name__}."
            )
        return dict(value)

    def unknown_keys(self) -> list[str]:
        return sorted(set(self.user_settings) - set(self.defaults))

    def raw(self, key: str) -> Any:
        """The configured value of ``key`` without importing dotted paths."""
        if key not in self.defaults:
            raise AttributeError(f"{self.namespace} has no setting {key!r}")
        return self.user_settings.get(key, self.defaults[key])

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_") or key not in self.defaults:
            raise AttributeError(f"{self.namespace} has no setting {key!r}")
        if key in self._cache:
            return self._cache[key]
        value = self.raw(key)
        if key in self.import_strings:
            value = perform_import(value, f"{self.namespace}[{key!r}]")
        self._cache[key] = value
        return value

    def reload(self) -> None:
        self._cache.clear()

    def _on_setting_changed(self, *, setting: str, **_: Any) -> None:
        if setting == self.namespace:
            self.reload()


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
