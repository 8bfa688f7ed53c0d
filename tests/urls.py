"""URLs of the full test project: the admin, the console protocol, the webhooks API and portal.

Tests of other views select their own URLs with ``@pytest.mark.urls``.
"""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/webhooks/", include("better_webhooks.api.urls")),
    path("webhooks/portal/", include("better_webhooks.portal.urls")),
    path("", include("better_console.urls")),
]
