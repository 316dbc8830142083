"""RFC 8705 certificate binding over real mTLS."""

from __future__ import annotations

import json

import pytest

import harness


def assert_invalid_token(resp: harness.Response) -> None:
    assert resp.status == 401, resp
    wa = resp.www_authenticate or ""
    assert wa.startswith("Bearer "), resp
    assert 'error="invalid_token"' in wa, resp
    assert "error_description=" in wa, resp
    assert resp.upstream == [], "a rejected request must not reach the backend"


def test_bound_token_with_its_own_certificate_is_forwarded(call, pki):
    token = pki.token(pki.client_a)
    resp = call(token=token, client=pki.client_a)
    assert resp.status == 200, resp
    (seen,) = resp.upstream
    assert seen["method"] == "GET"
    assert seen["headers"]["authorization"] == f"Bearer {token}"
    # the echo body is what the backend saw, end to end through Envoy
    assert json.loads(resp.body)["headers"]["authorization"] == f"Bearer {token}"


def test_bound_token_with_another_ca_signed_certificate_is_rejected(call, pki):
    token = pki.token(pki.client_a)
    assert_invalid_token(call(token=token, client=pki.client_b))


def test_bound_token_without_client_certificate_is_rejected(call, pki):
    assert_invalid_token(call(token=pki.token(pki.client_a), client=None))


def test_each_client_gets_its_own_binding(call, pki):
    token_b = pki.token(pki.client_b)
    assert call(token=token_b, client=pki.client_b).status == 200
    assert_invalid_token(call(token=token_b, client=pki.client_a))


def test_unbound_token_is_rejected_when_binding_required(call, pki):
    assert_invalid_token(call(token=pki.token(None), client=pki.client_a))


def test_cnf_with_wrong_thumbprint_is_rejected(call, pki):
    bogus = harness.demo.b64url(b"\0" * 32)
    token = pki.token(None, cnf={"x5t#S256": bogus})
    assert_invalid_token(call(token=token, client=pki.client_a))


def test_untrusted_client_certificate_fails_the_handshake(call, pki):
    """Envoy side: a presented certificate must chain to the trusted CA."""
    token = pki.token(pki.rogue)
    with pytest.raises((harness.ssl.SSLError, ConnectionError, harness.http.client.HTTPException)):
        call(token=token, client=pki.rogue)


class TestWhenPresent:
    """certificate_binding: "when_present"."""

    @pytest.fixture
    def wp(self, call, envoy_when_present):
        return lambda **kw: call(envoy=envoy_when_present, **kw)

    def test_unbound_token_is_a_plain_bearer_token(self, wp, pki):
        token = pki.token(None)
        resp = wp(token=token, client=None)
        assert resp.status == 200, resp
        assert resp.upstream[0]["headers"]["authorization"] == f"Bearer {token}"
        assert wp(token=token, client=pki.client_a).status == 200

    def test_bound_token_with_matching_certificate(self, wp, pki):
        assert wp(token=pki.token(pki.client_a), client=pki.client_a).status == 200

    def test_bound_token_with_mismatched_certificate_is_rejected(self, wp, pki):
        assert_invalid_token(wp(token=pki.token(pki.client_a), client=pki.client_b))

    def test_bound_token_without_certificate_is_rejected(self, wp, pki):
        assert_invalid_token(wp(token=pki.token(pki.client_a), client=None))

    def test_other_checks_still_apply(self, wp, pki):
        assert_invalid_token(wp(token=pki.token(None, expires_in=-3600), client=None))
        assert_invalid_token(wp(token=pki.token(None, iss="https://evil.example"), client=None))
