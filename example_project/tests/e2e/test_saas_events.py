"""What a change in the example SaaS leaves behind: audit entries, webhooks and mails."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

import better_mail
from better_audit.models import AuditLog
from better_mail.models import MailLog
from better_tenant import run_as, run_as_system
from better_webhooks.delivery import deliver_ids
from better_webhooks.models import WebhookDelivery
from better_webhooks.worker import Worker
from example_project.projects import demo, events, services
from example_project.projects.api import serializers
from example_project.projects.models import Project, ReceivedWebhook, Task
from example_project.projects.testing import Api, use_saas_settings

ALICE, BOB, PASSWORD = "alice@acme.test", "bob@globex.test", demo.DEMO_PASSWORD


def signed_in(client, receiver_url):
    seeded = demo.seed(receiver_url)
    api = Api(client)
    return SimpleNamespace(
        api=api,
        acme=seeded.tenants["acme"],
        globex=seeded.tenants["globex"],
        alice=seeded.owners["acme"],
        alice_token=api.token(ALICE, PASSWORD, "acme"),
        bob_token=api.token(BOB, PASSWORD, "globex"),
    )


@pytest.fixture
def saas(db, settings, client):
    use_saas_settings(settings)
    return signed_in(client, "http://localhost:8000")


def trail(tenant, **filters):
    with run_as(tenant):
        return list(AuditLog.objects.filter(**filters).order_by("timestamp", "id"))


def deliveries(tenant, event, **payload):
    lookups = {f"payload__{key}": value for key, value in payload.items()}
    with run_as(tenant):
        return list(WebhookDelivery.objects.filter(event=event, **lookups))


# --- audit ---------------------------------------------------------------------------------------


def test_api_changes_are_audited_with_the_token_user_and_tags(saas):
    api, token = saas.api, saas.alice_token
    project = api("POST", "/api/projects", {"name": "Jet pack"}, token=token).json()
    task = api("POST", f"/api/projects/{project['id']}/tasks", {"title": "Fuel"}, token=token)
    api("POST", f"/api/tasks/{task.json()['id']}/complete", token=token)
    api("DELETE", f"/api/projects/{project['id']}", token=token)

    records = [str(project["id"]), str(task.json()["id"])]
    entries = trail(saas.acme, table_name__in=["projects", "tasks"], record_id__in=records)
    assert [(e.table_name, e.operation) for e in entries] == [
        ("projects", "INSERT"),
        ("tasks", "INSERT"),
        ("tasks", "UPDATE"),
        ("tasks", "DELETE"),  # the cascade, before its project
        ("projects", "DELETE"),
    ]
    assert {e.actor_id for e in entries} == {str(saas.alice.pk)}
    assert all(e.compliance == ["soc2"] for e in entries)
    assert all(e.tenant_id == saas.acme.pk for e in entries)
    assert all(e.correlation_id for e in entries)
    update = next(e for e in entries if e.operation == "UPDATE")
    assert sorted(update.diff["changed_fields"]) == ["completed_at", "done"]
    deleted = next(e for e in entries if e.table_name == "projects" and e.operation == "DELETE")
    assert (deleted.label, deleted.severity) == ("Project deleted", "high")


def test_the_audit_api_shows_a_tenant_its_own_trail_only(saas):
    api = saas.api
    project = api("POST", "/api/projects", {"name": "Jet pack"}, token=saas.alice_token).json()
    query = f"/api/audit?resource=projects&record={project['id']}"
    mine = api("GET", query, token=saas.alice_token).json()["data"]
    assert [(e["operation"], e["actor_id"]) for e in mine] == [("INSERT", str(saas.alice.pk))]
    assert api("GET", query, token=saas.bob_token).json()["data"] == []
    bad = api("GET", "/api/audit?operation=TRUNCATE", token=saas.alice_token)
    assert (bad.status_code, bad.json()["code"]) == (400, "INVALID_QUERY")


def test_account_changes_are_audited_without_the_password(saas):
    api = saas.api
    signed = api(
        "POST",
        "/api/auth/signup",
        {"email": "carol@initech.test", "password": "carol-password", "tenant_name": "Initech"},
    ).json()
    user_id = signed["user"]["id"]
    initech = signed["tenant"]["id"]
    with run_as(initech):
        user = get_user_model().objects.get(pk=user_id)
        user.set_password("carol-new-password")
        user.save()
    entries = trail(initech, table_name="auth_user", record_id=str(user_id))
    assert [e.operation for e in entries] == ["INSERT", "UPDATE"]
    for entry in entries:
        assert entry.redacted_fields == ["password"]
        assert "password" not in (entry.after_data or {})
        assert "password" not in (entry.before_data or {})
        assert sorted(entry.compliance) == ["gdpr", "soc2"]
        assert user.password not in json.dumps([entry.before_data, entry.after_data])
    assert entries[0].description == "Account carol@initech.test created"
    assert entries[0].reason == "self-service sign-up"
    assert entries[1].description == "Account carol@initech.test updated"
    assert "password" not in json.dumps(entries[1].diff)
    # The owner's membership is on the new tenant's trail, and no other tenant sees either.
    assert [e.operation for e in trail(initech, table_name="memberships")] == ["INSERT"]
    assert trail(saas.acme, table_name="auth_user", record_id=str(user_id)) == []


# --- webhooks in the change's transaction --------------------------------------------------------


def test_a_created_project_queues_its_webhook_for_its_tenant_only(saas):
    project = saas.api("POST", "/api/projects", {"name": "Jet pack"}, token=saas.alice_token).json()
    [delivery] = deliveries(saas.acme, events.PROJECT_CREATED, id=project["id"])
    assert delivery.status == "pending"
    assert delivery.payload == {
        "id": project["id"],
        "name": "Jet pack",
        "tenant_id": str(saas.acme.pk),
        "created_at": delivery.payload["created_at"],
        "created_by": str(saas.alice.pk),
    }
    assert delivery.payload["created_at"].startswith(project["created_at"][:19])
    assert deliveries(saas.globex, events.PROJECT_CREATED, id=project["id"]) == []


def test_completing_a_task_sends_task_completed_once(saas):
    api, token = saas.api, saas.alice_token
    with run_as(saas.acme):
        task = Task.objects.filter(done=False).first()
    for _ in range(2):
        assert api("POST", f"/api/tasks/{task.pk}/complete", token=token).json()["done"] is True
    [delivery] = deliveries(saas.acme, events.TASK_COMPLETED, id=task.pk)
    assert delivery.payload["completed_by"] == str(saas.alice.pk)
    assert delivery.payload["project_id"] == task.project_id


def test_a_request_that_fails_after_the_change_leaves_nothing_behind(saas, monkeypatch):
    def fail(self, instance):
        raise RuntimeError("rendering failed after the project and its webhook were written")

    monkeypatch.setattr(serializers.ProjectSerializer, "to_representation", fail)
    client = Client(raise_request_exception=False)
    response = Api(client)("POST", "/api/projects", {"name": "Doomed"}, token=saas.alice_token)
    assert response.status_code == 500
    with run_as(saas.acme):
        assert not Project.objects.filter(name="Doomed").exists()
        assert not WebhookDelivery.objects.filter(payload__name="Doomed").exists()
        assert not AuditLog.objects.filter(after_data__name="Doomed").exists()


def test_a_rolled_back_create_sends_nothing(saas):
    with pytest.raises(RuntimeError), run_as(saas.acme):
        project = services.create_project("Doomed", str(saas.alice.pk))
        assert deliveries(saas.acme, events.PROJECT_CREATED, id=project.pk)  # written, for now
        raise RuntimeError("the caller's transaction fails")
    with run_as(saas.acme):
        assert not Project.objects.filter(name="Doomed").exists()
        assert not WebhookDelivery.objects.filter(payload__name="Doomed").exists()
        assert not AuditLog.objects.filter(
            table_name="projects", after_data__name="Doomed"
        ).exists()


# --- delivery to the local receiver --------------------------------------------------------------


@pytest.fixture
def live_saas(transactional_db, settings, live_server):
    """The demo's endpoints point at the live server's receiver (committed data, real HTTP)."""
    use_saas_settings(settings)
    return signed_in(Client(), live_server.url)


def test_a_delivered_webhook_is_verified_and_stored_by_the_receiver(live_saas, live_server):
    saas = live_saas
    with run_as_system():
        # What demo_data queued for the seeded projects is not this test's business.
        WebhookDelivery.objects.all().delete()
    project = saas.api("POST", "/api/projects", {"name": "Jet pack"}, token=saas.alice_token).json()
    [delivery] = deliveries(saas.acme, events.PROJECT_CREATED, id=project["id"])

    worker = Worker(concurrency=1, interval=0)
    try:
        worker.run(until_idle=True)  # the polling worker's one-shot
    finally:
        worker.close()

    with run_as(saas.acme):
        delivery.refresh_from_db()
    assert (delivery.status, delivery.last_status_code) == ("delivered", 200)
    received = ReceivedWebhook.objects.get(webhook_id=delivery.message_id)
    assert received.inbox.slug == "acme" and received.event == "project.created"
    assert received.data == delivery.payload
    assert received.signature.startswith("v1,")

    # A copy with a changed body no longer matches its signature.
    with run_as(saas.acme):
        attempt = delivery.attempt_log.get()
    headers = {k: v for k, v in attempt.request_headers.items() if k.startswith("webhook-")}
    tampered = attempt.request_body.replace("Jet pack", "Jet skis")
    client = Client()
    answer = client.post(
        "/hooks/acme",
        tampered,
        content_type="application/json",
        headers=headers,
    )
    assert (answer.status_code, answer.json()["code"]) == (401, "INVALID_SIGNATURE")
    # The genuine body again (a retry) is accepted once and stored once.
    again = client.post(
        "/hooks/acme", attempt.request_body, content_type="application/json", headers=headers
    )
    assert again.status_code == 200
    assert ReceivedWebhook.objects.filter(webhook_id=delivery.message_id).count() == 1
    # Globex's receiver got nothing of Acme's.
    assert not ReceivedWebhook.objects.filter(inbox__slug="globex", data__id=project["id"])


def test_the_celery_task_path_delivers_too(live_saas):
    saas = live_saas
    with run_as(saas.acme):
        task = Task.objects.filter(done=False).first()
    saas.api("POST", f"/api/tasks/{task.pk}/complete", token=saas.alice_token)
    [delivery] = deliveries(saas.acme, events.TASK_COMPLETED, id=task.pk)
    assert [outcome.status for outcome in deliver_ids([delivery.pk], "test")] == ["delivered"]
    received = ReceivedWebhook.objects.get(webhook_id=delivery.message_id)
    assert received.event == "task.completed" and received.data["id"] == task.pk


# --- the welcome mail ----------------------------------------------------------------------------


def test_sign_up_sends_the_welcome_mail_once_it_commits(saas, django_capture_on_commit_callbacks):
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = saas.api(
            "POST",
            "/api/auth/signup",
            {"email": "carol@initech.test", "password": "carol-password", "tenant_name": "Initech"},
        )
    assert response.status_code == 201
    [message] = mail.outbox
    assert message.to == ["carol@initech.test"]
    assert message.subject == "Welcome to Initech"
    assert "carol@initech.test" in message.body and "initech" in message.body
    html = message.alternatives[0][0] if message.alternatives else ""
    assert "Welcome to Initech" in html
    tenant = response.json()["tenant"]["id"]
    with run_as(tenant):
        [log] = MailLog.objects.all()
    assert (log.template, log.status, log.to) == ("welcome", "sent", ["carol@initech.test"])
    assert str(log.pk) == response.json()["welcome_mail"]
    assert str(log.tenant_id) == tenant
    # Acme's mail log does not show Initech's mail.
    with run_as(saas.acme):
        assert not MailLog.objects.filter(pk=log.pk).exists()


def test_a_refused_sign_up_queues_no_mail(saas, django_capture_on_commit_callbacks):
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = saas.api(
            "POST",
            "/api/auth/signup",
            {"email": "carol@initech.test", "password": "carol-password", "tenant_name": "Acme"},
        )
    assert response.json()["code"] == "TENANT_EXISTS"
    assert callbacks == [] and mail.outbox == []
    with run_as_system():
        assert not MailLog.objects.filter(to__contains=["carol@initech.test"]).exists()


def test_the_welcome_mail_waits_for_a_worker_when_sent_through_celery(saas, settings):
    settings.BETTER_MAIL = {"ASYNC": True}
    mail.outbox.clear()
    response = saas.api(
        "POST",
        "/api/auth/signup",
        {"email": "carol@initech.test", "password": "carol-password", "tenant_name": "Initech"},
    )
    with run_as(response.json()["tenant"]["id"]):
        [log] = MailLog.objects.all()
    assert log.status == "queued" and mail.outbox == []
    # What the worker (or `manage.py better_mail send-due`) does.
    assert better_mail.send_due() == 1
    assert [m.to for m in mail.outbox] == [["carol@initech.test"]]
