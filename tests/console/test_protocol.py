"""The console routes: health, capabilities, auto-approve sessions, refusals and JSON errors."""

from __future__ import annotations

import jwt
import pytest
from django.test import Client

from better_console import conf
from better_console.models import ConsoleSession, MagicLink
from better_console.sessions import AUDIENCE
from better_console.tokens import secret_from_hash
from tests.support.console import BASE, REMOVE, get, post

pytestmark = pytest.mark.django_db


def claims_of(token: str, settings) -> dict:
    secret = secret_from_hash(settings.BETTER_CONSOLE["TOKEN_HASH"])
    return jwt.decode(token, secret, algorithms=["HS256"], audience=AUDIENCE)


def test_health_answers_ok(client):
    response = get(client, "/console/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_health_answers_even_when_the_settings_are_broken(client, configure):
    configure(TOKEN_LIFETIME="forever")
    assert get(client, "/console/health").json() == {"status": "ok"}
    response = get(client, "/console/capabilities")
    assert response.status_code == 500
    assert response.json()["code"] == "INVALID_CONFIGURATION"
    assert "TOKEN_LIFETIME" in response.json()["error"]


def test_the_console_paths_are_never_tenant_paths(client):
    from better_tenant import resolvers

    # The example settings resolve tenants from headers, paths and subdomains; the console
    # answers without naming any.
    assert not resolvers.plan().applies_to(BASE + "/console/health")
    assert resolvers.plan().applies_to("/projects")


def test_capabilities_list_products_methods_and_permissions(client, configure):
    configure(AUTO_APPROVE=False)
    body = get(client, "/console/capabilities").json()
    assert body["authMethods"] == ["magic_link"]
    assert body["permissions"] == ["read", "write", "admin"]
    assert isinstance(body["products"], list)

    configure(AUTO_APPROVE=True, MAGIC_LINK=None, ALLOWED_ACTIONS=["read", "write"])
    body = get(client, "/console/capabilities").json()
    assert body["authMethods"] == ["auto_approve"]
    assert body["permissions"] == ["read", "write"]


def test_auto_approve_issues_a_stateless_token(client, configure, settings):
    configure(MAGIC_LINK=None)
    response = post(client, "/console/session/init", {"email": "admin@myapp.com"})

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"method", "sessionToken", "expiresIn"}
    assert body["method"] == "auto_approve"
    assert body["expiresIn"] == 86400
    claims = claims_of(body["sessionToken"], settings)
    assert claims["email"] == "admin@myapp.com"
    # The published servers' claims: the highest level as one string, expiresAt in seconds.
    assert claims["permissions"] == "admin"
    assert claims["expiresAt"] == claims["exp"]
    assert claims["method"] == "auto_approve"
    assert claims["exp"] - claims["iat"] == 86400
    assert jwt.get_unverified_header(body["sessionToken"])["alg"] == "HS256"
    # Nothing is stored.
    assert not ConsoleSession.objects.exists() and not MagicLink.objects.exists()


def test_auto_approve_without_email_uses_the_development_address(client, configure, settings):
    configure(TOKEN_LIFETIME="8h", ALLOWED_ACTIONS=["read"])
    body = post(client, "/console/session/init").json()
    claims = claims_of(body["sessionToken"], settings)
    assert claims["email"] == "dev@localhost"
    assert claims["permissions"] == "read"
    assert body["expiresIn"] == 8 * 3600


