"""better_mail alone: send, the log without a tenant, its commands, checks and admin pages."""

from __future__ import annotations

import io

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission, User
from django.core import checks, mail
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

import better_mail
from better_mail.models import MailLog, MailStatus
from better_tenant.shortcuts import tenancy_installed

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_outbox() -> None:
    mail.outbox = []


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("better_mail", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_only_better_mail_of_the_apps_is_installed():
    names = ("tenant", "audit", "console", "webhooks", "mail")
    assert {name for name in names if apps.is_installed(f"better_{name}")} == {"mail"}
    assert tenancy_installed() is False


def test_send_logs_then_delivers_after_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        log = better_mail.send("welcome", to="ada@example.com", person="Ada")
        assert log.status == MailStatus.QUEUED and mail.outbox == []
    [message] = mail.outbox
    assert message.subject == "Welcome, Ada"
    assert message.to == ["ada@example.com"]
    assert message.from_email == "no-reply@example.com"
    assert "your workspace is ready" in message.body
    # No tenant in scope, and none could be: the row belongs to no tenant.
    [row] = MailLog.objects.all()
    assert (row.pk, row.status, row.tenant_id) == (log.pk, MailStatus.SENT, None)
    assert row.attempts == 1 and row.sent_at is not None


def test_the_log_has_no_tenant_policies():
    with connection.cursor() as cursor:
        cursor.execute("SELECT relrowsecurity FROM pg_class WHERE relname = 'mail_logs'")
        assert cursor.fetchone() == (False,)


def test_send_due_sends_what_the_test_transaction_left_queued():
    # Nothing commits in a test transaction, so the mails wait for the polling runner.
    for person in ("Ada", "Bob"):
        better_mail.send("welcome", to=f"{person.lower()}@example.com", person=person)
    assert run("send-due") == "Sent 2 mails; 0 still queued.\n"
    assert sorted(m.subject for m in mail.outbox) == ["Welcome, Ada", "Welcome, Bob"]
    assert set(MailLog.objects.values_list("status", flat=True)) == {MailStatus.SENT}


@pytest.mark.django_db(transaction=True)
def test_send_test_sends_the_preview_now():
    out = run("send-test", "--template", "welcome", "--to", "ops@example.com")
    [row] = MailLog.objects.all()
    assert out.startswith(f"✓ MailLog {row.pk}: sent (welcome to ops@example.com)")
    assert row.tenant_id is None
    assert [m.subject for m in mail.outbox] == ["Welcome, Ada"]


def test_send_test_refuses_a_tenant_without_better_tenant():
    with pytest.raises(CommandError, match=r"--tenant needs better_tenant in INSTALLED_APPS"):
        run("send-test", "--template", "welcome", "--to", "ops@example.com", "--tenant", "acme")
    assert not MailLog.objects.exists() and mail.outbox == []


def test_the_check_command_renders_the_template():
    out = run("check")
    assert "✓ welcome: Welcome, Ada" in out
    assert "Every template renders and lints (1 template)." in out


def test_system_checks_pass_with_no_better_tenant_ids():
    call_command("check", databases=["default"], stdout=io.StringIO())
    messages = checks.run_checks(databases=["default"])
    assert [m for m in messages if m.is_serious()] == []
    assert [m.id for m in messages if (m.id or "").startswith("better_tenant")] == []


def test_admin_pages_render(admin_client):
    log = better_mail.send("welcome", to="ada@example.com", person="Ada")
    changelist = admin_client.get(reverse("admin:better_mail_maillog_changelist"))
    assert changelist.status_code == 200 and "ada@example.com" in changelist.content.decode()
    change = admin_client.get(reverse("admin:better_mail_maillog_change", args=[log.pk]))
    assert change.status_code == 200 and "Welcome, Ada" in change.content.decode()
    listing = admin_client.get(reverse("admin:better_mail_maillog_templates"))
    assert listing.status_code == 200 and "welcome" in listing.content.decode()
    preview = admin_client.get(
        reverse("admin:better_mail_maillog_template_preview", args=["welcome"])
    )
    assert preview.status_code == 200 and "your workspace is ready" in preview.content.decode()


def test_staff_may_resend_without_a_console_level(client, settings):
    # With better_console installed, resending also takes the console's write level.
    settings.BETTER_MAIL = {**settings.BETTER_MAIL, "STORE_BODIES": True}
    clerk = User.objects.create_user("clerk", is_staff=True)
    clerk.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_maillog", "change_maillog"])
    )
    client.force_login(clerk)
    sent = better_mail.send("welcome", to="ada@example.com", person="Ada")
    run("send-due")
    changelist = reverse("admin:better_mail_maillog_changelist")
    assert "resend_action" in client.get(changelist).content.decode()
    response = client.post(
        changelist, {"action": "resend_action", "_selected_action": [str(sent.pk)]}, follow=True
    )
    assert "Queued 1 new mail." in response.content.decode()
    copy = MailLog.objects.exclude(pk=sent.pk).get()
    assert copy.metadata["resent_from"] == str(sent.pk)
    assert (copy.status, copy.tenant_id, copy.subject) == (MailStatus.QUEUED, None, "Welcome, Ada")
