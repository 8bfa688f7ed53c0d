"""URLs of the webhooks API tests (``@pytest.mark.urls("tests.webhooks.urls")``)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import SAFE_METHODS, BasePermission


class ReadOnlyForAuthenticated(BasePermission):
    """A project's own rule for the API: any signed-in user may read, nobody may write."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated) and (
            request.method in SAFE_METHODS
        )


urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/", include("better_webhooks.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
]
