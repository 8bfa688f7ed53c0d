"""The mail log admin: every tenant for superusers, bounded counts, indexed filters and search,
the resend action, the stored message, and the template previews."""

from __future__ import annotations

import html
import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from better_mail.models import MailLog, MailStatus
from better_tenant import run_as_system
from tests.mail.test_preview import GOOD, INVALID, templates  # noqa: F401

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:better_mail_maillog_changelist")
TEMPLATES = reverse("admin:better_mail_maillog_templates")


def preview_url(name: str) -> str:
    return reverse("admin:better_mail_maillog_template_preview", args=[name])


def change_url(log: MailLog) -> str:
    return reverse("admin:better_mail_maillog_change", args=[log.pk])


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
    return {
        "stored": add(
            subject="Welcome, Ada",
            to=["ada@example.com"],
            tenant_id=tenant.pk,
            provider_message_id="msg-ada-1",
            html_body="<html><body><p>Hello <b>Ada</b></p></body></html>",
            text_body="Hello Ada",
            tags=["onboarding"],
            metadata={"campaign": "spring"},
            created_at=base - timedelta(minutes=3),
        ),
        "plain": add(
            template="reset",
            subject="Reset your password",
            to=["bob@example.com", "carol@example.com"],
            tenant_id=other_tenant.pk,
            provider_message_id="msg-bob-2",
            created_at=base - timedelta(minutes=2),
        ),
        "failed": add(
            template="reset",
            subject="Reset again",
            to=["dave@example.com"],
            status=MailStatus.FAILED,
            error="SMTPRecipientsRefused: 550",
            sent_at=None,
            created_at=base - timedelta(minutes=1),
        ),
        "queued": add(
            template="welcome",
            subject="Not yet",
            to=["erin@example.com"],
            status=MailStatus.QUEUED,
            sent_at=None,
            html_body="<p>queued</p>",
            payload={"html": "<p>queued</p>", "text": "queued", "headers": {}, "attachments": []},
            created_at=base,
        ),
    }


def listed(response) -> list[str]:
    """Subjects on the changelist page, in order."""
    return re.findall(r'<td class="field-subject">([^<]*)</td>', response.content.decode())


def all_logs() -> list[MailLog]:
    with run_as_system():
        return list(MailLog.objects.order_by("created_at"))


def test_superuser_sees_every_tenants_mails_newest_first(admin_client, mails):
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert listed(response) == ["Not yet", "Reset again", "Reset your password", "Welcome, Ada"]
    body = response.content.decode()
    assert "bob@example.com, carol@example.com" in body
    assert f'href="{TEMPLATES}"' in body
    assert 'class="toplinks"' not in body  # no date hierarchy


def test_staff_without_system_mode_sees_no_foreign_rows(client, mails):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_maillog"))
    client.force_login(user)
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    # No tenant in scope: row-level security hides every tenant's rows and the untenanted ones.
    assert listed(response) == []


def test_changelist_never_counts_the_whole_table(admin_client, mails):
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get(CHANGELIST).status_code == 200
        assert admin_client.get(CHANGELIST, {"status__exact": "failed"}).status_code == 200
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert counts
    for sql in counts:
        assert "LIMIT 10001" in sql, sql


def test_filters_by_status_and_template(admin_client, mails):
    response = admin_client.get(CHANGELIST, {"status__exact": "failed"})
    assert listed(response) == ["Reset again"]
    response = admin_client.get(CHANGELIST, {"template": "reset"})
    assert listed(response) == ["Reset again", "Reset your password"]
    # The template filter offers the templates in the log (a skip scan), nothing else.
    body = response.content.decode()
    assert sorted(set(re.findall(r'href="\?template=(\w+)"', body))) == ["reset", "welcome"]


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("carol@example.com", ["Reset your password"]),
        ("ada@example.com", ["Welcome, Ada"]),
        ("ada@", []),  # recipients match exactly
        ("msg-bob-2", ["Reset your password"]),
        ("msg-*", ["Reset your password", "Welcome, Ada"]),
        ("msg-b*", ["Reset your password"]),
        ("nothing-like-it", []),
    ],
)
def test_search_is_exact_or_prefix(admin_client, mails, term, expected):
    assert listed(admin_client.get(CHANGELIST, {"q": term})) == expected


def test_search_by_mail_id(admin_client, mails):
    log = mails["failed"]
    assert listed(admin_client.get(CHANGELIST, {"q": str(log.pk)})) == ["Reset again"]
    assert listed(admin_client.get(CHANGELIST, {"q": str(uuid.uuid4())})) == []


