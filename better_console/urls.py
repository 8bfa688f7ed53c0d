"""URLs of the console protocol: include at the site root, ``path("", include(...))``."""

from django.urls import re_path

from better_console.views import console_view

urlpatterns = [
    # One catch-all, so that every path under the prefix is answered in JSON with CORS headers.
    re_path(r"^\.well-known/better/(?P<path>.*)\Z", console_view, name="better_console"),
]
