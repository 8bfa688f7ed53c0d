"""Receivers that keep the identifier cache right when tenants change."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from better_tenant import lookup
from better_tenant.models import Tenant


@receiver(pre_save, sender=Tenant, dispatch_uid="better_tenant.remember_slug")
def _remember_slug(sender: type[Tenant], instance: Tenant, **kwargs: Any) -> None:
    if instance._state.adding:
        instance._better_old_slug = None
        return
    instance._better_old_slug = (
        Tenant.objects.filter(pk=instance.pk).values_list("slug", flat=True).first()
    )


@receiver(post_save, sender=Tenant, dispatch_uid="better_tenant.invalidate_on_save")
def _invalidate_on_save(sender: type[Tenant], instance: Tenant, **kwargs: Any) -> None:
    old = getattr(instance, "_better_old_slug", None)
    lookup.invalidate(instance.pk, tuple(s for s in (old, instance.slug) if s))


@receiver(post_delete, sender=Tenant, dispatch_uid="better_tenant.invalidate_on_delete")
def _invalidate_on_delete(sender: type[Tenant], instance: Tenant, **kwargs: Any) -> None:
    lookup.invalidate(instance.pk, (instance.slug,))
