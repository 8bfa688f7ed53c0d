"""Signing (Standard Webhooks vector, third-party verification) and the receiver side."""

from __future__ import annotations

import json
import time

import pytest
from django.http import JsonResponse
from django.test import RequestFactory
from standardwebhooks import Webhook

import better_webhooks as webhooks
from better_webhooks import crypto
from better_webhooks.db import system_scope
from better_webhooks.exceptions import WebhookSignatureError
from better_webhooks.models import WebhookDeliveryAttempt
from better_webhooks.signing import sign, signed_headers
from better_webhooks.verify import (
    assert_webhook_signature,
    verify_webhook_signature,
    webhook_receiver,
)
from tests.support.webhooks import run_worker_until_idle

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"


def test_standard_webhooks_test_vector():
    signature = sign(SECRET, MSG_ID, 1614265330, '{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_generated_secret_format():
    secret = crypto.generate_secret()
    assert secret.startswith("whsec_")
    assert len(crypto.secret_bytes(secret)) == 32
    assert secret != crypto.generate_secret()


def test_delivery_verifies_with_standardwebhooks_package(db, receiver):
    _endpoint, secret = webhooks.create_endpoint(receiver.url(), ["user.created"])
    webhooks.send("user.created", {"id": "usr_1", "email": "a@example.com"})
    run_worker_until_idle()

    (request,) = receiver.requests
    headers = {key.lower(): value for key, value in request.headers.items()}
    verified = Webhook(secret).verify(request.body, headers)
    assert verified["type"] == "user.created"
    assert verified["data"] == {"id": "usr_1", "email": "a@example.com"}
    # Both header sets carry the same values.
    assert headers["x-webhook-id"] == headers["webhook-id"]
    assert headers["x-webhook-signature"] == headers["webhook-signature"]
    assert headers["webhook-id"].startswith("msg_")
    # Our own verifier accepts it with either header set.
    x_only = {k: v for k, v in headers.items() if k.startswith("x-webhook")}
    assert verify_webhook_signature(request.body, x_only, secret)
    assert not verify_webhook_signature(request.body, headers, crypto.generate_secret())
    with system_scope():
        attempt = WebhookDeliveryAttempt.objects.get()
    assert attempt.response_status == 200
    assert attempt.request_headers["webhook-id"] == headers["webhook-id"]


def test_webhook_id_stays_and_timestamp_changes_across_retries(db, receiver, fast_retries):
    receiver.script(500)
    webhooks.create_endpoint(receiver.url(), ["ping"])
    webhooks.send("ping", {"n": 1})
    with pytest.MonkeyPatch.context() as patch:
        clock = iter([1_700_000_000, 1_700_000_100])
        patch.setattr("better_webhooks.delivery.unix_time", lambda: next(clock))
        run_worker_until_idle()
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.headers["webhook-timestamp"] == "1700000000"
    assert second.headers["webhook-timestamp"] == "1700000100"
    assert first.body == second.body


def test_rotation_sends_both_signatures(db, receiver):
    endpoint, old = webhooks.create_endpoint(receiver.url(), ["ping"])
    new = webhooks.rotate_secret(endpoint, overlap=3600)
    webhooks.send("ping", {"n": 1})
    run_worker_until_idle()
    (request,) = receiver.requests
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    headers = {key.lower(): value for key, value in request.headers.items()}
    assert Webhook(old).verify(request.body, headers)
    assert Webhook(new).verify(request.body, headers)


def test_rotation_without_overlap_drops_the_old_secret(db):
    endpoint, _old = webhooks.create_endpoint("https://example.com/h", ["ping"])
    new = webhooks.rotate_secret(endpoint, overlap=0)
    with system_scope():
        endpoint.refresh_from_db()
    assert crypto.endpoint_secrets(endpoint) == [new]


def test_assert_signature_errors():
    body = b'{"a":1}'
    now = int(time.time())
    headers = signed_headers([SECRET], MSG_ID, now, body)
    assert assert_webhook_signature(body, headers, SECRET) == MSG_ID
    with pytest.raises(WebhookSignatureError) as missing:
        assert_webhook_signature(body, {}, SECRET)
    assert missing.value.code == "MISSING_HEADERS"
    with pytest.raises(WebhookSignatureError) as stale:
        assert_webhook_signature(body, signed_headers([SECRET], MSG_ID, now - 301, body), SECRET)
    assert stale.value.code == "TIMESTAMP_OUT_OF_TOLERANCE"
    with pytest.raises(WebhookSignatureError) as tampered:
        assert_webhook_signature(b'{"a":2}', headers, SECRET)
    assert tampered.value.code == "INVALID_SIGNATURE"
    # Several signatures in the header: any one matching passes; a list of secrets too.
    other = crypto.generate_secret()
    multi = signed_headers([other, SECRET], MSG_ID, now, body)
    assert verify_webhook_signature(body, multi, SECRET)
    assert verify_webhook_signature(body, headers, [other, SECRET])


def test_webhook_receiver_decorator_verifies_and_deduplicates():
    calls = []

    @webhook_receiver(secret=SECRET)
    def view(request):
        calls.append(json.loads(request.body))
        return JsonResponse({"ok": True, "id": request.webhook_id})

    factory = RequestFactory()
    body = b'{"type":"ping","data":{}}'
    headers = signed_headers([SECRET], MSG_ID, int(time.time()), body)

    def post(payload, extra):
        http = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in extra.items()}
        return view(factory.post("/hook", payload, content_type="application/json", **http))

    assert post(body, headers).status_code == 200
    duplicate = post(body, headers)
    assert duplicate.status_code == 200 and json.loads(duplicate.content)["duplicate"] is True
    assert len(calls) == 1
    bad = post(b'{"type":"evil"}', headers)
    assert bad.status_code == 401 and json.loads(bad.content)["code"] == "INVALID_SIGNATURE"
    missing = post(body, {})
    assert missing.status_code == 400 and json.loads(missing.content)["code"] == "MISSING_HEADERS"
    assert len(calls) == 1
