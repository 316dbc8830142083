"""RFC 8705 certificate binding over real mTLS."""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

import harness


def assert_invalid_token(resp: harness.Response) -> None:
    assert resp.status == 401, resp
    wa = resp.www_authenticate or ""
    assert wa.startswith("Bearer "), resp
    assert 'error="invalid_token"' in wa, resp
    assert "error_description=" in wa, resp
    assert resp.upstream == [], "a rejected request must not reach the backend"


def assert_forwarded_unchanged(resp: harness.Response, token: str) -> None:
    """Accepted: 200 from the backend, which saw the request exactly once
    with the Authorization header as sent (the contract: "upstream unchanged")."""
    assert resp.status == 200, resp
    assert len(resp.upstream) == 1, resp
    seen = resp.upstream[0]["headers"]
    assert seen.get("authorization") == f"Bearer {token}", (
        "the backend did not get the Authorization header unchanged; it saw "
        f"authorization={seen.get('authorization')!r}"
    )


def test_bound_token_with_its_own_certificate_is_forwarded(call, pki):
    token = pki.token(pki.client_a)
    resp = call(token=token, client=pki.client_a)
    assert_forwarded_unchanged(resp, token)
    assert resp.upstream[0]["method"] == "GET"
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
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        call(token=token, client=pki.rogue)


class TestWhenPresent:
    """certificate_binding: "when_present"."""

    @pytest.fixture
    def wp(self, call, envoy_when_present):
        return lambda **kw: call(envoy=envoy_when_present, **kw)

    def test_unbound_token_is_a_plain_bearer_token(self, wp, pki):
        token = pki.token(None)
        assert_forwarded_unchanged(wp(token=token, client=None), token)
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


def test_keep_alive_connection_reuses_its_certificate(pki, envoy_required, backend):
    """Several requests on one mTLS connection: each is checked, each passes."""
    token = pki.token(pki.client_a)
    conn = http.client.HTTPSConnection(
        "127.0.0.1", envoy_required.port, timeout=harness.HTTP_TIMEOUT,
        context=harness.tls_context(pki.ca, pki.client_a))
    try:
        for i in range(3):
            conn.request("GET", f"/keepalive/{i}", headers={"authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, (i, resp.status)
        conn.request("GET", "/keepalive/none")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 401
    finally:
        conn.close()


def test_concurrent_connections_do_not_share_certificates(call, pki):
    """Interleaved requests from client-a and client-b with a token bound to a:
    the decision must follow each connection's own certificate."""
    token = pki.token(pki.client_a)
    clients = [pki.client_a, pki.client_b] * 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda c: (c.name, call(token=token, client=c).status), clients))
    assert results == [(c.name, 200 if c is pki.client_a else 401) for c in clients]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_http2_with_curl(pki, envoy_required):
    """The same checks over HTTP/2 (ALPN h2), with the client most users have."""
    token = pki.token(pki.client_a)

    def curl(client: harness.Client) -> list[str]:
        out = subprocess.run(
            ["curl", "-sS", "--http2", "-o", "/dev/null", "-D", "-",
             "-w", "%{http_version} %{http_code}\\n",
             "--cacert", str(pki.ca), "--cert", str(client.cert), "--key", str(client.key),
             "--resolve", f"localhost:{envoy_required.port}:127.0.0.1",
             "-H", f"Authorization: Bearer {token}",
             f"https://localhost:{envoy_required.port}/h2"],
            check=True, capture_output=True, text=True, timeout=30,
        ).stdout
        return out.replace("\r", "").splitlines()

    ok = curl(pki.client_a)
    assert ok[-1] == "2 200", ok
    denied = curl(pki.client_b)
    assert denied[-1] == "2 401", denied
    wa = [ln for ln in denied if ln.lower().startswith("www-authenticate:")]
    assert len(wa) == 1 and 'error="invalid_token"' in wa[0], denied


def test_forward_false_strips_the_token_upstream(call, pki, envoy_factory):
    """The filter's jwt_authn-style `forward: false` (its default): accepted,
    but the backend does not get the token."""
    envoy = envoy_factory("forward_false", provider={"forward": False})
    resp = call(envoy=envoy, token=pki.token(pki.client_a), client=pki.client_a)
    assert resp.status == 200, resp
    assert "authorization" not in resp.upstream[0]["headers"], resp.upstream
