"""better_core.jwt: bearer tokens of a request and their claims."""

import time

import jwt
import pytest
from django.test import RequestFactory

from better_core.jwt import MAX_TOKEN_LENGTH, bearer_claims, bearer_token, decode_claims

KEY = "core-test-key-" + "0123456789abcdef" * 4
OTHER = "other-key-" + "fedcba9876543210" * 4


def request_with(authorization: str | None):
    headers = {} if authorization is None else {"Authorization": authorization}
    return RequestFactory().get("/", headers=headers)


def encode(claims: dict, key: str = KEY, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


@pytest.mark.parametrize(
    ("authorization", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer   abc  ", "abc"),
        ("Bearer ", None),
        ("Basic dXNlcjpwYXNz", None),
        (None, None),
        ("Bearer " + "x" * MAX_TOKEN_LENGTH, "x" * MAX_TOKEN_LENGTH),
        ("Bearer " + "x" * (MAX_TOKEN_LENGTH + 1), None),
    ],
)
def test_bearer_token(authorization, token):
    assert bearer_token(request_with(authorization)) == token


def test_without_a_key_the_token_is_only_decoded():
    assert decode_claims(encode({"sub": "u-1"}, key=OTHER)) == {"sub": "u-1"}
    # Not verified, so neither expiry nor audience is checked.
    expired = encode({"sub": "u-1", "exp": int(time.time()) - 60, "aud": "x"})
    assert decode_claims(expired)["sub"] == "u-1"


def test_with_a_key_signature_expiry_and_algorithm_are_verified():
    assert decode_claims(encode({"sub": "u-1"}), KEY) == {"sub": "u-1"}
    assert decode_claims(encode({"sub": "u-1"}, key=OTHER), KEY) is None
    assert decode_claims(encode({"sub": "u", "exp": int(time.time()) - 60}), KEY) is None
    hs512 = encode({"sub": "u-1"}, algorithm="HS512")
    assert decode_claims(hs512, KEY) is None
    assert decode_claims(hs512, KEY, algorithms=["HS512"]) == {"sub": "u-1"}
    # An empty list allows no algorithm at all; it is not replaced by the default.
    assert decode_claims(encode({"sub": "u-1"}), KEY, algorithms=[]) is None


def test_audience_is_checked_strictly_unless_told_otherwise():
    for_api = encode({"sub": "u-1", "aud": "api"})
    assert decode_claims(for_api, KEY) is None
    assert decode_claims(for_api, KEY, audience="api") == {"sub": "u-1", "aud": "api"}
    assert decode_claims(for_api, KEY, audience="crm") is None
    lenient = {"refuse_unexpected_audience": False}
    assert decode_claims(for_api, KEY, **lenient) == {"sub": "u-1", "aud": "api"}
    assert decode_claims(for_api, KEY, audience="crm", **lenient) is None


def test_errors_are_reported_and_yield_none():
    seen: list[Exception] = []
    assert decode_claims("not-a-jwt", on_error=seen.append) is None
    assert decode_claims(encode({"sub": "u"}, key=OTHER), KEY, on_error=seen.append) is None
    assert [type(exc).__name__ for exc in seen] == ["DecodeError", "InvalidSignatureError"]


def test_bearer_claims_reads_the_request():
    request = request_with(f"Bearer {encode({'tenant': 't-1'})}")
    assert bearer_claims(request, KEY) == {"tenant": "t-1"}
    assert bearer_claims(request, OTHER) is None
    assert bearer_claims(request_with("Token abc")) is None
