"""URLs of the audit_only project: the admin and a view that writes an audited row."""

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from tests.projects.audit_only.models import Order


@csrf_exempt
def create_order(request: HttpRequest) -> JsonResponse:
    order = Order.objects.create(number=request.POST["number"])
    return JsonResponse({"id": order.pk}, status=201)


urlpatterns = [
    path("admin/", admin.site.urls),
    path("orders/", create_order),
]
