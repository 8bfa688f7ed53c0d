"""The example SaaS in the Django admin: a superuser sees and edits every tenant's rows."""

from __future__ import annotations

import pytest

from better_tenant import run_as
from example_project.projects import demo
from example_project.projects.models import Project, Task
from example_project.projects.testing import use_saas_settings

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded(settings):
    use_saas_settings(settings)
    return demo.seed("http://localhost:8000")


@pytest.mark.parametrize(
    ("changelist", "expected"),
    [
        ("projects/project", ["Rocket skates", "Hammock district"]),
        ("projects/membership", ["alice@acme.test", "bob@globex.test"]),
        ("projects/receiverinbox", ["acme", "globex"]),
        ("projects/receivedwebhook", []),
        ("projects/invite", []),
    ],
)
def test_changelists_show_every_tenant(admin_client, seeded, changelist, expected):
    response = admin_client.get(f"/admin/{changelist}/")
    assert response.status_code == 200
    page = response.content.decode()
    for text in expected:
        assert text in page


def test_a_project_page_shows_its_tasks_and_saves_a_new_one(admin_client, seeded):
    acme = seeded.tenants["acme"]
    with run_as(acme):
        project = Project.objects.get(name="Rocket skates")
        tasks = list(project.tasks.values_list("id", "title", "done"))
    url = f"/admin/projects/project/{project.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200 and "Order the rockets" in page.content.decode()
    form = {
        "tenant": str(acme.pk),
        "name": "Rocket skates",
        "tasks-TOTAL_FORMS": str(len(tasks) + 1),
        "tasks-INITIAL_FORMS": str(len(tasks)),
        "tasks-MIN_NUM_FORMS": "0",
        "tasks-MAX_NUM_FORMS": "1000",
    }
    for index, (pk, title, done) in enumerate(tasks):
        form.update({f"tasks-{index}-id": str(pk), f"tasks-{index}-project": str(project.pk)})
        form[f"tasks-{index}-title"] = title
        if done:
            form[f"tasks-{index}-done"] = "on"
    form[f"tasks-{len(tasks)}-title"] = "Paint it red"
    form[f"tasks-{len(tasks)}-project"] = str(project.pk)
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    with run_as(acme):
        added = Task.objects.get(title="Paint it red")
    assert added.project_id == project.pk and added.tenant_id == acme.pk