def test_the_auto_approve_token_opens_product_routes(client, configure):
    from better_console.registry import Endpoint, register_product, unregister_product

    register_product(
        "probe", "Probe", [Endpoint("GET", "/me", lambda r: {"email": r.session.email})]
    )
    try:
        token = post(client, "/console/session/init", {"email": "a@b.co"}).json()["sessionToken"]
        response = get(client, "/probe/me", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 200
        assert response.json() == {"email": "a@b.co"}
    finally:
        unregister_product("probe")


def test_auto_approve_is_refused_at_request_time_in_production(client, production):
    # The settings changed under a running process: start-up did not see them.
    response = post(client, "/console/session/init", {"email": "admin@myapp.com"})
    assert response.status_code == 403
    body = response.json()
    assert "outside development" in body["error"]
    assert body["code"] == "AUTO_APPROVE_IN_PRODUCTION"
    assert "sessionToken" not in body


def test_a_weak_secret_is_refused_at_request_time_in_production(client, configure, production):
    configure(AUTO_APPROVE=False, TOKEN_HASH="short-secret")
    response = post(client, "/console/session/init", {"email": "admin@example.com"})
    assert response.status_code == 500
    assert response.json()["code"] == "WEAK_SECRET"
    assert not MagicLink.objects.exists()


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_a_weak_secret_is_accepted_in_development(client, configure, settings):
    settings.DEBUG = True
    configure(TOKEN_HASH="short-secret", MAGIC_LINK=None)
    response = post(client, "/console/session/init")
    assert response.status_code == 200
    jwt.decode(
        response.json()["sessionToken"], "short-secret", algorithms=["HS256"], audience=AUDIENCE
    )


def test_no_session_method_is_answered_with_its_code(client, configure):
    configure(AUTO_APPROVE=False, MAGIC_LINK=None)
    response = post(client, "/console/session/init", {"email": "admin@example.com"})
    assert response.status_code == 500
    assert response.json() == {
        "error": "No session method configured.",
        "code": "NO_SESSION_METHOD",
    }


def test_a_missing_token_hash_refuses_to_issue(client, configure, monkeypatch):
    monkeypatch.delenv("BETTER_CONSOLE_TOKEN_HASH", raising=False)
    configure(TOKEN_HASH=REMOVE, MAGIC_LINK=None)
    response = post(client, "/console/session/init")
    assert response.status_code == 500
    assert response.json()["code"] == "TOKEN_HASH_MISSING"


def test_the_token_hash_is_read_from_the_environment(client, configure, monkeypatch):
    monkeypatch.setenv("BETTER_CONSOLE_TOKEN_HASH", "sha256:" + "ab" * 32)
    configure(TOKEN_HASH=REMOVE, MAGIC_LINK=None)
    token = post(client, "/console/session/init").json()["sessionToken"]
    claims = jwt.decode(token, "ab" * 32, algorithms=["HS256"], audience=AUDIENCE)
    assert claims["method"] == "auto_approve"


def test_handshake_routes_exist_only_with_magic_link(client, configure):
    configure(MAGIC_LINK=None)
    for method, path in (
        ("post", "/console/session/verify"),
        ("get", "/console/session/poll?sessionId=sess_x"),
        ("post", "/console/session/claim"),
    ):
        response = getattr(client, method)(BASE + path, content_type="application/json")
        assert response.status_code == 404, path
        assert response.json()["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "path",
    ["", "/console", "/console/nope", "/console/session", "/nothing/here", "/console/health/x"],
)
def test_unknown_paths_are_json_404(client, path):
    response = client.get(BASE + path + ("/" if not path else ""))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": "Not found", "code": "NOT_FOUND"}


def test_a_wrong_method_is_not_found_as_the_published_servers_answer(client):
    response = get(client, "/console/session/init")
    assert response.status_code == 404
    assert response.json() == {"error": "Not found", "code": "NOT_FOUND"}


def test_a_body_that_is_not_json_is_400(client):
    response = client.post(
        BASE + "/console/session/init", data="{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_JSON"


def test_a_body_that_is_not_an_object_is_400(client):
    response = post(client, "/console/session/init", ["admin@example.com"])
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_BODY"


def test_an_email_that_is_not_an_address_is_400(client):
    response = post(client, "/console/session/init", {"email": "not an address"})
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_EMAIL"


def test_the_endpoints_need_no_csrf_token(configure):
    configure(MAGIC_LINK=None)
    client = Client(enforce_csrf_checks=True)
    response = post(client, "/console/session/init", {"email": "a@b.co"})
    assert response.status_code == 200


def test_settings_changes_are_seen_by_the_next_request(client, configure):
    configure(ALLOWED_ACTIONS=["read"])
    assert get(client, "/console/capabilities").json()["permissions"] == ["read"]
    configure(ALLOWED_ACTIONS=["read", "admin"])
    assert get(client, "/console/capabilities").json()["permissions"] == ["read", "admin"]
    assert conf.load().allowed_actions == ("read", "admin")


def test_settings_that_are_not_a_dict_are_a_json_500(client, settings):
    settings.BETTER_CONSOLE = ["TOKEN_HASH"]
    response = get(client, "/console/capabilities", HTTP_ORIGIN="https://console.usebetter.dev")
    assert response.status_code == 500
    assert "must be a dict" in response.json()["error"]
    assert response["Access-Control-Allow-Origin"] == "https://console.usebetter.dev"


def test_configuration_details_stay_on_the_server_in_production(client, configure, production):
    configure(AUTO_APPROVE=False, ON_ERROR="no.such.module.handler")
    response = get(client, "/console/capabilities")
    assert response.status_code == 500
    assert response.json()["code"] == "INVALID_CONFIGURATION"
    assert "no.such.module" not in response.content.decode()
