"""Every supported JWS algorithm, keys picked by kid from a multi-key JWKS."""

from __future__ import annotations

import base64

import pytest

from harness import ALGORITHMS, demo
from test_binding import assert_forwarded_unchanged, assert_invalid_token


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_algorithm_accepted(call, pki, alg):
    key, kid = pki.keys[alg]
    token = demo.mint(key, alg, kid=kid, cert=pki.client_a.cert)
    assert_forwarded_unchanged(call(token=token, client=pki.client_a), token)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_algorithm_still_checks_binding(call, pki, alg):
    key, kid = pki.keys[alg]
    token = demo.mint(key, alg, kid=kid, cert=pki.client_a.cert)
    assert_invalid_token(call(token=token, client=pki.client_b))


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_one_flipped_signature_bit_is_rejected(call, pki, alg, where):
    """Each verifier (certbound's own for ES256, RS*, PS*; ed25519-dalek for
    EdDSA; jwt-simple for ES384), in the real Envoy: one bit of an otherwise
    valid signature flipped is a bad signature."""
    key, kid = pki.keys[alg]
    token = demo.mint(key, alg, kid=kid, cert=pki.client_a.cert)
    head, payload, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    at = {"first": 0, "middle": len(raw) // 2, "last": len(raw) - 1}[where]
    raw[at] ^= 0x01 if where != "last" else 0x80
    forged = f"{head}.{payload}.{demo.b64url(bytes(raw))}"
    resp = call(token=forged, client=pki.client_a)
    assert_invalid_token(resp)
    assert "signature" in (resp.www_authenticate or ""), resp


def test_kid_of_a_different_key_is_rejected(call, pki):
    """ES256 signature, but the kid names the RSA key."""
    key, _ = pki.keys["ES256"]
    _, rsa_kid = pki.keys["RS256"]
    token = demo.mint(key, "ES256", kid=rsa_kid, cert=pki.client_a.cert)
    assert_invalid_token(call(token=token, client=pki.client_a))


def test_kid_of_the_right_key_but_wrong_key_material_is_rejected(call, pki):
    """Signed by the EdDSA key, presented under the ES384 kid."""
    key, _ = pki.keys["EdDSA"]
    _, kid = pki.keys["ES384"]
    token = demo.mint(key, "EdDSA", kid=kid, cert=pki.client_a.cert)
    assert_invalid_token(call(token=token, client=pki.client_a))


@pytest.fixture(scope="module")
def envoy_inline(envoy_factory, pki):
    """local_jwks.inline_string with one key (and no CERTBOUND_JWKS at all)."""
    return envoy_factory(
        "inline_single_key",
        provider={"local_jwks": {"inline_string": pki.idp_jwks_text}},
        jwks_text=None,
    )


class TestSingleKeyInlineJwks:
    """local_jwks.inline_string with one key (and no CERTBOUND_JWKS at all)."""

    def test_token_with_kid(self, call, pki, envoy_inline):
        resp = call(envoy=envoy_inline, token=pki.token(pki.client_a), client=pki.client_a)
        assert resp.status == 200, resp

    def test_token_without_kid_uses_the_only_key(self, call, pki, envoy_inline):
        token = pki.token(pki.client_a, kid=None)
        resp = call(envoy=envoy_inline, token=token, client=pki.client_a)
        assert resp.status == 200, resp

    def test_other_keys_are_not_trusted(self, call, pki, envoy_inline):
        key, kid = pki.keys["ES256"]
        token = demo.mint(key, "ES256", kid=kid, cert=pki.client_a.cert)
        assert_invalid_token(call(envoy=envoy_inline, token=token, client=pki.client_a))


@pytest.mark.parametrize(("signed_as", "under"), [("Ed25519", "EdDSA"), ("EdDSA", "Ed25519")])
def test_eddsa_and_ed25519_keep_to_their_jwk_alg(call, pki, signed_as, under):
    """RFC 9864: one signature, two `alg` names. The right key material under
    a JWK whose `alg` names the other one is still refused (RFC 7517 §4.4)."""
    key, kid = pki.keys[under]
    token = demo.mint(key, signed_as, kid=kid, cert=pki.client_a.cert)
    resp = call(token=token, client=pki.client_a)
    assert_invalid_token(resp)
    assert "algorithm does not match key" in (resp.www_authenticate or ""), resp
