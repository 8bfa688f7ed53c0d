"""URLs of the no_tenant project with the webhooks portal mounted, which it cannot serve."""

from django.urls import include, path

from tests.projects.no_tenant.urls import urlpatterns as project_urls

urlpatterns = [
    *project_urls,
    path("webhooks/portal/", include("better_webhooks.portal.urls")),
]
