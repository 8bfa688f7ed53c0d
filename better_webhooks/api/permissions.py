"""Who may use the webhooks API: ``BETTER_WEBHOOKS["API_PERMISSION_CLASSES"]`` (default: staff)."""

from __future__ import annotations

from functools import lru_cache

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string
from rest_framework.permissions import BasePermission

DEFAULT_PERMISSION_CLASSES = ("rest_framework.permissions.IsAdminUser",)


@lru_cache(maxsize=1)
def api_permission_classes() -> tuple[type[BasePermission], ...]:
    """The permission classes of every API view, imported once from the setting."""
    from better_webhooks.conf import webhook_settings

    configured = webhook_settings.raw("API_PERMISSION_CLASSES")
    if configured is None:
        configured = DEFAULT_PERMISSION_CLASSES
    if isinstance(configured, str) or not isinstance(configured, (list, tuple)):
        raise ImproperlyConfigured(
            'BETTER_WEBHOOKS["API_PERMISSION_CLASSES"] must be a list of dotted paths of DRF '
            f"permission classes, e.g. {list(DEFAULT_PERMISSION_CLASSES)}; got {configured!r}."
        )
    classes = []
    for item in configured:
        try:
            cls = import_string(item) if isinstance(item, str) else item
        except ImportError as exc:
            raise ImproperlyConfigured(
                f'BETTER_WEBHOOKS["API_PERMISSION_CLASSES"]: cannot import {item!r} ({exc}). '
                "Give the dotted path of a DRF permission class."
            ) from exc
        if not (isinstance(cls, type) and hasattr(cls, "has_permission")):
            raise ImproperlyConfigured(
                f'BETTER_WEBHOOKS["API_PERMISSION_CLASSES"]: {item!r} is not a permission class '
                "(a class with has_permission(request, view))."
            )
        classes.append(cls)
    return tuple(classes)


def _reload(*, setting: str, **kwargs: object) -> None:
    if setting == "BETTER_WEBHOOKS":
        api_permission_classes.cache_clear()


setting_changed.connect(_reload, dispatch_uid="better_webhooks.api.permissions.reload")
