"""The console in the Django admin: dashboard figures and links, console levels, sessions admin."""

from __future__ import annotations

import html
import re
from datetime import UTC, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Permission
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from better_audit.models import AuditLog
from better_console.admin import ConsoleSessionAdmin, MagicLinkAdmin
from better_console.dashboard import dashboard_data, window
from better_console.models import ConsoleSession, MagicLink
from better_console.permissions import (
    console_level,
    console_levels,
    has_console_level,
    require_console_level,
)
from better_mail.models import MailLog, MailStatus
from better_tenant import run_as_system
from better_tenant.api import create_tenant
from better_webhooks.endpoints import create_endpoint, disable_endpoint
from better_webhooks.models import WebhookDelivery, WebhookMessage
from tests.support.audit import add_rows

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("admin:better_console_dashboard")
INDEX = reverse("admin:index")
SESSIONS = reverse("admin:better_console_consolesession_changelist")
MAGIC_LINKS = reverse("admin:better_console_magiclink_changelist")
TENANTS = reverse("admin:better_tenant_tenant_changelist")
AUDIT_LOGS = reverse("admin:better_audit_auditlog_changelist")
AUDIT_DASHBOARD = reverse("admin:better_audit_auditlog_dashboard")
ENDPOINTS = reverse("admin:better_webhooks_webhookendpoint_changelist")
DELIVERIES = reverse("admin:better_webhooks_webhookdelivery_changelist")
MAIL_LOGS = reverse("admin:better_mail_maillog_changelist")
OUTSIDE_WINDOW = timedelta(days=40)


# --- data ---------------------------------------------------------------------------------------


def seed_console_data() -> dict[str, Any]:
    """Two tenants and rows of every app, some of them older than the dashboard's window.

    Inside the window: audit events 3 today and 2 two days ago; deliveries 3 delivered, 1 failed,
    1 pending (success rate 75.0%); endpoints 1 active, 1 disabled; mails 2 sent, 1 failed,
    1 bounced, 1 queued. Outside it: one of each, which no figure may count.
    """
    acme = create_tenant("Acme", "acme")
    globex = create_tenant("Globex", "globex")
    now = timezone.now()
    with run_as_system():
        add_rows(
            *[
                AuditLog(
                    table_name="projects",
                    operation="INSERT",
                    record_id=str(n),
                    tenant_id=(acme if n % 2 else globex).pk,
                    timestamp=when,
                )
                for n, when in enumerate(
                    [now] * 3 + [now - timedelta(days=2)] * 2 + [now - OUTSIDE_WINDOW]
                )
            ]
        )
        active, _ = create_endpoint("https://acme.example.com/hooks", ["*"], tenant=acme)
        retired, _ = create_endpoint("https://globex.example.com/hooks", ["*"], tenant=globex)
        disable_endpoint(retired, reason="retired")
        deliveries = [
            ("delivered", active, now),
            ("delivered", active, now),
            ("delivered", retired, now - timedelta(days=3)),
            ("failed", retired, now),
            ("pending", active, now),
            ("failed", active, now - OUTSIDE_WINDOW),
        ]
        for n, (status, endpoint, created) in enumerate(deliveries):
            message = WebhookMessage.objects.create(
                id=f"msg_{n}", event="order.created", payload={"n": n}, tenant_id=endpoint.tenant_id
            )
            WebhookDelivery.objects.create(
                message=message,
                endpoint=endpoint,
                event="order.created",
                status=status,
                tenant_id=endpoint.tenant_id,
                created_at=created,
            )
        mails = [
            (MailStatus.SENT, acme, now),
            (MailStatus.SENT, globex, now - timedelta(days=1)),
            (MailStatus.FAILED, acme, now),
            (MailStatus.BOUNCED, globex, now),
            (MailStatus.QUEUED, acme, now),
            (MailStatus.BOUNCED, acme, now - OUTSIDE_WINDOW),
        ]
        for status, tenant, created in mails:
            MailLog.objects.create(
                template="welcome",
                to=["ada@example.com"],
                subject="Welcome",
                status=status,
                tenant_id=tenant.pk,
                created_at=created,
            )
    return {"tenants": (acme, globex), "now": now}


