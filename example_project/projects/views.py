"""JSON views of the example project; every query is confined to the request's tenant by RLS."""

import json

from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from better_tenant import get_context

from .models import Project


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _project(project: Project) -> dict:
    return {"id": project.pk, "name": project.name, "tenant_id": str(project.tenant_id)}


@csrf_exempt
@require_http_methods(["GET", "POST"])
def projects(request: HttpRequest, tenantId: str | None = None) -> JsonResponse:
    if request.method == "POST":
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return JsonResponse({"error": "Body must be JSON.", "code": "INVALID_JSON"}, status=400)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            return JsonResponse({"error": "name is required.", "code": "INVALID_NAME"}, status=400)
        try:
            with transaction.atomic():
                project = Project.objects.create(name=name.strip())
        except IntegrityError:
            return JsonResponse(
                {"error": "A project with this name exists.", "code": "DUPLICATE"}, status=409
            )
        return JsonResponse(_project(project), status=201)
    items = [_project(p) for p in Project.objects.all()[:100]]
    return JsonResponse({"tenant_id": str(get_context().tenant_id), "projects": items})
