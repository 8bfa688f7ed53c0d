"""Console product ``mail``: the log and its filters, one mail, resend, counts, templates."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

import better_mail as mail
from better_console.exceptions import ConsoleError
from better_console.registry import get_product
from better_mail.models import MailLog, MailStatus
from better_mail.templates import MailTemplate, registry
from better_tenant import run_as, run_as_system
from tests.console.products_support import call, ok

pytestmark = pytest.mark.django_db

TEMPLATE = "console_invite"


@pytest.fixture(autouse=True)
def invite_template():
    class ConsoleInvite(MailTemplate):
        name = TEMPLATE
        subject = "Join {{ team }}"
        team: str
        seats: int = 3
        inviter: str | None
        mjml = (
            "<mjml><mj-body><mj-section><mj-column><mj-text>Join {{ team }}</mj-text>"
            "</mj-column></mj-section></mj-body></mjml>"
        )
        preview_data = {"team": "Acme"}

    yield ConsoleInvite
    registry.unregister(TEMPLATE)


def add(**fields) -> MailLog:
    now = timezone.now()
    values = {
        "template": "welcome",
        "to": ["ada@example.com"],
        "from_email": "no-reply@acme.example",
        "subject": "Welcome",
        "status": MailStatus.SENT,
        "created_at": now,
        "sent_at": now,
        **fields,
    }
    with run_as_system():
        return MailLog.objects.create(**values)


@pytest.fixture
def mails(tenant, other_tenant):
    base = timezone.now()
    with run_as(tenant):
        queued = mail.send(TEMPLATE, to="zoe@example.com", team="Acme")
    return {
        "queued": queued,
        "stored": add(
            tenant_id=tenant.pk,
            to=["ada@example.com"],
            html_body="<p>Hello Ada</p>",
            text_body="Hello Ada",
            metadata={"campaign": "spring"},
            created_at=base - timedelta(minutes=3),
        ),
        "plain": add(
            template="reset",
            to=["bob@example.com", "carol@example.com"],
            tenant_id=other_tenant.pk,
            created_at=base - timedelta(minutes=2),
        ),
        "failed": add(
            template="reset",
            to=["dave@example.com"],
            status=MailStatus.FAILED,
            error="SMTPRecipientsRefused: 550",
            tenant_id=other_tenant.pk,
            created_at=base - timedelta(days=3),
            sent_at=None,
        ),
    }


def logs(**query):
    return ok(call("mail", "GET", "/logs", query=query))["entries"]


def test_the_product_declares_each_route_with_its_permission():
    product = get_product("mail")
    assert {(e.method, e.path, e.required_permission) for e in product.endpoints} == {
        ("GET", "/logs", "read"),
        ("GET", "/logs/:id", "read"),
        ("POST", "/logs/:id/resend", "write"),
        ("POST", "/logs/:id/requeue", "write"),
        ("GET", "/stats", "read"),
        ("GET", "/templates", "read"),
    }


def test_logs_list_every_tenant_newest_first(mails, tenant):
    data = logs()
    assert [m["id"] for m in data] == [
        str(mails[name].pk) for name in ("queued", "plain", "stored", "failed")
    ]
    first = data[0]
    assert (first["template"], first["to"], first["status"]) == (
        TEMPLATE,
        ["zoe@example.com"],
        "queued",
    )
    assert first["tenantId"] == str(tenant.pk)
    assert first["subject"] == "Join Acme"
    assert {"fromEmail", "replyTo", "providerMessageId", "createdAt", "sentAt"} <= set(first)
    assert "htmlBody" not in first and "payload" not in first


def test_tenant_id_narrows_the_log(mails, tenant, other_tenant):
    mine = logs(tenantId=tenant.pk)
    assert {m["id"] for m in mine} == {str(mails["queued"].pk), str(mails["stored"].pk)}
    theirs = logs(tenantId=other_tenant.pk)
    assert {m["tenantId"] for m in theirs} == {str(other_tenant.pk)} and len(theirs) == 2


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "failed"}, ["failed"]),
        ({"template": "reset"}, ["plain", "failed"]),
        ({"to": "carol@example.com"}, ["plain"]),
        ({"since": "1d"}, ["queued", "plain", "stored"]),
        ({"template": "reset", "since": "1h"}, ["plain"]),
    ],
)
def test_log_filters(mails, query, expected):
    assert [m["id"] for m in logs(**query)] == [str(mails[name].pk) for name in expected]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"status": "lost"}, "INVALID_FILTER"),
        ({"since": "last week"}, "INVALID_FILTER"),
        ({"tenantId": "42"}, "INVALID_ID"),
        ({"limit": "0"}, "INVALID_LIMIT"),
    ],
)
def test_bad_log_filters_are_400s(query, code):
    with pytest.raises(ConsoleError) as info:
        call("mail", "GET", "/logs", query=query)
    assert (info.value.status, info.value.code) == (400, code)


def test_log_pages(mails):
    first = ok(call("mail", "GET", "/logs", query={"limit": 3}))
    rest = ok(call("mail", "GET", "/logs", query={"limit": 3, "cursor": first["nextCursor"]}))
    assert [m["id"] for m in first["entries"] + rest["entries"]] == [m["id"] for m in logs()]
    assert rest["hasNextPage"] is False and "nextCursor" not in rest


def test_one_mail_shows_bodies_metadata_and_isolation(mails, other_tenant):
    stored = mails["stored"]
    body = ok(call("mail", "GET", f"/logs/{stored.pk}"))
    assert (body["htmlBody"], body["textBody"]) == ("<p>Hello Ada</p>", "Hello Ada")
    assert body["metadata"] == {"campaign": "spring"}
    assert body["recipientStatus"] == {} and body["events"] == []
    with pytest.raises(ConsoleError) as info:
        call("mail", "GET", f"/logs/{stored.pk}", query={"tenantId": other_tenant.pk})
    assert (info.value.status, info.value.code) == (404, "NOT_FOUND")
    with pytest.raises(ConsoleError) as info:
        call("mail", "GET", "/logs/x")
    assert (info.value.status, info.value.code) == (400, "INVALID_ID")


def test_resend_queues_a_copy_in_the_same_tenant(mails, tenant):
    stored = mails["stored"]
    body = ok(call("mail", "POST", f"/logs/{stored.pk}/resend"), 202)
    assert body["id"] != str(stored.pk) and body["status"] == "queued"
    with run_as_system():
        copy = MailLog.objects.get(pk=body["id"])
    assert copy.tenant_id == tenant.pk
    assert copy.to == ["ada@example.com"] and copy.html_body == "<p>Hello Ada</p>"
    assert copy.metadata["resent_from"] == str(stored.pk)


@pytest.mark.parametrize("name", ["plain", "queued"])
def test_resend_refuses_what_cannot_be_resent(mails, name):
    with pytest.raises(ConsoleError) as info:
        call("mail", "POST", f"/logs/{mails[name].pk}/resend")
    assert (info.value.status, info.value.code) == (409, "RESEND_REFUSED")
    assert str(mails[name].pk) in info.value.error
    with run_as_system():
        assert MailLog.objects.count() == 4


def test_resend_of_an_unknown_mail_is_a_404():
    with pytest.raises(ConsoleError) as info:
        call("mail", "POST", f"/logs/{uuid.uuid4()}/resend")
    assert info.value.status == 404


def test_stats_count_every_status(mails, tenant):
    body = ok(call("mail", "GET", "/stats"))
    assert body["total"] == 4
    assert body["byStatus"]["sent"] == 2
    assert (body["byStatus"]["queued"], body["byStatus"]["failed"]) == (1, 1)
    assert set(body["byStatus"]) == set(MailStatus.values)
    mine = ok(call("mail", "GET", "/stats", query={"tenantId": tenant.pk, "since": "1d"}))
    assert (mine["total"], mine["byStatus"]["sent"], mine["byStatus"]["queued"]) == (2, 1, 1)


def test_templates_list_their_variables():
    data = ok(call("mail", "GET", "/templates"))
    [invite] = [t for t in data if t["name"] == TEMPLATE]
    assert invite["subject"] == "Join {{ team }}"
    assert invite["hasPreviewData"] is True and invite["hasText"] is False
    assert invite["variables"] == [
        {"name": "team", "type": "str", "required": True, "default": None},
        {"name": "seats", "type": "int", "required": False, "default": 3},
        {"name": "inviter", "type": "str | None", "required": False, "default": None},
    ]