EXPECTED_FIGURES = {
    "tenants": "2",
    "audit-events": "5",
    "webhook-success-rate": "75.0%",
    "webhook-delivered": "3",
    "webhook-finished": "4",
    "webhook-failed": "1",
    "webhook-pending": "1",
    "webhook-delivering": "0",
    "endpoints-active": "1",
    "endpoints-disabled": "1",
    "mail-total": "5",
    "mail-sent": "2",
    "mail-failed": "1",
    "mail-bounced": "1",
    "mail-queued": "1",
    "mail-delivered": "0",
}


def figures(content: str) -> dict[str, str]:
    """Every ``data-figure`` element of a dashboard page and its text."""
    found = re.findall(r'data-figure="([\w-]+)"[^>]*>([^<]*)<', content)
    return {name: html.unescape(text).strip() for name, text in found}


@pytest.fixture
def seeded() -> dict[str, Any]:
    return seed_console_data()


def staff(django_user_model: Any, name: str, *codenames: str) -> Any:
    user = django_user_model.objects.create_user(name, password="pw", is_staff=True)
    if codenames:
        user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    # A fresh instance: the permission cache of the old one predates the grants.
    return django_user_model.objects.get(pk=user.pk)


# --- the dashboard ------------------------------------------------------------------------------


def test_dashboard_shows_the_real_figures(admin_client, seeded):
    response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    content = response.content.decode()
    shown = figures(content)
    for name, value in EXPECTED_FIGURES.items():
        assert shown.get(name) == value, (name, shown.get(name))
    assert "Console dashboard" in content


def test_dashboard_chart_has_a_bar_per_day_with_its_count(admin_client, seeded):
    content = admin_client.get(DASHBOARD).content.decode()
    chart = re.search(
        r'<section class="console-wide" id="console-audit-chart">(.*?)</section>', content, re.S
    )
    assert chart is not None
    svg = chart.group(1)
    assert svg.count("<svg") == 1 and svg.count("<rect") == 30
    today = seeded["now"].astimezone(UTC).date()
    assert f"<title>{today.isoformat()}: 3</title>" in svg
    assert f"<title>{(today - timedelta(days=2)).isoformat()}: 2</title>" in svg
    assert f"<title>{(today - timedelta(days=1)).isoformat()}: 0</title>" in svg


def test_dashboard_links_to_each_apps_admin(admin_client, seeded):
    content = html.unescape(admin_client.get(DASHBOARD).content.decode())
    for url in (
        TENANTS,
        AUDIT_LOGS,
        AUDIT_DASHBOARD,
        ENDPOINTS,
        DELIVERIES,
        f"{DELIVERIES}?status__exact=failed",
        f"{ENDPOINTS}?status__exact=disabled",
        MAIL_LOGS,
        f"{MAIL_LOGS}?status__exact=bounced",
    ):
        assert f'href="{url}"' in content, url


def test_filtered_links_open_the_rows_they_count(admin_client, seeded):
    response = admin_client.get(f"{MAIL_LOGS}?status__exact=bounced")
    assert response.status_code == 200
    # Two bounced mails exist; the changelist has no date window, the dashboard has.
    assert len(response.context["cl"].result_list) == 2
    response = admin_client.get(f"{DELIVERIES}?status__exact=failed")
    assert len(response.context["cl"].result_list) == 2


def test_data_counts_only_the_window(seeded):
    data = dashboard_data(days=1)
    assert data["audit"]["total"] == 3
    assert [row["count"] for row in data["audit"]["per_day"]] == [3]
    # Today: two delivered, one failed.
    assert data["webhooks"]["finished"] == 3
    assert data["webhooks"]["success_rate"] == pytest.approx(2 / 3)
    assert data["mail"]["statuses"]["sent"] == 1 and data["mail"]["total"] == 4
    assert data["tenants"] == {"count": 2, "estimated": False}


def test_success_rate_is_none_without_finished_deliveries(db):
    data = dashboard_data()
    assert data["webhooks"]["finished"] == 0 and data["webhooks"]["success_rate"] is None
    assert data["audit"]["total"] == 0 and len(data["audit"]["per_day"]) == 30


