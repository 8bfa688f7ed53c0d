"""``manage.py better_mail``: send-test, check, send-due, and flags that are wrong."""

from __future__ import annotations

import smtplib
from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.core.management import CommandError, call_command
from django.utils import timezone

from better_mail import compiler
from better_mail.lint import lint
from better_mail.models import MailLog, MailStatus
from better_mail.sending import send
from better_mail.templates import MailTemplate, registry
from better_tenant import run_as_system
from tests.mail.backends import use_backend
from tests.mail.test_preview import GOOD, INVALID, Defined, define_templates, templates  # noqa: F401


class RefusingBackend(BaseEmailBackend):
    """Every recipient refused: a permanent failure."""

    def send_messages(self, messages):
        raise smtplib.SMTPRecipientsRefused({"ada@example.com": (550, b"No such user")})


def run(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("better_mail", *args, stdout=out, stderr=StringIO())
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def logs(**filters) -> list[MailLog]:
    with run_as_system():
        return list(MailLog.objects.filter(**filters).order_by("created_at"))


@pytest.fixture
def good_only() -> Defined:
    """Only the template that renders (the failing ones are unregistered at once)."""
    defined = define_templates()
    for name in registry.names():
        if name != GOOD and name.startswith("preview_"):
            registry.unregister(name)
    yield defined
    registry.unregister(GOOD)


# --- send-test -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_send_test_sends_the_preview_data_through_the_email_backend(good_only):
    code, out = run("send-test", "--template", GOOD, "--to", "ada@example.com")
    assert code == 0
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ada@example.com"]
    assert message.subject == "Welcome to Acme, Ada <Lovelace>"
    assert "Hello Ada <Lovelace>, welcome aboard." in message.body
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html" and "Hello Ada &lt;Lovelace&gt;, welcome aboard." in html
    [log] = logs(template=GOOD)
    assert log.status == MailStatus.SENT and log.tenant_id is None and log.sent_at is not None
    assert f"✓ MailLog {log.pk}: sent ({GOOD} to ada@example.com)" in out


@pytest.mark.django_db(transaction=True)
def test_send_test_data_replaces_preview_variables(good_only):
    code, _ = run(
        "send-test",
        "--template",
        GOOD,
        "--to",
        "grace@example.com",
        "--data",
        '{"user_name": "Grace", "product": "Navy"}',
    )
    assert code == 0
    assert [m.subject for m in mail.outbox] == ["Welcome to Navy, Grace"]
    assert "Plan: Scale" in mail.outbox[0].alternatives[0][0]  # the rest of the preview data


@pytest.mark.django_db(transaction=True)
def test_send_test_reports_a_failed_send_and_exits_1(good_only, settings):
    use_backend(settings, f"{__name__}.RefusingBackend")
    code, out = run("send-test", "--template", GOOD, "--to", "ada@example.com")
    assert code == 1
    [log] = logs(template=GOOD)
    assert log.status == MailStatus.FAILED
    assert f"✗ MailLog {log.pk}: failed" in out and "SMTPRecipientsRefused" in out
    assert mail.outbox == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--template", "no_such_template"], "--template: No mail template is named"),
        (["--data", "{oops"], "--data is not valid JSON"),
        (["--data", "[1, 2]"], "--data must be a JSON object of variables; got list"),
        (["--to", "not-an-address"], "--to: to: 'not-an-address' is not an email address"),
        (["--from", "nobody"], "--from: from_email: 'nobody' is not an email address"),
        (["--data", '{"user_name": 7}'], "'user_name' must be str, got int (7)"),
        (["--data", '{"shoe_size": 7}'], "unknown variable 'shoe_size'"),
        (["--tenant", "no-such-tenant"], "--tenant: no tenant has the id or slug"),
    ],
)
def test_send_test_bad_flags(good_only, args, message):
    base = {"--template": GOOD, "--to": "ada@example.com"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    with pytest.raises(CommandError) as caught:
        call_command("better_mail", "send-test", *[x for pair in base.items() for x in pair])
    assert message in str(caught.value)
    assert mail.outbox == [] and logs() == []


def test_send_test_requires_template_and_to():
    with pytest.raises(CommandError, match="--template"):
        call_command("better_mail", "send-test", "--to", "ada@example.com")
    with pytest.raises(CommandError, match="--to"):
        call_command("better_mail", "send-test", "--template", GOOD)


# --- check ---------------------------------------------------------------------------------------


def test_check_passes_when_every_template_renders_and_lints(good_only):
    code, out = run("check")
    assert code == 0, out
    assert f"✓ {GOOD}: Welcome to Acme, Ada <Lovelace>" in out
    assert f"Every template renders and lints ({len(registry)} templates)." in out


def test_check_fails_on_a_broken_template(templates):  # noqa: F811
    code, out = run("check")
    assert code == 1
    lines = out.splitlines()
    assert f"✓ {GOOD}: Welcome to Acme, Ada <Lovelace>" in lines
    for name in ("preview_invalid_data", "preview_undefined", "preview_bad_mjml"):
        assert f"✗ {name}" in lines
    assert "variable 'seats' must be int, got str ('three')" in out
    assert "unknown MJML tag <mj-colum>" in out
    assert f"3 of {len(registry)} templates failed." in out


@pytest.fixture
def layouts(tmp_path, monkeypatch, good_only):
    """A mail/ folder holding a shared layout; the templates a test defines are unregistered."""
    (tmp_path / "base.mjml").write_text(
        "<mjml>\n<mj-head><mj-title>{{ title }}</mj-title></mj-head>\n"
        "<mj-body><mj-section><mj-column>\n{% block content %}{% endblock %}\n"
        '<mj-image src="https://acme.example/logo.png" alt="Acme" />\n'
        "</mj-column></mj-section></mj-body>\n</mjml>\n"
    )
    monkeypatch.setattr(compiler, "mail_dirs", lambda: [tmp_path])
    compiler.clear_caches()
    names: list[str] = []
    yield names
    for name in names:
        registry.unregister(name)
    compiler.clear_caches()


def test_check_passes_for_templates_that_extend_a_layout(layouts):
    class Receipt(MailTemplate):
        name = "layout_receipt"
        title: str = "Receipt"
        amount: str
        subject = "Your receipt for {{ amount }}"
        mjml = """{% extends "base.mjml" %}
{% block content %}<mj-text>You paid {{ amount }}.</mj-text>{% endblock %}"""
        preview_data = {"amount": "$12"}

    layouts.append(Receipt.name)
    assert lint(Receipt) == []
    code, out = run("check")
    assert code == 0, out
    assert "✓ layout_receipt: Your receipt for $12" in out.splitlines()


def test_check_fails_for_a_broken_template_that_extends_a_layout(layouts):
    class Broken(MailTemplate):
        name = "layout_broken"
        title: str = "Broken"
        subject = "Broken"
        mjml = """{% extends "base.mjml" %}
{% block content %}<mj-buton href="https://acme.example">Go</mj-buton>{% endblock %}"""

    layouts.append(Broken.name)
    code, out = run("check")
    assert code == 1
    assert "✗ layout_broken" in out.splitlines()
    assert "unknown MJML tag <mj-buton> at line 4 of the rendered MJML" in out
    assert f"1 of {len(registry)} templates failed." in out


# --- send-due ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_send_due_sends_what_is_due_up_to_the_limit(good_only):
    # In a test transaction nothing commits, so send() leaves the mails queued for send-due.
    for n in range(3):
        send(GOOD, to=f"user{n}@example.com", context={"user_name": f"U{n}"})
    later = send(
        GOOD, to="later@example.com", user_name="L", send_at=timezone.now() + timedelta(hours=1)
    )
    code, out = run("send-due", "--limit", "2")
    assert code == 0 and out.strip() == "Sent 2 mails; 2 still queued."
    assert len(mail.outbox) == 2
    code, out = run("send-due")
    assert out.strip() == "Sent 1 mail; 1 still queued."
    assert sorted(m.to[0] for m in mail.outbox) == [f"user{n}@example.com" for n in range(3)]
    statuses = {log.pk: log.status for log in logs()}
    assert statuses.pop(later.pk) == MailStatus.QUEUED
    assert set(statuses.values()) == {MailStatus.SENT}


# --- wrong flags ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["send-due", "--limit", "0"], "--limit must be at least 1; got 0."),
        (["send-due", "--limit", "many"], "argument --limit: invalid int value: 'many'"),
        (["preview", "--port", "70000", "--noreload"], "--port must be between 0 and 65535"),
        (["preview", "--port", "x"], "argument --port: invalid int value: 'x'"),
        (["check", "--database", "nope"], "--database: no database alias 'nope'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["check", "--verbose-please"], "unrecognized arguments: --verbose-please"),
    ],
)
def test_bad_flags_name_the_flag(args, message):
    with pytest.raises(CommandError) as caught:
        call_command("better_mail", *args)
    assert message in str(caught.value)


def test_preview_reports_a_port_in_use():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CommandError) as caught:
            call_command("better_mail", "preview", "--port", str(port), "--noreload")
    assert f"--host/--port: cannot listen on 127.0.0.1:{port}" in str(caught.value)
