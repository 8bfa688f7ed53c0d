"""URLs of the example project."""

from django.contrib import admin
from django.urls import include, path

from example_project.projects import receiver, views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/webhooks/", include("better_webhooks.api.urls")),
    path("api/", include("example_project.projects.api.urls")),
    path("hooks/<slug:inbox>", receiver.receive, name="webhook-receiver"),
    path("", include("better_console.urls")),
    path("health", views.health),
    path("projects", views.projects),
    path("t/<str:tenantId>/projects", views.projects),
]
