"""``manage.py better_webhooks``: worker, replay, check, generate-key, flag errors."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

import better_webhooks as webhooks
from better_webhooks import crypto
from better_webhooks.conf import webhook_settings
from better_webhooks.db import system_scope
from better_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("better_webhooks", *args, stdout=out)
    return out.getvalue()


def fail_all():
    with system_scope():
        WebhookDelivery.objects.update(status="failed", attempts=5, last_error="HTTP 500")


def test_generate_key():
    key = run("generate-key", "--version", "2").strip()
    assert crypto.parse_key(key)[0] == "v2"


def test_worker_once_delivers(db, receiver):
    webhooks.create_endpoint(receiver.url(), ["ping"])
    webhooks.send("ping", {"n": 1})
    output = run("worker", "--once", "--concurrency", "2")
    assert "1 attempted, 1 delivered" in output
    assert len(receiver.requests) == 1


def test_replay_filters(db, receiver):
    first, _ = webhooks.create_endpoint(receiver.url(), ["ping"])
    _second, _ = webhooks.create_endpoint(receiver.url("/other"), ["ping"])
    webhooks.send("ping", {"n": 1})
    webhooks.send("ping", {"n": 2})
    fail_all()
    with system_scope():
        old = WebhookDelivery.objects.filter(endpoint=first, message__payload__n=1).get()
        WebhookDelivery.objects.filter(id=old.id).update(
            created_at=timezone.now() - timedelta(days=3)
        )
    assert "1 failed deliveries would be" in run(
        "replay", "--failed", "--since", "24h", "--endpoint", str(first.id), "--dry-run"
    )
    assert "1 failed deliveries queued again" in run(
        "replay", "--since", "24h", "--endpoint", str(first.id)
    )
    with system_scope():
        replayed = WebhookDelivery.objects.get(status="pending")
    # A fresh set of attempts on top of the ones made: the attempt log keeps counting.
    assert replayed.endpoint_id == first.id and replayed.attempts == 5
    assert replayed.max_attempts == 5 + webhook_settings.MAX_ATTEMPTS
    assert "3 failed deliveries queued again" in run("replay")
    run("worker", "--until-idle")
    with system_scope():
        assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}
        assert set(WebhookDeliveryAttempt.objects.values_list("attempt", flat=True)) == {6}


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["replay", "--since", "yesterday-ish"], "--since"),
        (["replay", "--endpoint", "not-a-uuid"], "--endpoint"),
        (["replay", "--bogus"], "--bogus"),
        (["worker", "--concurrency", "0"], "--concurrency"),
        (["worker", "--interval", "-1"], "--interval"),
        (["generate-key", "--version", "0"], "--version"),
    ],
)
def test_bad_flags_name_the_flag(db, args, flag):
    with pytest.raises(CommandError, match=flag):
        run(*args)


def test_database_other_than_the_webhook_alias_is_refused(settings):
    # Every handler works on BETTER_WEBHOOKS['DATABASE']; another --database would be ignored.
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "DATABASE": "webhooks"}
    with pytest.raises(CommandError, match=r"live on 'webhooks'"):
        run("generate-key", "--database", "default")


def test_check(db):
    endpoint, _ = webhooks.create_endpoint("https://a.example.com/h", ["ping"])
    output = run("check")
    assert "1 endpoints" in output and "every endpoint secret decrypts" in output
    with system_scope():
        row = WebhookEndpoint.objects.get(id=endpoint.id)
        row.secrets = [
            {**row.secrets[0], "ciphertext": row.secrets[0]["ciphertext"][:-8] + "A" * 8}
        ]
        row.save()
    with pytest.raises(CommandError, match="check failed"):
        run("check")
