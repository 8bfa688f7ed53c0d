"""URLs of the full test project: the admin, the console protocol and the webhooks API.

Tests of other views select their own URLs with ``@pytest.mark.urls``.
"""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/webhooks/", include("better_webhooks.api.urls")),
    path("", include("better_console.urls")),
]
