"""Ready-made ``BETTER_TENANT["AUTHORIZE"]`` checks: may this request's user use this tenant?"""

from __future__ import annotations

import inspect
import uuid
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest

if TYPE_CHECKING:
    from django.db.models import Model

# Resolving a tenant only reads what the client sent (a header, a path, a host name, a token);
# these checks decide whether the caller may act in that tenant.


class Membership:
    """Allows a request whose authenticated user has a row in a user-to-tenant table.

    ``model`` is the model (or its ``"app_label.ModelName"``) linking users to tenants;
    ``user_field`` and ``tenant_field`` are its foreign keys to the user model and to
    ``better_tenant.Tenant``. Anonymous and inactive users are refused. The row is looked up as
    the tenant being entered (inside the request's scope, or ``run_as(tenant_id)`` when called
    outside one), so a membership table under row-level security works as is: the query sees
    that tenant's memberships only, and never needs system mode.
    """

    def __init__(
        self, model: str | type[Model], *, user_field: str = "user", tenant_field: str = "tenant"
    ) -> None:
        if not isinstance(model, str) and not inspect.isclass(model):
            raise TypeError(
                f"membership() needs a model or 'app_label.ModelName', got {model!r}; e.g. "
                "membership('accounts.Membership')."
            )
        self._model = model
        self.user_field = user_field
        self.tenant_field = tenant_field

    def __repr__(self) -> str:
        return (
            f"membership({self.label!r}, user_field={self.user_field!r}, "
            f"tenant_field={self.tenant_field!r})"
        )

    @property
    def label(self) -> str:
        if isinstance(self._model, str):
            return self._model
        return self._model._meta.label

    @property
    def model(self) -> type[Model]:
        # Resolved on use: settings that build this check are imported before the app registry.
        if isinstance(self._model, str):
            from django.apps import apps

            return apps.get_model(self._model)
        return self._model

    def __call__(self, request: HttpRequest, tenant_id: uuid.UUID) -> bool:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not getattr(user, "is_active", True):
            return False
        from better_tenant.context import get_tenant_id, run_as

        rows = self.model._default_manager.filter(
            **{self.user_field: user.pk, self.tenant_field: tenant_id}
        )
        if get_tenant_id() == tenant_id:
            return rows.exists()
        with run_as(tenant_id):
            return rows.exists()

    def configuration_problems(self) -> list[str]:
        """What stops this check from working, for the system checks (empty when fine)."""
        from django.conf import settings
        from django.core.exceptions import FieldDoesNotExist

        try:
            model = self.model
        except (LookupError, ValueError) as exc:
            return [f"the model {self.label!r} cannot be loaded ({exc})"]
        problems = []
        expected = {
            self.user_field: ("user_field", settings.AUTH_USER_MODEL),
            self.tenant_field: ("tenant_field", "better_tenant.Tenant"),
        }
        for name, (argument, target) in expected.items():
            try:
                field = model._meta.get_field(name)
            except FieldDoesNotExist:
                problems.append(f"{model._meta.label} has no field {name!r} ({argument})")
                continue
            related = getattr(field, "related_model", None)
            if not field.many_to_one or related is None or related._meta.label != target:
                problems.append(
                    f"{model._meta.label}.{name} ({argument}) is not a foreign key to {target}"
                )
        return problems


def membership(
    model: str | type[Any], *, user_field: str = "user", tenant_field: str = "tenant"
) -> Membership:
    """An AUTHORIZE check allowing members only: ``membership("accounts.Membership")``.

    See ``Membership``. Use it as ``BETTER_TENANT["AUTHORIZE"]`` directly, or assign it to a
    name in a module and give that dotted path.
    """
    return Membership(model, user_field=user_field, tenant_field=tenant_field)


def setting_problems(check: Any) -> list[str]:
    """Why ``check`` cannot serve as AUTHORIZE, beyond being importable and callable."""
    configuration_problems = getattr(check, "configuration_problems", None)
    if callable(configuration_problems):
        return configuration_problems()
    try:
        signature = inspect.signature(check)
    except (TypeError, ValueError):  # builtins and C callables without a signature
        return []
    try:
        signature.bind(object(), object())
    except TypeError:
        name = getattr(check, "__qualname__", None) or repr(check)
        return [
            f"{name}{signature} cannot be called as (request, tenant_id); if it builds the "
            "check (as membership(...) does), call it and use the result"
        ]
    return []
