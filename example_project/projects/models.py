"""Tenant-scoped projects and tasks; a task's project must belong to the same tenant."""

from django.db import models

from better_tenant.models import TenantModel


class Project(TenantModel):
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "projects"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="projects_tenant_name_uniq"),
        ]

    def __str__(self) -> str:
        return self.name


class Task(TenantModel):
    # TenantRLS adds a composite (tenant_id, project_id) foreign key next to this one.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(max_length=200)
    done = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "tasks"
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.title
