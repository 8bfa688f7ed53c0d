"""URLs of the no_tenant project: the admin, the webhooks API and the console protocol."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/webhooks/", include("better_webhooks.api.urls")),
    path("", include("better_console.urls")),
]
