"""Views of the API.

Every view under ``/api/`` except ``/api/auth/`` runs inside the tenant scope that
TenantMiddleware opened from the request (the token's ``tenant`` claim, or a header, path or
subdomain that must then agree with the token): row-level security confines each query to that
tenant, so a row of another tenant is simply not found (404), never shown.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import SAFE_METHODS, AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import better_audit as audit
from better_audit.exceptions import AuditError
from example_project.projects import services
from example_project.projects.api.errors import exception_handler
from example_project.projects.api.permissions import IsMember, IsTenantAdmin
from example_project.projects.api.schema import PAGE, documented
from example_project.projects.api.serializers import (
    AuditEntrySerializer,
    AuditPageSerializer,
    InviteResponseSerializer,
    InviteSerializer,
    MeSerializer,
    ProjectPageSerializer,
    ProjectSerializer,
    SignupResponseSerializer,
    SignupSerializer,
    TaskPageSerializer,
    TaskSerializer,
    TenantSerializer,
    TokenRequestSerializer,
    TokenResponseSerializer,
    UserSerializer,
)
from example_project.projects.auth import TOKEN_LIFETIME, JWTAuthentication
from example_project.projects.models import Project, Task

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
AUDIT_FILTERS = [
    OpenApiParameter("resource", str, description="table name, e.g. projects or auth_user"),
    OpenApiParameter("actor", str, description="actor id (a user id)"),
    OpenApiParameter("record", str, description="record id"),
    OpenApiParameter("operation", str, description="INSERT, UPDATE, DELETE (comma-separated)"),
    OpenApiParameter("limit", int, description="1 to 200 (default 50)"),
    OpenApiParameter("cursor", str, description="next_cursor of the previous page"),
]


class ApiView(APIView):
    """JSON in and out, errors as ``{"error", "code"}``, members of the request's tenant only."""

    authentication_classes = [JWTAuthentication]
    permission_classes = [IsMember]
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]

    def get_exception_handler(self) -> Any:
        return exception_handler

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # A write is atomic: one that fails after a change leaves nothing behind (the project,
        # its audit row, its webhook). A read runs in autocommit, its queries carrying the tenant.
        if request.method in SAFE_METHODS:
            return super().dispatch(request, *args, **kwargs)
        with transaction.atomic():
            return super().dispatch(request, *args, **kwargs)

    def actor_id(self) -> str:
        return str(self.request.user.pk)


