"""The webhook events of the example SaaS: catalog entries with schemas, and their payloads."""

import datetime
from typing import Any

PROJECT_CREATED = "project.created"
TASK_COMPLETED = "task.completed"

_ACTOR = {"type": ["string", "null"], "description": "id of the user who acted"}
_TIME = {"type": "string", "minLength": 20}

PROJECT_CREATED_SCHEMA = {
    "type": "object",
    "required": ["id", "name", "tenant_id", "created_at", "created_by"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "tenant_id": {"type": "string"},
        "created_at": _TIME,
        "created_by": _ACTOR,
    },
}

TASK_COMPLETED_SCHEMA = {
    "type": "object",
    "required": ["id", "project_id", "title", "tenant_id", "completed_at", "completed_by"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "project_id": {"type": "integer", "minimum": 1},
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "tenant_id": {"type": "string"},
        "completed_at": _TIME,
        "completed_by": _ACTOR,
    },
}


def register_events() -> None:
    """Put the SaaS's events in the better_webhooks catalog (called from ``AppConfig.ready``)."""
    from better_webhooks.events import register_event

    register_event(PROJECT_CREATED, "A project was created in a tenant.", PROJECT_CREATED_SCHEMA)
    register_event(TASK_COMPLETED, "A task of a project was completed.", TASK_COMPLETED_SCHEMA)


def _iso(moment: Any) -> str:
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def project_created(project: Any, actor_id: Any) -> dict[str, Any]:
    return {
        "id": project.pk,
        "name": project.name,
        "tenant_id": str(project.tenant_id),
        "created_at": _iso(project.created_at),
        "created_by": None if actor_id is None else str(actor_id),
    }


def task_completed(task: Any, actor_id: Any) -> dict[str, Any]:
    return {
        "id": task.pk,
        "project_id": task.project_id,
        "title": task.title,
        "tenant_id": str(task.tenant_id),
        "completed_at": _iso(task.completed_at),
        "completed_by": None if actor_id is None else str(actor_id),
    }
