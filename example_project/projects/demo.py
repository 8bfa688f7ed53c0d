"""The demo data: tenants Acme and Globex, their owners, projects, tasks and webhook endpoints.

``seed()`` is idempotent: what exists is kept, what is missing is created. It is what
``manage.py demo_data`` runs, and what the end-to-end tests and the load test start from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from better_tenant import run_as
from better_tenant.api import create_tenant, get_tenant_by_slug
from better_tenant.models import Tenant
from better_webhooks.endpoints import create_endpoint, rotate_secret
from better_webhooks.models import WebhookEndpoint
from example_project.projects import events, services
from example_project.projects.models import Membership, Project, ReceiverInbox, Task

DEMO_PASSWORD = "demo-password"
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin"
RECEIVER_URL = "http://127.0.0.1:8000"

# name, slug, owner, {project: [(task, done), ...]}
TENANTS: list[tuple[str, str, str, dict[str, list[tuple[str, bool]]]]] = [
    (
        "Acme",
        "acme",
        "alice@acme.test",
        {
            "Rocket skates": [("Order the rockets", True), ("Test on the cliff", False)],
            "Giant magnet": [("Find a bigger anvil", False)],
        },
    ),
    (
        "Globex",
        "globex",
        "bob@globex.test",
        {
            "Hammock district": [("Survey the hammocks", True), ("Hire a foreman", False)],
            "Quarterly report": [("Collect the figures", False)],
        },
    ),
]


@dataclass
class Seeded:
    """What ``seed()`` found or made, and what it did (for the command's report)."""

    tenants: dict[str, Tenant] = field(default_factory=dict)
    owners: dict[str, Any] = field(default_factory=dict)
    endpoints: dict[str, WebhookEndpoint] = field(default_factory=dict)
    projects: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    admin: Any = None


def hook_url(receiver_url: str, slug: str) -> str:
    return f"{receiver_url.rstrip('/')}/hooks/{slug}"


def seed(receiver_url: str = RECEIVER_URL, *, superuser: bool = False) -> Seeded:
    """Create whatever of the demo data is missing; returns what exists afterwards."""
    result = Seeded()
    User = get_user_model()
    with transaction.atomic():
        for name, slug, email, projects in TENANTS:
            tenant = get_tenant_by_slug(slug)
            if tenant is None:
                tenant = create_tenant(name, slug)
                result.created.append(f"tenant {slug}")
            result.tenants[slug] = tenant
            with run_as(tenant):
                owner = User.objects.filter(username=email).first()
                if owner is None:
                    owner = User.objects.create_user(
                        username=email, email=email, password=DEMO_PASSWORD
                    )
                    result.created.append(f"user {email}")
                elif not owner.check_password(DEMO_PASSWORD):
                    owner.set_password(DEMO_PASSWORD)
                    owner.save(update_fields=["password"])
                    result.created.append(f"password of {email}")
                _, made = Membership.objects.get_or_create(user=owner, defaults={"role": "owner"})
                if made:
                    result.created.append(f"membership {email} in {slug}")
                result.owners[slug] = owner
                # The endpoint first, so that the projects made below reach it.
                result.endpoints[slug] = _endpoint(hook_url(receiver_url, slug), slug, result)
                _projects(projects, owner, result)
                result.projects[slug] = Project.objects.count()
                result.tasks[slug] = Task.objects.count()
        if superuser:
            admin = User.objects.filter(username=ADMIN_USERNAME).first()
            if admin is None:
                admin = User.objects.create_superuser(
                    ADMIN_USERNAME, "admin@example-saas.test", ADMIN_PASSWORD
                )
                result.created.append(f"superuser {ADMIN_USERNAME}")
            result.admin = admin
    return result


def _endpoint(url: str, slug: str, result: Seeded) -> WebhookEndpoint:
    """The tenant's endpoint at the local receiver, and the receiver's copy of its secret."""
    endpoint = WebhookEndpoint.objects.filter(url=url).first()
    inbox = ReceiverInbox.objects.filter(slug=slug).first()
    if endpoint is None:
        endpoint, secret = create_endpoint(
            url,
            [events.PROJECT_CREATED, events.TASK_COMPLETED],
            description="The local receiver of the demo",
        )
        result.created.append(f"webhook endpoint {url}")
    elif inbox is None:
        # The receiver lost its copy: a fresh secret for both sides.
        secret = rotate_secret(endpoint, overlap=0)
    else:
        return endpoint
    ReceiverInbox.objects.update_or_create(slug=slug, defaults={"secret": secret})
    return endpoint


def _projects(projects: dict[str, list[tuple[str, bool]]], owner: Any, result: Seeded) -> None:
    actor = str(owner.pk)
    for project_name, tasks in projects.items():
        project = Project.objects.filter(name=project_name).first()
        if project is not None:
            continue
        project = services.create_project(project_name, actor)
        for title, done in tasks:
            task = Task.objects.create(project=project, title=title)
            if done:
                services.complete_task(task.pk, actor)
        count = f"{len(tasks)} task" + ("" if len(tasks) == 1 else "s")
        result.created.append(f"project {project_name!r} with {count}")
