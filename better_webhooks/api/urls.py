"""URLs of the webhooks API; mount them under a base path of their own::

path("api/webhooks/", include("better_webhooks.api.urls"))

The last route answers every other path below that base with the API's JSON 404.
"""

from __future__ import annotations

from django.urls import path, re_path

from better_webhooks.api import views

app_name = "better_webhooks_api"

views.register_test_event()

urlpatterns = [
    path("endpoints", views.EndpointListView.as_view(), name="endpoints"),
    path("endpoints/<str:pk>", views.EndpointDetailView.as_view(), name="endpoint"),
    path(
        "endpoints/<str:pk>/enable",
        views.EndpointStatusView.as_view(action="enable"),
        name="endpoint-enable",
    ),
    path(
        "endpoints/<str:pk>/disable",
        views.EndpointStatusView.as_view(action="disable"),
        name="endpoint-disable",
    ),
    path(
        "endpoints/<str:pk>/rotate-secret",
        views.RotateSecretView.as_view(),
        name="endpoint-rotate-secret",
    ),
    path("endpoints/<str:pk>/test", views.TestEventView.as_view(), name="endpoint-test"),
    path("events", views.EventListView.as_view(), name="events"),
    path("events/<str:name>", views.EventDetailView.as_view(), name="event"),
    path("deliveries", views.DeliveryListView.as_view(), name="deliveries"),
    path("deliveries/recover", views.DeliveryRecoverView.as_view(), name="deliveries-recover"),
    path("deliveries/<str:pk>", views.DeliveryDetailView.as_view(), name="delivery"),
    path("deliveries/<str:pk>/retry", views.DeliveryRetryView.as_view(), name="delivery-retry"),
    re_path(r"^.*$", views.UnknownRouteView.as_view(), name="unknown"),
]
