"""Views and URLs of the audit context tests (``@pytest.mark.urls("tests.audit.urls")``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.views import View
from rest_framework.authentication import BaseAuthentication, TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from better_audit.context import get_audit_context, merge_audit_context
from better_audit.middleware import audit_actor_optional

#: Paths of the views that ran, so fail-closed tests can tell a view was never called.
CALLS: list[str] = []


def snapshot() -> dict[str, Any] | None:
    context = get_audit_context()
    if context is None:
        return None
    return {
        "actor_id": context.resolve_actor_id(),
        "correlation_id": context.correlation_id,
        "metadata": context.metadata,
        "reason": context.reason,
    }


def context_view(request: HttpRequest) -> JsonResponse:
    CALLS.append(request.path)
    before = snapshot()
    # Give other threads a chance to run between the two reads.
    time.sleep(float(request.GET.get("sleep", 0)))
    return JsonResponse({"before": before, "after": snapshot()})


async def async_context_view(request: HttpRequest) -> JsonResponse:
    CALLS.append(request.path)
    before = snapshot()
    await asyncio.sleep(float(request.GET.get("sleep", 0)))
    return JsonResponse({"before": before, "after": snapshot()})


def merged_view(request: HttpRequest) -> JsonResponse:
    with merge_audit_context(reason="gdpr-erasure", metadata={"ticket": "T-1"}):
        inside = snapshot()
    return JsonResponse({"inside": inside, "after": snapshot()})


@audit_actor_optional
def optional_view(request: HttpRequest) -> JsonResponse:
    CALLS.append(request.path)
    return JsonResponse({"context": snapshot()})


@audit_actor_optional
class OptionalClassView(View):
    def get(self, request: HttpRequest) -> JsonResponse:
        CALLS.append(request.path)
        return JsonResponse({"context": snapshot()})


def stream_view(request: HttpRequest) -> StreamingHttpResponse:
    def chunks():
        for index in range(3):
            context = get_audit_context()
            yield f"{index}:{context.resolve_actor_id() if context else None};"

    return StreamingHttpResponse(chunks())


async def async_stream_view(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks():
        for index in range(3):
            await asyncio.sleep(0)
            context = get_audit_context()
            yield f"{index}:{context.resolve_actor_id() if context else None};"

    return StreamingHttpResponse(chunks())


# --- Django REST framework ----------------------------------------------------------------------


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticates ``X-Api-Key: <username>`` (a stand-in for a project's own scheme)."""

    def authenticate(self, request: Any) -> tuple[Any, None] | None:
        key = request.META.get("HTTP_X_API_KEY")
        if not key:
            return None
        user = get_user_model().objects.filter(username=key).first()
        if user is None:
            raise AuthenticationFailed("Unknown API key.")
        return user, None


class TokenView(APIView):
    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request: Any) -> Response:
        CALLS.append(request.path)
        context = get_audit_context()
        return Response(
            {
                "actor_id": context.resolve_actor_id(),
                "user_pk": str(request.user.pk),
                "django_request_user_pk": str(request._request.user.pk),
            }
        )

    def post(self, request: Any) -> Response:
        """Send a task and wait for it: what audit context does it run in?"""
        from tests.audit.tasks import audit_snapshot

        queue = request.query_params.get("queue")
        result = audit_snapshot.apply_async(**({"queue": queue} if queue else {}))
        return Response({"task": result.get(timeout=20)})


class ApiKeyView(TokenView):
    authentication_classes = [ApiKeyAuthentication]


class AnonymousAllowedView(TokenView):
    permission_classes = []

    def get(self, request: Any) -> Response:
        return Response({"actor_id": get_audit_context().resolve_actor_id()})


urlpatterns = [
    path("context", context_view),
    path("async/context", async_context_view),
    path("merged", merged_view),
    path("optional", optional_view),
    path("optional-class", OptionalClassView.as_view()),
    path("stream", stream_view),
    path("async/stream", async_stream_view),
    path("drf/token", TokenView.as_view()),
    path("drf/api-key", ApiKeyView.as_view()),
    path("drf/anonymous", AnonymousAllowedView.as_view()),
]
