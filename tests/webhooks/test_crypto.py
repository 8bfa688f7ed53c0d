"""Secrets at rest: AES-GCM round trip, versioned keys, re-encryption and the system checks."""

from __future__ import annotations

import io

import pytest

import better_webhooks as webhooks
from better_webhooks import crypto
from better_webhooks.checks import check_configuration
from better_webhooks.db import system_scope
from better_webhooks.exceptions import ConfigurationError, EncryptionError
from better_webhooks.models import WebhookEndpoint

KEY1 = "v1:" + "0123456789abcdef" * 4
KEY2 = "v2:" + "fedcba9876543210" * 3 + "00112233445566ff"


def use_keys(settings, *keys):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "ENCRYPTION_KEYS": list(keys)}


def stored(endpoint):
    with system_scope():
        return WebhookEndpoint.objects.get(id=endpoint.id)


def test_round_trip_and_nothing_in_clear(db):
    endpoint, secret = webhooks.create_endpoint("https://a.example.com/h", ["ping"])
    row = stored(endpoint)
    assert secret not in str(row.secrets)
    assert row.secrets[0]["key_id"] == "v1" and row.secrets[0]["expires_at"] is None
    assert crypto.endpoint_secrets(row) == [secret]


def test_ciphertext_is_bound_to_its_endpoint(db):
    first, _ = webhooks.create_endpoint("https://a.example.com/h", ["ping"])
    second, _ = webhooks.create_endpoint("https://b.example.com/h", ["ping"])
    second.secrets = stored(first).secrets
    with pytest.raises(EncryptionError, match="altered or belongs to another endpoint"):
        crypto.endpoint_secrets(second)


def test_key_rotation_and_reencryption(db, settings):
    from django.core.management import call_command

    endpoint, secret = webhooks.create_endpoint("https://a.example.com/h", ["ping"])
    use_keys(settings, KEY2, KEY1)
    # Old secrets still decrypt with the old key; new ones use the newest key.
    assert crypto.endpoint_secrets(stored(endpoint)) == [secret]
    other, other_secret = webhooks.create_endpoint("https://b.example.com/h", ["ping"])
    assert stored(other).secrets[0]["key_id"] == "v2"
    call_command("better_webhooks", "rotate-encryption", stdout=io.StringIO())
    assert {item["key_id"] for item in stored(endpoint).secrets} == {"v2"}
    use_keys(settings, KEY2)
    assert crypto.endpoint_secrets(stored(endpoint)) == [secret]
    assert crypto.endpoint_secrets(stored(other)) == [other_secret]
    # Without the key a secret was encrypted with, the error says what to do.
    use_keys(settings, KEY1)
    with pytest.raises(EncryptionError, match="rotate-encryption"):
        crypto.endpoint_secrets(stored(endpoint))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0123456789abcdef" * 4, "must look like"),
        ("v1:abcd", "must have 32"),
        ("v1:" + "00" * 32, "weak"),
    ],
)
def test_bad_keys_are_refused(settings, value, message):
    use_keys(settings, value)
    with pytest.raises(ConfigurationError, match=message):
        crypto.configured_keys()
    ids = [m.id for m in check_configuration()]
    assert "better_webhooks.E002" in ids


def test_missing_key_is_an_error_without_debug_and_a_warning_with(settings):
    use_keys(settings)
    settings.DEBUG = False
    assert "better_webhooks.E002" in [m.id for m in check_configuration()]
    settings.DEBUG = True
    ids = [m.id for m in check_configuration()]
    assert "better_webhooks.W001" in ids and "better_webhooks.E002" not in ids
    assert crypto.configured_keys()[0][0] == crypto.DEV_KEY_ID


def test_configuration_checks(settings):
    assert [m.id for m in check_configuration() if m.is_serious()] == []
    settings.BETTER_WEBHOOKS = {
        **settings.BETTER_WEBHOOKS,
        "RETRY_SCHEDUL": [],
        "IDEMPOTENCY_WINDOW": "soon",
        "RETRY_SCHEDULE": ["5 parsecs"],
        "MAX_ATTEMPTS": 0,
        "ALLOWED_CIDRS": ["not-a-network"],
    }
    ids = {m.id for m in check_configuration()}
    assert {
        "better_webhooks.E001",
        "better_webhooks.E003",
        "better_webhooks.E004",
        "better_webhooks.E005",
        "better_webhooks.E006",
    } <= ids


def test_generated_key_is_accepted():
    key = crypto.generate_key(3)
    assert key.startswith("v3:")
    assert crypto.parse_key(key)[0] == "v3"
