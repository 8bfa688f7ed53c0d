"""Background tasks of the projects app; better_tenant runs each one as the sender's tenant."""

from typing import Any

from better_tenant import get_context
from example_project.celery import app
from example_project.projects.models import Project


@app.task
def project_summary() -> dict[str, Any]:
    """What the task sees: its tenant scope and the names of the projects visible in it."""
    context = get_context()
    return {
        "tenant_id": str(context.tenant_id) if context.tenant_id else None,
        "is_system": context.is_system,
        "projects": sorted(Project.objects.values_list("name", flat=True)),
    }


@app.task
def create_project(name: str, fail: bool = False) -> dict[str, str]:
    """Create a project in the task's tenant; ``fail`` raises afterwards (its insert is undone)."""
    project = Project.objects.create(name=name)
    if fail:
        raise RuntimeError(f"Project {name!r} was created, then the task failed on purpose.")
    return {"id": str(project.pk), "tenant_id": str(project.tenant_id)}


@app.task(bind=True, max_retries=1)
def create_project_retrying(self: Any, name: str) -> str:
    """Create ``<name>-<attempt>`` and retry once: the first attempt's project is rolled back."""
    attempt = self.request.retries
    Project.objects.create(name=f"{name}-{attempt}")
    if attempt == 0:
        raise self.retry(countdown=0)
    return f"{name}-{attempt}"
