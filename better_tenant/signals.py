"""Receivers that keep the identifier cache right when tenants change."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from better_tenant import lookup
from better_tenant.models import Tenant

# The slug a saved tenant had before the save, kept on the instance from pre_save to post_save.
_OLD_SLUG = "_better_old_slug"


@receiver(pre_save, sender=Tenant, dispatch_uid="better_tenant.remember_slug")
def _remember_slug(sender: type[Tenant], instance: Tenant, **kwargs: Any) -> None:
    if instance._state.adding:
        setattr(instance, _OLD_SLUG, None)
        return
    old = Tenant.objects.filter(pk=instance.pk).values_list("slug", flat=True).first()
    setattr(instance, _OLD_SLUG, old)


@receiver(post_save, sender=Tenant, dispatch_uid="better_tenant.invalidate_on_save")
def _invalidate_on_save(sender: type[Tenant], instance: Tenant, **kwargs: Any) -> None:
    old = getattr(instance, _OLD_SLUG, None)
    lookup.invalidate(instance.pk, tuple(s for s in (old, instance.slug) if s))


@receiver(post_delete, sender=Tenant, dispatch_uid="better_tenant.invalidate_on_delete")
def _invalidate_on_delete(sender: type[Tenant], instance: Tenant, **kwargs: Any) -> None:
    lookup.invalidate(instance.pk, (instance.slug,))
