"""The admin markup the apps build carries classes, not inline styles (strict CSPs refuse them)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib import admin

from better_core.admin import pretty_json


def test_json_blocks_are_styled_by_class():
    html = pretty_json({"b": 1, "a": [1, 2]}, "extra")
    assert html.startswith('<pre class="better-json extra">')
    assert "style=" not in html


@pytest.mark.parametrize(
    ("label", "stylesheet"),
    [
        ("better_audit.AuditLog", "better_audit/admin.css"),
        ("better_mail.MailLog", "better_mail/admin.css"),
        ("better_webhooks.WebhookEndpoint", "better_webhooks/admin.css"),
        ("better_webhooks.WebhookDelivery", "better_webhooks/admin.css"),
        ("better_console.ConsoleSession", "better_console/admin.css"),
        ("better_console.MagicLink", "better_console/admin.css"),
    ],
)
def test_each_admin_loads_its_apps_stylesheet(label, stylesheet):
    from django.apps import apps

    model_admin = admin.site._registry[apps.get_model(label)]
    assert stylesheet in str(model_admin.media)


def test_states_and_statuses_are_classes():
    from better_console.admin import ConsoleSessionAdmin
    from better_console.models import ConsoleSession
    from better_mail.admin import MailLogAdmin
    from better_mail.models import MailLog, MailStatus

    session_admin = admin.site._registry[ConsoleSession]
    assert isinstance(session_admin, ConsoleSessionAdmin)
    expired = session_admin.state(SimpleNamespace(is_expired=True))
    assert expired == '<strong class="console-bad">expired</strong>'
    mail_admin = admin.site._registry[MailLog]
    assert isinstance(mail_admin, MailLogAdmin)
    failed = MailLog(status=MailStatus.FAILED)
    assert mail_admin.status_display(failed).startswith('<strong class="mail-bad">')
    queued = MailLog(status=MailStatus.QUEUED)
    assert mail_admin.status_display(queued).startswith('<strong class="mail-plain">')
