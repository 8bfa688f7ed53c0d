"""What other apps register with better_tenant: roles the app role enters, paths with no tenant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.apps import apps
from django.dispatch import Signal

#: Sent when the registered path prefixes change; the resolver chain recompiles on it.
exempt_paths_changed = Signal()

#: The ``AppConfig`` attribute through which an app that must not import better_tenant declares
#: its path prefixes (a tuple of strings), read while the app is installed.
EXEMPT_PATHS_ATTRIBUTE = "tenant_exempt_paths"


@dataclass(frozen=True)
class RegisteredRole:
    """A NOLOGIN role that ``better_tenant init`` lets the app role SET ROLE to, never inherit.

    ``name`` is the role's name or a callable returning it (read when used, since it usually comes
    from settings). ``label`` says whose role it is ("the audit log's admin role"), ``purpose``
    what the app role does as it ("for purging old entries") and ``setting`` where its name is
    configured; init prints them. ``ensure_sql(name)`` is SQL creating the role when it is missing.
    """

    key: str
    name: str | Callable[[], str]
    label: str
    purpose: str = ""
    setting: str = ""
    ensure_sql: Callable[[str], str] | None = None

    def role_name(self) -> str:
        """The role's current name."""
        return self.name() if callable(self.name) else self.name

    def describe(self) -> str:
        """``label, purpose``, as init prints it after the role's name."""
        return f"{self.label}, {self.purpose}" if self.purpose else self.label


_roles: dict[str, RegisteredRole] = {}
_exempt_paths: dict[str, None] = {}


def register_role(
    key: str,
    name: str | Callable[[], str],
    *,
    label: str,
    purpose: str = "",
    setting: str = "",
    ensure_sql: Callable[[str], str] | None = None,
) -> RegisteredRole:
    """Register a role the app role must be able to SET ROLE to; the same ``key`` replaces it.

    Called from an app's ``ready()``, which Django may run again (e.g. when a test changes
    INSTALLED_APPS), hence replacing instead of refusing a known key.
    """
    role = RegisteredRole(key, name, label, purpose, setting, ensure_sql)
    _roles[key] = role
    return role


def unregister_role(key: str) -> None:
    """Forget the role registered under ``key``, if any."""
    _roles.pop(key, None)


def registered_roles() -> tuple[RegisteredRole, ...]:
    """The registered roles, in registration order."""
    return tuple(_roles.values())


def register_exempt_path(prefix: str) -> None:
    """Let requests whose path starts with ``prefix`` pass the tenant middleware unresolved.

    For paths that authenticate on their own and are never tenant-scoped. Registering a prefix
    twice keeps it once.
    """
    _check_prefix(prefix, "register_exempt_path()")
    if prefix not in _exempt_paths:
        _exempt_paths[prefix] = None
        exempt_paths_changed.send(sender=None)


def unregister_exempt_path(prefix: str) -> None:
    """Forget a registered path prefix, if it is registered."""
    if _exempt_paths.pop(prefix, ...) is not ...:
        exempt_paths_changed.send(sender=None)


def exempt_paths() -> tuple[str, ...]:
    """The registered prefixes, then those the installed apps declare in ``tenant_exempt_paths``."""
    declared: dict[str, None] = dict(_exempt_paths)
    for config in apps.get_app_configs():
        paths = getattr(config, EXEMPT_PATHS_ATTRIBUTE, ())
        if isinstance(paths, str):
            paths = (paths,)
        for prefix in paths:
            _check_prefix(prefix, f"{type(config).__qualname__}.{EXEMPT_PATHS_ATTRIBUTE}")
            declared.setdefault(prefix, None)
    return tuple(declared)


def _check_prefix(prefix: object, where: str) -> None:
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise ValueError(
            f"{where}: a path prefix starts with '/', such as '/api/'; got {prefix!r}."
        )