def test_searches_are_index_friendly(mails):
    from better_mail.admin import MailLogAdmin

    model_admin = MailLogAdmin(MailLog, None)
    sql = {}
    with run_as_system():
        for term in ("msg-*", "ada@example.com", "msg-bob-2"):
            qs, _ = model_admin.get_search_results(None, MailLog.objects.all(), term)
            sql[term] = str(qs.query).split(" WHERE ", 1)[1]
    # Left-anchored and case-sensitive (no UPPER(), no leading wildcard); equality otherwise.
    assert sql["msg-*"].startswith('"mail_logs"."provider_message_id"::text LIKE msg-% ORDER')
    assert sql["ada@example.com"].startswith('"mail_logs"."to" @> (ARRAY[ada@example.com])')
    assert sql["msg-bob-2"].startswith('"mail_logs"."provider_message_id" = msg-bob-2')


def test_resend_queues_a_copy_of_stored_bodies(
    admin_client, mails, django_capture_on_commit_callbacks
):
    stored = mails["stored"]
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(
            CHANGELIST,
            {"action": "resend_action", "_selected_action": [str(stored.pk)]},
            follow=True,
        )
    assert response.status_code == 200
    assert "Queued 1 new mail." in response.content.decode()
    assert len(callbacks) == 1  # dispatched after commit, like any send
    copy = [log for log in all_logs() if log.metadata.get("resent_from") == str(stored.pk)]
    assert len(copy) == 1
    copy = copy[0]
    assert copy.pk != stored.pk and copy.status == MailStatus.QUEUED
    assert copy.tenant_id == stored.tenant_id
    assert (copy.template, copy.subject, copy.to) == (stored.template, stored.subject, stored.to)
    assert copy.payload["html"] == stored.html_body and copy.payload["text"] == "Hello Ada"
    assert copy.tags == ["onboarding"] and copy.metadata["campaign"] == "spring"


def test_resend_names_the_logs_it_cannot_resend(admin_client, mails):
    chosen = [mails["plain"], mails["failed"], mails["queued"]]
    response = admin_client.post(
        CHANGELIST,
        {"action": "resend_action", "_selected_action": [str(log.pk) for log in chosen]},
        follow=True,
    )
    body = html.unescape(response.content.decode())
    assert "3 mails could not be resent:" in body
    for log in chosen:
        assert str(log.pk) in body
    assert "its bodies were not stored" in body
    assert "it is still queued and will be sent" in body
    assert "Queued" not in body.split("could not be resent")[0].split("messagelist")[-1]
    assert len(all_logs()) == 4  # nothing new


def test_resend_needs_the_change_permission(client, mails):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_maillog"))
    client.force_login(user)
    response = client.get(CHANGELIST)
    assert "resend_action" not in response.content.decode()


def test_detail_shows_the_stored_message_read_only(admin_client, mails):
    response = admin_client.get(change_url(mails["stored"]))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'srcdoc="&lt;html&gt;&lt;body&gt;&lt;p&gt;Hello &lt;b&gt;Ada' in body
    assert 'id="mp-mobile"' in body and "Mobile (375 px)" in body
    assert '<pre class="mp-text">Hello Ada</pre>' in body
    assert "&quot;campaign&quot;: &quot;spring&quot;" in body
    assert 'name="_save"' not in body  # read-only


def test_detail_without_bodies_links_the_template_preview(admin_client, mails):
    body = admin_client.get(change_url(mails["plain"])).content.decode()
    assert "The bodies were not stored" in body
    assert f'href="{preview_url("reset")}"' in body
    assert "<iframe" not in body


def test_admin_template_list_and_previews(admin_client, templates):  # noqa: F811
    response = admin_client.get(TEMPLATES)
    assert response.status_code == 200
    body = response.content.decode()
    for name in (GOOD, INVALID):
        assert f'href="{preview_url(name)}"' in body
    response = admin_client.get(preview_url(GOOD))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Welcome to Acme, Ada &lt;Lovelace&gt;" in body
    assert "Mobile (375 px)" in body and "Desktop (700 px)" in body and "<iframe" in body
    assert "Text part" in body
    response = admin_client.get(preview_url(INVALID))
    assert response.status_code == 200
    assert "must be int, got str" in html.unescape(response.content.decode())
    assert admin_client.get(preview_url("no_such_template")).status_code == 404


def test_template_previews_are_for_staff_with_view_permission(client, templates):  # noqa: F811
    assert client.get(TEMPLATES).status_code == 302  # to the login page
    user = User.objects.create_user("nobody", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get(TEMPLATES).status_code == 403
    assert client.get(preview_url(GOOD)).status_code == 403
