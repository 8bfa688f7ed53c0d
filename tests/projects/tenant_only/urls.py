"""URLs of the tenant_only project: views at an app path and under the console's prefix."""

from django.http import HttpRequest, JsonResponse
from django.urls import path

from better_tenant.shortcuts import current_tenant_id
from tests.projects.tenant_only.models import Note


def notes(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "tenant": str(current_tenant_id()),
            "titles": sorted(Note.objects.values_list("title", flat=True)),
        }
    )


urlpatterns = [
    path("notes/", notes),
    # The console's prefix: without better_console nothing declares it exempt.
    path(".well-known/better/probe", notes),
]
