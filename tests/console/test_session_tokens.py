"""Session tokens: only untampered HS256 tokens with every claim, signed with TOKEN_HASH, pass."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from better_console.models import ConsoleSession
from better_console.registry import Endpoint, register_product, unregister_product
from better_console.sessions import AUDIENCE, effective_permissions
from better_console.testing import auth_headers, session_token
from better_console.tokens import secret_from_hash
from tests.support.console import get

pytestmark = pytest.mark.django_db

INVALID = {"error": "Invalid or expired session", "code": "INVALID_TOKEN"}
MISSING = {"error": "Missing session token", "code": "MISSING_TOKEN"}


@pytest.fixture(autouse=True)
def probe():
    register_product(
        "probe", "Probe", [Endpoint("GET", "/me", lambda r: {"email": r.session.email})]
    )
    yield
    unregister_product("probe")


@pytest.fixture
def secret(settings) -> str:
    return secret_from_hash(settings.BETTER_CONSOLE["TOKEN_HASH"])


def claims(**overrides):
    now = int(time.time())
    base = {
        "sessionId": str(uuid.uuid4()),
        "email": "dev@localhost",
        "permissions": "admin",
        "expiresAt": now + 3600,
        "method": "auto_approve",
        "iat": now,
        "exp": now + 3600,
        "aud": AUDIENCE,
        "jti": uuid.uuid4().hex,
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def call(client, token):
    return get(client, "/probe/me", **auth_headers(token))


def b64(data: dict) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_well_formed_token_passes(client, secret):
    response = call(client, jwt.encode(claims(), secret, algorithm="HS256"))
    assert response.status_code == 200


def test_alg_none_is_refused(client):
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}."
    response = call(client, token)
    assert response.status_code == 401
    assert response.json() == INVALID


def test_another_hmac_algorithm_is_refused(client, secret):
    assert call(client, jwt.encode(claims(), secret, algorithm="HS512")).status_code == 401
    assert call(client, jwt.encode(claims(), secret, algorithm="HS384")).status_code == 401


def test_an_rsa_token_is_refused(client):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert call(client, jwt.encode(claims(), pem, algorithm="RS256")).status_code == 401


def test_the_secret_as_an_hmac_key_under_an_rs256_header_is_refused(client, secret):
    # The confusion attack: an "RS256" token whose signature is an HMAC with the shared secret.
    import hashlib
    import hmac

    signing_input = f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(claims())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    token = signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    assert call(client, token).status_code == 401


def test_a_wrong_secret_is_refused(client):
    token = jwt.encode(claims(), "f" * 64, algorithm="HS256")
    assert call(client, token).status_code == 401


def test_a_tampered_payload_is_refused(client, secret):
    token = jwt.encode(claims(permissions=["read"]), secret, algorithm="HS256")
    header, _, signature = token.split(".")
    forged = f"{header}.{b64(claims(permissions=['admin']))}.{signature}"
    assert call(client, forged).status_code == 401


def test_an_expired_token_is_refused(client, secret):
    now = int(time.time())
    token = jwt.encode(claims(iat=now - 7200, exp=now - 10), secret, algorithm="HS256")
    assert call(client, token).status_code == 401


@pytest.mark.parametrize(
    "missing",
    ["aud", "exp", "iat", "jti", "sessionId", "email", "permissions", "expiresAt", "method"],
)
def test_every_claim_is_required(client, secret, missing):
    token = jwt.encode(claims(**{missing: None}), secret, algorithm="HS256")
    assert call(client, token).status_code == 401


def test_another_audience_is_refused(client, secret):
    token = jwt.encode(claims(aud="someone-else"), secret, algorithm="HS256")
    assert call(client, token).status_code == 401


def test_malformed_claims_are_refused(client, secret):
    for bad in (claims(permissions=["admin"]), claims(email=42), claims(method="sso")):
        assert call(client, jwt.encode(bad, secret, algorithm="HS256")).status_code == 401


@pytest.mark.parametrize(
    ("header", "body"),
    [
        (None, MISSING),
        ("", MISSING),
        ("Bearer", MISSING),
        ("Bearer ", MISSING),
        ("Basic dXNlcjpwYXNz", MISSING),
        ("Bearer a b", MISSING),
        ("Bearer not-a-jwt", INVALID),
        ("bearer not-a-jwt", INVALID),
    ],
)
def test_requests_without_a_usable_bearer_are_refused(client, header, body):
    extra = {} if header is None else {"HTTP_AUTHORIZATION": header}
    response = get(client, "/probe/me", **extra)
    assert response.status_code == 401
    assert response.json() == body


@pytest.mark.parametrize(
    "overrides",
    [
        {"permissions": ["read", "write", "admin"]},
        {"permissions": "root"},
        {"expiresAt": 1},
        {"expiresAt": "soon"},
    ],
)
def test_the_published_claims_must_hold_their_shape(client, secret, overrides):
    response = call(client, jwt.encode(claims(**overrides), secret, algorithm="HS256"))
    assert response.status_code == 401


def test_stateless_tokens_die_with_auto_approve(client, configure):
    token = session_token(stateless=True)
    assert call(client, token).status_code == 200
    configure(AUTO_APPROVE=False)
    assert call(client, token).status_code == 401


def test_stateless_tokens_are_refused_in_production(client, production):
    token = session_token(stateless=True)
    assert call(client, token).status_code == 401


def test_a_magic_link_token_needs_its_stored_session(client, secret):
    # Correctly signed, but no better_console_sessions row holds its hash.
    token = jwt.encode(claims(method="magic_link"), secret, algorithm="HS256")
    assert call(client, token).status_code == 401


def test_a_stored_session_must_match_the_token_session_id(client, secret):
    token = session_token("read")
    ConsoleSession.objects.update(session_id="sess_other")
    assert call(client, token).status_code == 401


def test_rotating_the_token_hash_invalidates_sessions(client, configure):
    token = session_token("read")
    assert call(client, token).status_code == 200
    configure(TOKEN_HASH="sha256:" + "0d" * 32)
    assert call(client, token).status_code == 401


def test_the_testing_helper_mints_stored_sessions(client):
    token = session_token("write", email="ops@example.com")
    [row] = ConsoleSession.objects.all()
    assert row.email == "ops@example.com" and row.permissions == ["write"]
    assert call(client, token).json() == {"email": "ops@example.com"}
    with pytest.raises(ValueError, match="superuser"):
        session_token("superuser")


def test_allowed_actions_cap_the_permissions_of_a_token():
    assert effective_permissions("write", ("read", "write", "admin")) == ("read", "write")
    assert effective_permissions(["admin"], ("read", "write", "admin")) == (
        "read",
        "write",
        "admin",
    )
    assert effective_permissions(["admin"], ("read", "write")) == ("read", "write")
    assert effective_permissions(["write"], ("read", "admin")) == ("read",)
    assert effective_permissions(["read"], ("write", "admin")) == ()
    assert effective_permissions(["root"], ("read",)) == ()