def test_empty_dashboard_renders_without_a_rate(admin_client):
    content = admin_client.get(DASHBOARD).content.decode()
    shown = figures(content)
    assert shown["webhook-success-rate"] == "—"
    assert shown["tenants"] == "0" and shown["mail-total"] == "0"


@pytest.mark.parametrize("days", [0, 366, "7", True])
def test_window_refuses_bad_days(days):
    with pytest.raises(ValueError, match="days must be"):
        window(days)


def test_index_lists_console_dashboard(admin_client):
    content = admin_client.get(INDEX).content.decode()
    assert f'href="{DASHBOARD}"' in content
    assert f'href="{SESSIONS}"' in content and f'href="{MAGIC_LINKS}"' in content


# --- console levels -----------------------------------------------------------------------------


def test_levels_of_each_kind_of_user(django_user_model):
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    reader = staff(django_user_model, "reader", "console_read")
    writer = staff(django_user_model, "writer", "console_write")
    boss = staff(django_user_model, "boss", "console_admin", "console_read")
    nobody = staff(django_user_model, "nobody")
    outsider = django_user_model.objects.create_user("outsider", password="pw")
    outsider.user_permissions.add(Permission.objects.get(codename="console_admin"))
    outsider = django_user_model.objects.get(pk=outsider.pk)
    retired = staff(django_user_model, "retired", "console_admin")
    retired.is_active = False
    lapsed_root = django_user_model.objects.create_superuser("lapsed", "l@example.com", "pw")
    lapsed_root.is_staff = False

    assert console_levels(root) == ("read", "write", "admin")
    assert console_levels(reader) == ("read",)
    assert console_levels(writer) == ("read", "write")
    assert console_levels(boss) == ("read", "write", "admin")
    assert console_level(writer) == "write"
    for user in (nobody, outsider, retired, lapsed_root, AnonymousUser(), None):
        assert console_levels(user) == ()
        assert console_level(user) is None
    assert has_console_level(writer, "read") and not has_console_level(writer, "admin")
    with pytest.raises(ValueError, match="Unknown console level"):
        has_console_level(root, "owner")


def test_require_level_raises_permission_denied(django_user_model):
    from django.core.exceptions import PermissionDenied

    reader = staff(django_user_model, "reader", "console_read")
    require_console_level(reader, "read")
    with pytest.raises(PermissionDenied, match="console_write"):
        require_console_level(reader, "write")


def test_staff_with_console_read_sees_every_tenants_figures(client, django_user_model, seeded):
    client.force_login(staff(django_user_model, "reader", "console_read"))
    response = client.get(DASHBOARD)
    assert response.status_code == 200
    shown = figures(response.content.decode())
    for name, value in EXPECTED_FIGURES.items():
        assert shown.get(name) == value, name
    # No view permission on the apps' models: figures, but no links into their admins.
    content = response.content.decode()
    assert f'href="{MAIL_LOGS}' not in content and f'href="{TENANTS}"' not in content


def test_console_read_user_sees_the_entry_in_the_index(client, django_user_model):
    client.force_login(staff(django_user_model, "reader", "console_read"))
    content = client.get(INDEX).content.decode()
    assert f'href="{DASHBOARD}"' in content
    assert client.get(reverse("admin:app_list", args=["better_console"])).status_code == 200


def test_staff_without_console_permissions_is_refused(client, django_user_model):
    client.force_login(staff(django_user_model, "nobody", "view_maillog"))
    assert client.get(DASHBOARD).status_code == 403
    assert f'href="{DASHBOARD}"' not in client.get(INDEX).content.decode()
    assert client.get(SESSIONS).status_code == 403


def test_non_staff_is_sent_to_the_login_page(client, django_user_model):
    user = django_user_model.objects.create_user("outsider", password="pw")
    user.user_permissions.add(Permission.objects.get(codename="console_admin"))
    client.force_login(user)
    response = client.get(DASHBOARD)
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]


def action_names(client: Any, url: str) -> set[str]:
    response = client.get(url)
    assert response.status_code == 200
    return set(response.context["cl"].model_admin.get_actions(response.wsgi_request))


