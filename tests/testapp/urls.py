"""URLs of the test views; tests select them with ``@pytest.mark.urls("tests.testapp.urls")``."""

from django.urls import path

from . import views

urlpatterns = [
    path("notes", views.notes),
    path("t/<str:tenantId>/notes", views.notes),
    path("async/notes", views.notes_async),
    path("t/<str:tenantId>/async/notes", views.notes_async),
    path("tenant", views.tenant_slug),
    path("async/tenant", views.tenant_slug_async),
    path("notes/create", views.create_note),
    path("notes/fail", views.create_then_fail),
    path("notes/atomic-fail", views.atomic_create_then_fail),
    path("async/notes/fail", views.create_then_fail_async),
    path("stream", views.stream_notes),
    path("async/stream", views.stream_notes_async),
    path("public/state", views.state),
    path("public/decorated", views.decorated),
    path("public/decorated-401", views.decorated_401),
    path("public/async/decorated", views.decorated_async),
    path("public/decorated-fail", views.decorated_fail),
    path("decorated", views.decorated),
    path("api/notes", views.notes),
]
