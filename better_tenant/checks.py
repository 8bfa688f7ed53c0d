"""Django system checks of better_tenant: settings, tenant models and their RLS migrations.

Ids are stable. Settings: E001 BETTER_TENANT not a dict; E002 an unknown key; E003 a value of the
wrong type; E004 PATH; E005 MISSING_TENANT_STATUS; E006 a dotted path that does not import a
callable; E007 JWT_ALGORITHMS; E008 DATABASE missing or not PostgreSQL; E009 SYSTEM_ROLE; E010
CACHE_ALIAS; E011 PATH_PREFIXES / EXEMPT_PATHS entries; E013 an AUTHORIZE that cannot answer;
W005 JWT_CLAIM without JWT_KEY; W007 no resolver; W008 open sources beside a verified JWT. The ids
of single values are declared with their keys in better_tenant.conf. Models: E012 a foreign key
without its composite key; W001 RLS missing from the migrations; W002 a unique key without the
tenant; W003 a join table without RLS; W004 a shared model referencing a tenant model; W006 an
unmanaged tenant model. No check raises; a setting that cannot be read is reported, never
propagated.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db.models import Model
from django.db.models.fields.related import RelatedField

from better_tenant.conf import tenant_settings

# --- settings ------------------------------------------------------------------------------------


@register("better_tenant")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """BETTER_TENANT: one message per bad key, then what the values mean together."""
    problems = tenant_settings.problems()
    messages = [problem.as_check() for problem in problems]
    bad = {problem.key for problem in problems}
    if "AUTHORIZE" not in bad:
        messages += _check_authorize()
    if "DATABASE" not in bad:
        messages += _check_engine()
    if "JWT_CLAIM" not in bad and tenant_settings.JWT_CLAIM and tenant_settings.JWT_KEY is None:
        messages.append(
            Warning(
                "BETTER_TENANT['JWT_CLAIM'] is set but JWT_KEY is not: tokens are read without "
                "verifying their signature, so a client can claim any tenant.",
                hint="Set BETTER_TENANT['JWT_KEY'] (and JWT_ALGORITHMS), unless a proxy in "
                "front of Django already verifies every token.",
                id="better_tenant.W005",
            )
        )
    resolvers = ("HEADER", "PATH", "SUBDOMAIN", "JWT_CLAIM", "CUSTOM_RESOLVER")
    middleware = getattr(settings, "MIDDLEWARE", None) or []
    if "better_tenant.middleware.TenantMiddleware" in middleware and not any(
        tenant_settings.raw(key) for key in resolvers
    ):
        messages.append(
            Warning(
                "TenantMiddleware is installed but every resolver is off, so no request ever "
                "resolves to a tenant.",
                hint="Enable one of BETTER_TENANT HEADER, PATH, SUBDOMAIN, JWT_CLAIM or "
                "CUSTOM_RESOLVER.",
                id="better_tenant.W007",
            )
        )
    return messages


def _check_engine() -> list[CheckMessage]:
    """E008: the tenant database must be PostgreSQL (its alias is checked with the key)."""
    alias = tenant_settings.DATABASE
    engine = settings.DATABASES[alias].get("ENGINE", "")
    if "postgresql" in engine or "postgis" in engine:
        return []
    return [
        Error(
            f"The database {alias!r} uses {engine or 'no ENGINE'}; better_tenant needs "
            "PostgreSQL 13+ for row-level security.",
            hint="Use django.db.backends.postgresql for BETTER_TENANT['DATABASE'].",
            id="better_tenant.E008",
        )
    ]


def _check_authorize() -> list[CheckMessage]:
    """E013: an importable, callable AUTHORIZE that still cannot answer (request, tenant_id)."""
    check = tenant_settings.AUTHORIZE
    if check is None:
        return []
    from better_tenant.authorization import setting_problems

    try:
        problems = setting_problems(check)
    except Exception as exc:  # the user's model registry or callable is broken
        problems = [f"inspecting it raised {type(exc).__name__}: {exc}"]
    value = tenant_settings.raw("AUTHORIZE")
    return [
        Error(
            f"BETTER_TENANT['AUTHORIZE'] {value!r}: {problem}.",
            hint="AUTHORIZE is called as check(request, tenant_id) and returns True to let the "
            "request in. membership('app.Membership', user_field='user', tenant_field='tenant') "
            "needs foreign keys to the user model and to better_tenant.Tenant.",
            id="better_tenant.E013",
        )
        for problem in problems
    ]


# A judgement on how requests are trusted, not a broken setting or table: tagged security, where
# Django lists its own such warnings, and left out of `better_tenant check`'s health report.
@register(Tags.security)
def check_request_trust(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W008: a verified JWT next to sources any client sets, with no AUTHORIZE behind them."""
    values = {key: tenant_settings.raw(key) for key in tenant_settings.schema}
    if not values["JWT_CLAIM"] or values["JWT_KEY"] is None or values["AUTHORIZE"] is not None:
        return []
    header = values["HEADER"]
    open_sources = [
        label
        for label, enabled in (
            (f"the {header} header", isinstance(header, str) and header.strip()),
            ("the path", values["PATH"]),
            ("the subdomain", values["SUBDOMAIN"]),
            ("the custom resolver", values["CUSTOM_RESOLVER"]),
        )
        if enabled
    ]
    if not open_sources:
        return []
    named = ", ".join(open_sources[:-1]) + " and " if len(open_sources) > 1 else ""
    return [
        Warning(
            "BETTER_TENANT takes the tenant from a verified JWT and also from "
            f"{named}{open_sources[-1]}, which any client can set. A request with a valid token "
            "is held to the token's tenant (another tenant named elsewhere gets 403 "
            "TENANT_MISMATCH), but a request without one may name any tenant there, and nothing "
            "checks that the caller belongs to it.",
            hint="If every client sends the token, turn those sources off (HEADER: None, PATH: "
            "None, SUBDOMAIN: False, CUSTOM_RESOLVER: None). Otherwise set "
            "BETTER_TENANT['AUTHORIZE'], e.g. "
            "better_tenant.authorization.membership('app.Membership'), or, if every view "
            "checks membership itself, silence this warning.",
            id="better_tenant.W008",
        )
    ]