def test_write_actions_need_console_write(client, django_user_model):
    rights = ("view_maillog", "change_maillog", "view_webhookdelivery", "change_webhookdelivery")
    client.force_login(staff(django_user_model, "reader", "console_read", *rights))
    assert "resend_action" not in action_names(client, MAIL_LOGS)
    assert "replay" not in action_names(client, DELIVERIES)
    client.force_login(staff(django_user_model, "writer", "console_write", *rights))
    assert "resend_action" in action_names(client, MAIL_LOGS)
    assert "replay" in action_names(client, DELIVERIES)


# --- sessions and magic links -------------------------------------------------------------------


@pytest.fixture
def sessions() -> dict[str, ConsoleSession]:
    now = timezone.now()
    made = {}
    for name, expires in (("live", now + timedelta(hours=8)), ("old", now - timedelta(hours=1))):
        made[name] = ConsoleSession.objects.create(
            session_id=f"sess_{name}",
            email=f"{name}@example.com",
            token_hash=f"{name:0<64}",
            permissions=["read", "write"],
            expires_at=expires,
        )
    return made


def test_sessions_are_read_only_and_hide_token_hashes(admin_client, sessions):
    content = admin_client.get(SESSIONS).content.decode()
    assert "live@example.com" in content and "old@example.com" in content
    assert "expired" in content and "active" in content
    change = reverse("admin:better_console_consolesession_change", args=[sessions["live"].pk])
    detail = admin_client.get(change).content.decode()
    assert sessions["live"].token_hash not in content + detail
    assert 'name="_save"' not in detail


def test_revoke_needs_console_admin(client, django_user_model, sessions):
    client.force_login(staff(django_user_model, "writer", "console_write"))
    assert "revoke_sessions" not in action_names(client, SESSIONS)
    client.force_login(staff(django_user_model, "boss", "console_admin"))
    assert "revoke_sessions" in action_names(client, SESSIONS)


def test_revoke_ends_the_selected_sessions(client, django_user_model, sessions):
    client.force_login(staff(django_user_model, "boss", "console_admin"))
    before = timezone.now()
    response = client.post(
        SESSIONS,
        {"action": "revoke_sessions", "_selected_action": [str(sessions["live"].pk)]},
        follow=True,
    )
    assert "Revoked 1 session." in response.content.decode()
    live = ConsoleSession.objects.get(pk=sessions["live"].pk)
    assert live.is_expired and live.expires_at >= before
    # An already expired session keeps its own end.
    old = ConsoleSession.objects.get(pk=sessions["old"].pk)
    assert old.expires_at == sessions["old"].expires_at


def test_revoke_refused_to_a_writer_posting_the_action(client, django_user_model, sessions):
    client.force_login(staff(django_user_model, "writer", "console_write"))
    client.post(
        SESSIONS, {"action": "revoke_sessions", "_selected_action": [str(sessions["live"].pk)]}
    )
    assert not ConsoleSession.objects.get(pk=sessions["live"].pk).is_expired


def test_magic_links_page_shows_state_not_code(admin_client):
    now = timezone.now()
    link = MagicLink.objects.create(
        session_id="sess_abc",
        email="ops@example.com",
        code_hash="c" * 64,
        verified_at=now,
        expires_at=now + timedelta(minutes=10),
    )
    content = admin_client.get(MAGIC_LINKS).content.decode()
    assert "ops@example.com" in content and "verified" in content
    detail = admin_client.get(
        reverse("admin:better_console_magiclink_change", args=[link.pk])
    ).content.decode()
    assert link.code_hash not in content + detail


def test_console_models_admins_never_add_change_or_delete(admin_user):
    request = RequestFactory().get("/")
    request.user = admin_user
    from django.contrib import admin

    for model, admin_class in ((ConsoleSession, ConsoleSessionAdmin), (MagicLink, MagicLinkAdmin)):
        model_admin = admin.site._registry[model]
        assert isinstance(model_admin, admin_class)
        assert not model_admin.has_add_permission(request)
        assert not model_admin.has_change_permission(request)
        assert not model_admin.has_delete_permission(request)