def _page(request: Request) -> tuple[int, int]:
    """``limit`` (1-200, default 50) and ``offset`` from the query string."""
    values = {}
    for name, default, low, high in (
        ("limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        ("offset", 0, 0, None),
    ):
        raw = request.query_params.get(name, "")
        try:
            value = int(raw) if raw else default
        except ValueError:
            value = -1
        if value < low or (high is not None and value > high):
            bounds = f"{low} to {high}" if high is not None else f"{low} or more"
            raise services.ServiceError(f"{name} must be an integer from {bounds}.", "INVALID_PAGE")
        values[name] = value
    return values["limit"], values["offset"]


def _listing(request: Request, queryset: Any, serializer: type) -> Response:
    limit, offset = _page(request)
    rows = list(queryset[offset : offset + limit + 1])
    return Response(
        {"data": serializer(rows[:limit], many=True).data, "has_more": len(rows) > limit}
    )


# --- sign-up and tokens (no tenant yet) ----------------------------------------------------------


class SignupView(ApiView):
    """Create an account: a new tenant that the user owns, or a tenant that invited them."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @documented("auth_signup", SignupResponseSerializer, request=SignupSerializer, status=201)
    def post(self, request: Request) -> Response:
        serializer = SignupSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = services.sign_up(
            data["email"],
            data["password"],
            tenant_name=data.get("tenant_name"),
            tenant_slug=data.get("tenant_slug"),
            invite=data.get("invite"),
            app_url=request.build_absolute_uri("/"),
        )
        return Response(
            {
                "user": UserSerializer(result.user).data,
                "tenant": TenantSerializer(result.tenant).data,
                "role": result.membership.role,
                "welcome_mail": str(result.mail.pk),
            },
            status=status.HTTP_201_CREATED,
        )


class TokenView(ApiView):
    """Exchange email, password and tenant for an access token to that tenant."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @documented("auth_token", TokenResponseSerializer, request=TokenRequestSerializer)
    def post(self, request: Request) -> Response:
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        issued = services.obtain_token(data["email"], data["password"], data["tenant"])
        return Response(
            {
                "access": issued.token,
                "token_type": "Bearer",
                "expires_in": int(TOKEN_LIFETIME.total_seconds()),
                "tenant": TenantSerializer(issued.tenant).data,
                "user": UserSerializer(issued.user).data,
                "role": issued.membership.role,
            }
        )


# --- the tenant's data ---------------------------------------------------------------------------


class MeView(ApiView):
    @documented("me", MeSerializer)
    def get(self, request: Request) -> Response:
        return Response(
            {
                "user": UserSerializer(request.user).data,
                "tenant": TenantSerializer(request._request.tenant).data,
                "role": request.auth.membership.role,
            }
        )


class ProjectListView(ApiView):
    @documented("projects_list", ProjectPageSerializer, parameters=PAGE)
    def get(self, request: Request) -> Response:
        return _listing(request, Project.objects.all(), ProjectSerializer)

    @documented("projects_create", ProjectSerializer, request=ProjectSerializer, status=201)
    def post(self, request: Request) -> Response:
        serializer = ProjectSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = services.create_project(serializer.validated_data["name"], self.actor_id())
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailView(ApiView):
    def get_permissions(self) -> list[Any]:
        if self.request.method == "DELETE":
            return [IsTenantAdmin()]
        return super().get_permissions()

    @documented("projects_retrieve", ProjectSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(ProjectSerializer(get_object_or_404(Project, pk=pk)).data)

    @documented("projects_update", ProjectSerializer, request=ProjectSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        project = get_object_or_404(Project, pk=pk)
        serializer = ProjectSerializer(project, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        if "name" in serializer.validated_data:
            services.rename_project(project, serializer.validated_data["name"])
        return Response(ProjectSerializer(project).data)

    @documented("projects_destroy", None, status=204)
    def delete(self, request: Request, pk: int) -> Response:
        get_object_or_404(Project, pk=pk).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProjectTasksView(ApiView):
    @documented("tasks_list", TaskPageSerializer, parameters=PAGE)
    def get(self, request: Request, pk: int) -> Response:
        project = get_object_or_404(Project, pk=pk)
        return _listing(request, project.tasks.all(), TaskSerializer)

    @documented("tasks_create", TaskSerializer, request=TaskSerializer, status=201)
    def post(self, request: Request, pk: int) -> Response:
        project = get_object_or_404(Project, pk=pk)
        serializer = TaskSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        task = Task.objects.create(project=project, title=serializer.validated_data["title"])
        return Response(TaskSerializer(task).data, status=status.HTTP_201_CREATED)


class TaskCompleteView(ApiView):
    """Mark a task done; the first completion sends ``task.completed``, repeats change nothing."""

    @documented("tasks_complete", TaskSerializer)
    def post(self, request: Request, pk: int) -> Response:
        try:
            task, _ = services.complete_task(pk, self.actor_id())
        except Task.DoesNotExist:
            task = get_object_or_404(Task, pk=pk)
        return Response(TaskSerializer(task).data)


class InviteView(ApiView):
    """Invite someone into the request's tenant (owners and admins); the token is shown once."""

    permission_classes = [IsTenantAdmin]

    @documented("invites_create", InviteResponseSerializer, request=InviteSerializer, status=201)
    def post(self, request: Request) -> Response:
        serializer = InviteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        invite, token = services.create_invite(
            serializer.validated_data["email"], serializer.validated_data["role"], request.user
        )
        return Response(
            {"id": invite.pk, "email": invite.email, "role": invite.role, "invite": token},
            status=status.HTTP_201_CREATED,
        )


class AuditView(ApiView):
    """The request tenant's audit trail (owners and admins), newest first.

    Filters: ``resource`` (table), ``actor``, ``record``, ``operation``, ``limit`` (1-200) and
    ``cursor`` (the ``next_cursor`` of the previous page). Row-level security on ``audit_logs``
    keeps other tenants' entries out.
    """

    permission_classes = [IsTenantAdmin]

    @documented("audit_list", AuditPageSerializer, parameters=AUDIT_FILTERS)
    def get(self, request: Request) -> Response:
        params = request.query_params
        limit, _ = _page(request)
        query = audit.query().limit(limit)
        try:
            if params.get("resource"):
                query = query.resource(params["resource"])
            if params.get("actor"):
                query = query.actor(params["actor"])
            if params.get("record"):
                query = query.record(params["record"])
            if params.get("operation"):
                query = query.operation(*params["operation"].upper().split(","))
            if params.get("cursor"):
                query = query.after(params["cursor"])
            page = query.list()
        except (AuditError, ValueError) as exc:
            raise services.ServiceError(str(exc), "INVALID_QUERY") from exc
        return Response(
            {
                "data": AuditEntrySerializer(page.entries, many=True).data,
                "next_cursor": page.next_cursor,
            }
        )
