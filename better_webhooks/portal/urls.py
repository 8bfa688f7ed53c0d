"""URLs of the webhooks portal; mount them under a prefix of their own::

path("webhooks/portal/", include("better_webhooks.portal.urls"))
"""

from __future__ import annotations

from django.urls import path

from better_webhooks.api.views import register_test_event
from better_webhooks.portal import views

app_name = "better_webhooks_portal"

# The catalog page lists the test event the endpoint pages send, as the API's catalog does.
register_test_event()

urlpatterns = [
    path("", views.IndexView.as_view(), name="index"),
    path("enter/<str:token>/", views.EnterView.as_view(), name="enter"),
    path("exit/", views.ExitView.as_view(), name="exit"),
    path("endpoints/", views.EndpointListView.as_view(), name="endpoints"),
    path("endpoints/new/", views.EndpointCreateView.as_view(), name="endpoint-create"),
    path("endpoints/<uuid:pk>/", views.EndpointDetailView.as_view(), name="endpoint"),
    path("endpoints/<uuid:pk>/edit/", views.EndpointEditView.as_view(), name="endpoint-edit"),
    path("endpoints/<uuid:pk>/delete/", views.EndpointDeleteView.as_view(), name="endpoint-delete"),
    path(
        "endpoints/<uuid:pk>/enable/",
        views.EndpointStatusView.as_view(action="enable"),
        name="endpoint-enable",
    ),
    path(
        "endpoints/<uuid:pk>/disable/",
        views.EndpointStatusView.as_view(action="disable"),
        name="endpoint-disable",
    ),
    path("endpoints/<uuid:pk>/secret/", views.RevealSecretView.as_view(), name="endpoint-secret"),
    path(
        "endpoints/<uuid:pk>/rotate-secret/",
        views.RotateSecretView.as_view(),
        name="endpoint-rotate-secret",
    ),
    path("endpoints/<uuid:pk>/test/", views.TestEventView.as_view(), name="endpoint-test"),
    path("events/", views.EventListView.as_view(), name="events"),
    path("deliveries/", views.DeliveryListView.as_view(), name="deliveries"),
    path("deliveries/<uuid:pk>/", views.DeliveryDetailView.as_view(), name="delivery"),
    path("deliveries/<uuid:pk>/replay/", views.ReplayView.as_view(), name="delivery-replay"),
]
