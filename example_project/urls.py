"""URLs of the example project."""

from django.contrib import admin
from django.urls import include, path

from example_project.projects import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/webhooks/", include("better_webhooks.api.urls")),
    path("health", views.health),
    path("projects", views.projects),
    path("t/<str:tenantId>/projects", views.projects),
]
