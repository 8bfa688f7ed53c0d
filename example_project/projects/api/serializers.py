"""Request and response shapes of the API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from example_project.projects.models import Project, Task


class SignupSerializer(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(
        min_length=8, max_length=128, write_only=True, trim_whitespace=False
    )
    tenant_name = serializers.CharField(required=False, max_length=255)
    tenant_slug = serializers.CharField(required=False, max_length=63)
    invite = serializers.CharField(required=False, max_length=500)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if bool(data.get("tenant_name")) == bool(data.get("invite")):
            raise serializers.ValidationError(
                "Give either tenant_name (to create a tenant) or invite (to join one).",
                code="TENANT_OR_INVITE",
            )
        if data.get("tenant_slug") and not data.get("tenant_name"):
            raise serializers.ValidationError("tenant_slug goes with tenant_name.")
        return data


class TokenRequestSerializer(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)
    tenant = serializers.CharField(max_length=63, help_text="The tenant's slug or id.")


class TenantSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    slug = serializers.CharField()
    name = serializers.CharField()


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    email = serializers.EmailField()


class ProjectSerializer(serializers.ModelSerializer):
    tenant_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = Project
        fields = ["id", "name", "tenant_id", "created_at"]
        read_only_fields = ["id", "tenant_id", "created_at"]
        # The (tenant, name) uniqueness is checked by PostgreSQL, inside the tenant's scope.
        validators: list[Any] = []

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("A project needs a name.")
        return value


class TaskSerializer(serializers.ModelSerializer):
    project_id = serializers.IntegerField(read_only=True)
    tenant_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = Task
        fields = ["id", "project_id", "title", "done", "tenant_id", "created_at", "completed_at"]
        read_only_fields = ["id", "done", "created_at", "completed_at"]

    def validate_title(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("A task needs a title.")
        return value


class InviteSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=["member", "admin"], default="member")


class AuditEntrySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    timestamp = serializers.DateTimeField()
    table_name = serializers.CharField()
    operation = serializers.CharField()
    record_id = serializers.CharField()
    actor_id = serializers.CharField(allow_null=True)
    before_data = serializers.JSONField(allow_null=True)
    after_data = serializers.JSONField(allow_null=True)
    diff = serializers.JSONField(allow_null=True)
    label = serializers.CharField(allow_null=True)
    description = serializers.CharField(allow_null=True)
    severity = serializers.CharField(allow_null=True)
    compliance = serializers.ListField(child=serializers.CharField())
    redacted_fields = serializers.ListField(child=serializers.CharField())
    correlation_id = serializers.CharField(allow_null=True)


# --- response shapes (for the OpenAPI document) ---------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    code = serializers.CharField(help_text="UPPER_SNAKE error code")
    details = serializers.DictField(required=False)


class SignupResponseSerializer(serializers.Serializer):
    user = UserSerializer()
    tenant = TenantSerializer()
    role = serializers.CharField()
    welcome_mail = serializers.UUIDField(help_text="id of the welcome mail in mail_logs")


class TokenResponseSerializer(serializers.Serializer):
    access = serializers.CharField(help_text="JWT: sub, email, tenant, role, iat, exp")
    token_type = serializers.CharField()
    expires_in = serializers.IntegerField()
    tenant = TenantSerializer()
    user = UserSerializer()
    role = serializers.CharField()


class MeSerializer(serializers.Serializer):
    user = UserSerializer()
    tenant = TenantSerializer()
    role = serializers.CharField()


class ProjectPageSerializer(serializers.Serializer):
    data = ProjectSerializer(many=True)
    has_more = serializers.BooleanField()


class TaskPageSerializer(serializers.Serializer):
    data = TaskSerializer(many=True)
    has_more = serializers.BooleanField()


class InviteResponseSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    role = serializers.CharField()
    invite = serializers.CharField(help_text="the signed invite token, shown once")


class AuditPageSerializer(serializers.Serializer):
    data = AuditEntrySerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)