# --- models --------------------------------------------------------------------------------------


def _tenant_models(app_configs: Iterable[Any] | None) -> list[type[Model]]:
    from better_tenant.constraints import is_tenant_model

    if app_configs is None:
        models = apps.get_models()
    else:
        models = [m for config in app_configs for m in config.get_models()]
    return [m for m in models if not m._meta.abstract and not m._meta.proxy and is_tenant_model(m)]


def _rls(model: type[Model]) -> list[Any]:
    from better_tenant.constraints import TenantRLS

    return [c for c in model._meta.constraints if isinstance(c, TenantRLS)]


@register(Tags.models, "better_tenant")
def check_tenant_models(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Unique keys, foreign keys and many-to-many fields of tenant models."""
    try:
        tenant_models = _tenant_models(app_configs)
    except Exception:  # the registry is broken; Django reports that itself
        return []
    messages: list[CheckMessage] = []
    for model in tenant_models:
        messages += tenant_model_messages(model)
    messages += _shared_references(app_configs)
    return messages


def tenant_model_messages(model: type[Model]) -> list[CheckMessage]:
    """What is wrong with one TenantModel's definition."""
    from better_tenant.constraints import is_tenant_model

    messages: list[CheckMessage] = []
    label = model._meta.label
    if not model._meta.managed:
        messages.append(
            Warning(
                f"{label} is an unmanaged TenantModel: its migrations add no row-level "
                "security, so its table is unprotected unless secured by hand.",
                hint=f"Run `manage.py better_tenant add-table {model._meta.db_table} -o "
                "<app>/migrations/` and migrate, or make the model managed.",
                obj=model,
                id="better_tenant.W006",
            )
        )
    messages += _unique_messages(model)
    rls = _rls(model)
    listed = {name for c in rls for name in c.foreign_keys}
    for field in model._meta.local_fields:
        # Every many-to-one field among the local fields is a RelatedField (a ForeignObject).
        if not isinstance(field, RelatedField) or not field.many_to_one or field.name == "tenant":
            continue
        remote = field.related_model
        if not isinstance(remote, type) or not is_tenant_model(remote):
            continue
        remote_label = remote._meta.label
        if not field.target_field.primary_key:
            messages.append(
                Error(
                    f"{label}.{field.name} references {remote_label}.{field.target_field.name}, "
                    f"not its primary key, so no composite (tenant_id, {field.column}) key can "
                    "be added: a row may reference another tenant's row.",
                    hint=f"Point {field.name} at the primary key of {remote_label} (drop "
                    "to_field).",
                    obj=field,
                    id="better_tenant.E012",
                )
            )
        elif rls and field.name not in listed:
            messages.append(
                Error(
                    f"{label}.{field.name} references the tenant model {remote_label}, but the "
                    f"TenantRLS of {label} does not list it in foreign_keys: without the "
                    f"composite (tenant_id, {field.column}) key a row may reference another "
                    "tenant's row.",
                    hint=f"Add {field.name!r} to TenantRLS(foreign_keys=...) in "
                    f"{model.__name__}.Meta.constraints (or drop that TenantRLS and let "
                    "better_tenant add one), then run `manage.py makemigrations`.",
                    obj=field,
                    id="better_tenant.E012",
                )
            )
    return messages


def _unique_messages(model: type[Model]) -> list[CheckMessage]:
    meta = model._meta
    label = meta.label
    hint = "Include the tenant, e.g. UniqueConstraint(fields=['tenant', ...]), unless the value "
    hint += "must be unique across all tenants (then silence this warning)."
    found = []
    for field in meta.local_fields:
        if not field.unique or field.primary_key or field.one_to_one:
            continue
        if field.get_internal_type() == "UUIDField" and field.has_default():
            continue  # random identifiers are meant to be unique everywhere
        found.append(f"field {field.name} (unique=True)")
    for constraint in meta.constraints:
        fields = getattr(constraint, "fields", None)
        if (
            fields
            and type(constraint).__name__ == "UniqueConstraint"
            and not {
                "tenant",
                "tenant_id",
            }
            & set(fields)
        ):
            found.append(f"constraint {constraint.name} ({', '.join(fields)})")
    for together in meta.unique_together:
        if not {"tenant", "tenant_id"} & set(together):
            found.append(f"unique_together ({', '.join(together)})")
    return [
        Warning(
            f"{label}: {item} is unique across all tenants: one tenant's value blocks "
            "another's, and the conflict reveals that the value exists.",
            hint=hint,
            obj=model,
            id="better_tenant.W002",
        )
        for item in found
    ]


def _shared_references(app_configs: Iterable[Any] | None) -> list[CheckMessage]:
    models = (
        apps.get_models()
        if app_configs is None
        else [m for config in app_configs for m in config.get_models()]
    )
    messages: list[CheckMessage] = []
    for model in models:
        messages += shared_reference_messages(model)
    return messages


def shared_reference_messages(model: type[Model]) -> list[CheckMessage]:
    """W004 for each foreign key from a model without tenant_id into a TenantModel, W003 for each
    automatic join table from it to one (only those of a TenantModel's fields are secured)."""
    from better_tenant.constraints import is_tenant_model

    if model._meta.proxy or model._meta.auto_created or is_tenant_model(model):
        return []
    messages: list[CheckMessage] = []
    for field in model._meta.local_fields:
        remote = field.related_model if field.is_relation else None
        if isinstance(remote, type) and is_tenant_model(remote):
            messages.append(
                Warning(
                    f"{model._meta.label}.{field.name} references the tenant model "
                    f"{remote._meta.label}, but {model._meta.label} is not tenant-scoped: "
                    "its rows (and the ids they point to) are visible to every tenant.",
                    hint=f"Make {model.__name__} a TenantModel.",
                    obj=field,
                    id="better_tenant.W004",
                )
            )
    for field in model._meta.local_many_to_many:
        remote, through = field.related_model, field.remote_field.through
        if (
            isinstance(remote, type)
            and is_tenant_model(remote)
            and isinstance(through, type)
            and through._meta.auto_created
        ):
            messages.append(
                Warning(
                    f"{model._meta.label}.{field.name} links the tenant model "
                    f"{remote._meta.label} through an automatic join table without row-level "
                    f"security, since {model._meta.label} is not tenant-scoped: every tenant "
                    "can see and change its links.",
                    hint=f"Declare the many-to-many field on {remote.__name__} instead (its "
                    "join table then only shows links to the tenant's own rows), or give it an "
                    "explicit `through` model that is a TenantModel.",
                    obj=field,
                    id="better_tenant.W003",
                )
            )
    return messages


@register(Tags.models, "better_tenant")
def check_rls_migrations(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every managed TenantModel has its TenantRLS in the migration state."""
    try:
        tenant_models = [m for m in _tenant_models(app_configs) if m._meta.managed]
    except Exception:  # the registry is broken; Django reports that itself
        return []
    if not tenant_models:
        return []
    from django.db.migrations.loader import MigrationLoader

    try:
        state = MigrationLoader(None, ignore_no_migrations=True).project_state()
    except Exception as exc:  # broken migration files are reported, not raised
        return [
            Warning(
                f"The migrations could not be loaded to verify row-level security: {exc}.",
                hint="Fix the migration files, then run `manage.py check` again.",
                id="better_tenant.W001",
            )
        ]
    return rls_migration_messages(tenant_models, state)


def rls_migration_messages(models: Iterable[type[Model]], state: Any) -> list[CheckMessage]:
    """W001 for each model whose TenantRLS is missing from (or stale in) ``state``, W003 for each
    TenantJoinRLS of its automatic join tables that is missing from it."""
    from better_tenant.constraints import TenantJoinRLS, TenantRLS

    messages: list[CheckMessage] = []
    for model in models:
        meta = model._meta
        hint = f"Run `manage.py makemigrations {meta.app_label}` and `manage.py migrate`."
        model_state = state.models.get((meta.app_label, meta.model_name))
        if model_state is None:
            messages.append(
                Warning(
                    f"{meta.label} is a TenantModel with no migration yet: its table would "
                    "have no row-level security.",
                    hint=hint,
                    obj=model,
                    id="better_tenant.W001",
                )
            )
            continue
        in_state = model_state.options.get("constraints", [])
        for join in meta.constraints:
            if isinstance(join, TenantJoinRLS) and join not in in_state:
                messages.append(
                    Warning(
                        f"The automatic join table of {meta.label}.{join.field} has no "
                        "row-level security in the migrations yet: every tenant can see and "
                        "change its links.",
                        hint=hint,
                        obj=model,
                        id="better_tenant.W003",
                    )
                )
        migrated = {c for c in in_state if isinstance(c, TenantRLS)}
        if not migrated:
            messages.append(
                Warning(
                    f"{meta.label} is a TenantModel but no migration adds its TenantRLS "
                    "constraint: its table has no row-level security policies.",
                    hint=hint,
                    obj=model,
                    id="better_tenant.W001",
                )
            )
        elif migrated != set(_rls(model)):
            messages.append(
                Warning(
                    f"The TenantRLS of {meta.label} in its migrations differs from the model's "
                    "(its foreign keys changed), so the composite keys in the database are stale.",
                    hint=hint,
                    obj=model,
                    id="better_tenant.W001",
                )
            )
    return messages
