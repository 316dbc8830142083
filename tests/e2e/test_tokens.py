"""JWT validation: missing/malformed tokens, signature, iss, aud, exp/nbf, kid."""

from __future__ import annotations

import base64
import json

import pytest

from harness import demo
from test_binding import assert_invalid_token


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64json(obj) -> str:
    return demo.b64url(json.dumps(obj, separators=(",", ":")).encode())


def _decode(seg: str):
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


def test_no_token_gets_a_bare_bearer_challenge(call, pki):
    resp = call(token=None, client=pki.client_a)
    assert resp.status == 401, resp
    assert resp.www_authenticate == "Bearer", resp
    assert "error=" not in (resp.www_authenticate or "")
    assert resp.upstream == []


def test_no_token_and_no_certificate(call):
    resp = call(token=None, client=None)
    assert resp.status == 401, resp
    assert resp.www_authenticate == "Bearer", resp
    assert resp.upstream == []


@pytest.mark.parametrize("claims", [
    pytest.param({"expires_in": -3600}, id="expired"),
    pytest.param({"iss": "https://evil.example.com"}, id="wrong-iss"),
    pytest.param({"iss": None}, id="missing-iss"),
    pytest.param({"aud": "https://other.example.com"}, id="wrong-aud"),
    pytest.param({"aud": ["https://other.example.com"]}, id="wrong-aud-list"),
    pytest.param({"aud": None}, id="missing-aud"),
    pytest.param({"not_before": 3600}, id="not-yet-valid"),
    pytest.param({"kid": "no-such-kid"}, id="unknown-kid"),
])
def test_invalid_claims_or_header_are_rejected(call, pki, claims):
    token = pki.token(pki.client_a, **claims)
    assert_invalid_token(call(token=token, client=pki.client_a))


@pytest.mark.parametrize("claims", [
    pytest.param({"expires_in": -20}, id="expired-within-clock-skew"),
    pytest.param({"not_before": 20}, id="nbf-within-clock-skew"),
    pytest.param({"aud": ["https://other.example.com", "https://api.example.com"]},
                 id="aud-list-containing-ours"),
])
def test_valid_edge_cases_are_accepted(call, pki, claims):
    token = pki.token(pki.client_a, **claims)
    resp = call(token=token, client=pki.client_a)
    assert resp.status == 200, resp
    assert len(resp.upstream) == 1


def test_tampered_payload_is_rejected(call, pki):
    header, payload, sig = _segments(pki.token(pki.client_a))
    claims = _decode(payload)
    claims["sub"] = "admin"
    token = ".".join([header, _b64json(claims), sig])
    assert_invalid_token(call(token=token, client=pki.client_a))


def test_tampered_signature_is_rejected(call, pki):
    header, payload, sig = _segments(pki.token(pki.client_a))
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[len(raw) // 2] ^= 0x01
    token = ".".join([header, payload, demo.b64url(bytes(raw))])
    assert_invalid_token(call(token=token, client=pki.client_a))


def test_signature_by_another_key_with_a_known_kid_is_rejected(call, pki):
    attacker = demo.new_signing_key("ES256")
    token = demo.mint(attacker, "ES256", kid=demo.IDP_KID, cert=pki.client_a.cert)
    assert_invalid_token(call(token=token, client=pki.client_a))


def test_alg_none_is_rejected(call, pki):
    _, payload, _ = _segments(pki.token(pki.client_a))
    token = ".".join([_b64json({"alg": "none", "typ": "JWT", "kid": demo.IDP_KID}), payload, ""])
    assert_invalid_token(call(token=token, client=pki.client_a))


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "", "..."])
def test_malformed_token_is_rejected(call, pki, token):
    resp = call(client=pki.client_a, headers={"authorization": f"Bearer {token}"})
    assert resp.status == 401, resp
    assert resp.www_authenticate and resp.www_authenticate.startswith("Bearer"), resp
    assert resp.upstream == []


def test_error_description_is_a_quoted_string(call, pki):
    resp = call(token=pki.token(pki.client_a, expires_in=-3600), client=pki.client_a)
    assert_invalid_token(resp)
    wa = resp.www_authenticate
    desc = wa.split("error_description=", 1)[1]
    assert desc.startswith('"') and desc.endswith('"') and len(desc) > 2, wa
    assert "\n" not in wa and "\r" not in wa
