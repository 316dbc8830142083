"""Host-scoped mTLS, as shipped in envoy/host-scoped.yaml: one listener, two
hosts told apart by SNI (filter_chain_match.server_names), each filter chain
with its own TLS settings and its own certbound configuration.

  mtls.api.example.com  client certificate required, bound tokens only
  api.example.com       no client certificate asked for; unbound bearer
                        tokens pass, bound tokens get 401 (RFC 8705 section 3)

Requests go to 127.0.0.1 with the host name as the TLS server name, as a
client that resolved the name would send them."""

from __future__ import annotations

import http.client
import ssl
import subprocess

import pytest
import yaml

import harness

demo = harness.demo
PLAIN, MTLS = demo.PLAIN_HOST, demo.MTLS_HOST
HANDSHAKE_FAILED = (ssl.SSLError, ConnectionError, http.client.HTTPException)


@pytest.fixture(scope="module")
def envoy_hosts(envoy_factory):
    return envoy_factory("host_scoped", config=harness.HOST_SCOPED_CONFIG)


@pytest.fixture
def call(pki, backend, envoy_hosts):
    def _call(sni: str, **kw) -> harness.Response:
        return harness.request(envoy_hosts, backend, pki.ca, sni=sni, **kw)

    return _call


def assert_denied(resp: harness.Response, description: str) -> None:
    assert resp.status == 401, resp
    assert resp.www_authenticate == (
        f'Bearer error="invalid_token", error_description="{description}"'), resp
    assert resp.upstream == [], "a rejected request must not reach the backend"


def chains(cfg: dict) -> dict[str, dict]:
    out = {}
    for chain in harness._listener(cfg)["filter_chains"]:
        (name,) = chain["filter_chain_match"]["server_names"]
        out[name] = chain
    return out


def chain_plugin(chain: dict) -> dict:
    (hcm,) = chain["filters"]
    (wasm,) = [f for f in hcm["typed_config"]["http_filters"] if f["name"] == harness.WASM_FILTER]
    return wasm["typed_config"]["config"]


# -- the shipped file -------------------------------------------------------


def test_shipped_file_validates(pki):
    res = harness.validate(harness.HOST_SCOPED_CONFIG, cwd=pki.root, jwks_text=pki.idp_jwks_text)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert f"configuration '{harness.HOST_SCOPED_CONFIG}' OK" in res.stdout, out


def test_shipped_file_scopes_mtls_and_binding_by_host():
    cfg = yaml.safe_load(harness.HOST_SCOPED_CONFIG.read_text())
    by_host = chains(cfg)
    assert set(by_host) == {PLAIN, MTLS}
    mtls_tls = by_host[MTLS]["transport_socket"]["typed_config"]
    assert mtls_tls["require_client_certificate"] is True
    assert "trusted_ca" in mtls_tls["common_tls_context"]["validation_context"]
    plain_tls = by_host[PLAIN]["transport_socket"]["typed_config"]
    assert "validation_context" not in plain_tls["common_tls_context"], "plain host asks for no certificate"
    plugins = {h: chain_plugin(c) for h, c in by_host.items()}
    assert plugins[MTLS]["name"] != plugins[PLAIN]["name"], "one plugin (and configuration) per chain"
    binding = {h: yaml.safe_load(p["configuration"]["value"])["providers"]["idp"]["certificate_binding"]
               for h, p in plugins.items()}
    assert binding == {MTLS: "required", PLAIN: "when_present"}


# -- mtls.api.example.com ---------------------------------------------------


def test_mtls_host_bound_token_with_its_certificate(call, pki):
    token = pki.token(pki.client_a)
    resp = call(MTLS, token=token, client=pki.client_a)
    assert resp.status == 200, resp
    (seen,) = resp.upstream
    assert seen["headers"]["authorization"] == f"Bearer {token}"
    assert seen["headers"]["host"] == MTLS


def test_mtls_host_bound_token_with_another_certificate(call, pki):
    assert_denied(call(MTLS, token=pki.token(pki.client_a), client=pki.client_b),
                  "certificate binding mismatch")


def test_mtls_host_refuses_unbound_tokens(call, pki):
    assert_denied(call(MTLS, token=pki.token(None), client=pki.client_a),
                  "token is not certificate-bound")


def test_mtls_host_requires_a_client_certificate(call, pki):
    with pytest.raises(HANDSHAKE_FAILED):
        call(MTLS, token=pki.token(pki.client_a), client=None)


def test_mtls_host_requires_a_trusted_certificate(call, pki):
    with pytest.raises(HANDSHAKE_FAILED):
        call(MTLS, token=pki.token(pki.rogue), client=pki.rogue)


# -- api.example.com --------------------------------------------------------


def test_plain_host_accepts_an_unbound_bearer_token(call, pki):
    token = pki.token(None)
    resp = call(PLAIN, token=token)
    assert resp.status == 200, resp
    (seen,) = resp.upstream
    assert seen["headers"]["authorization"] == f"Bearer {token}"
    assert seen["headers"]["host"] == PLAIN


def test_plain_host_refuses_a_bound_token(call, pki):
    """RFC 8705 section 3: a certificate-bound token without the certificate."""
    assert_denied(call(PLAIN, token=pki.token(pki.client_a)), "client certificate required")


def test_plain_host_does_not_ask_for_the_certificate(call, pki):
    """The client has client-a's certificate ready, but this host never asks
    for it: the token bound to it is still refused here."""
    assert_denied(call(PLAIN, token=pki.token(pki.client_a), client=pki.client_a),
                  "client certificate required")


def test_plain_host_still_checks_the_token(call, pki):
    assert_denied(call(PLAIN, token=pki.token(None, expires_in=-3600)), "token expired")
    assert_denied(call(PLAIN, token=pki.token(None, iss="https://evil.example")),
                  "issuer not accepted")
    resp = call(PLAIN)
    assert resp.status == 401 and resp.www_authenticate == "Bearer", resp


# -- the listener -----------------------------------------------------------


@pytest.mark.parametrize("sni", ["other.example.com", "localhost"])
def test_unknown_server_name_matches_no_chain(call, pki, sni):
    with pytest.raises(HANDSHAKE_FAILED):
        call(sni, token=pki.token(None), client=pki.client_a)


def test_no_server_name_matches_no_chain(pki, backend, envoy_hosts):
    """An IP-address connection sends no SNI at all."""
    with pytest.raises(HANDSHAKE_FAILED):
        harness.request(envoy_hosts, backend, pki.ca, token=pki.token(None), client=pki.client_a)


def test_mtls_host_name_on_the_plain_connection_is_misdirected(call, pki):
    """Host says mtls.api.example.com, the connection is api.example.com's (as
    with HTTP/2 connection reuse across names one certificate covers): 421,
    so the client retries on a connection of its own and the mTLS host's
    routes are never served without its TLS settings."""
    resp = call(PLAIN, token=pki.token(None), headers={"host": MTLS})
    assert resp.status == 421, resp
    assert resp.upstream == []


def test_plain_host_name_on_the_mtls_connection_is_misdirected(call, pki):
    resp = call(MTLS, token=pki.token(pki.client_a), client=pki.client_a, headers={"host": PLAIN})
    assert resp.status == 421, resp
    assert resp.upstream == []


def test_both_hosts_with_curl_over_http2(pki, envoy_hosts):
    port = envoy_hosts.port

    def status(host: str, token: str, *cert: str) -> str:
        return subprocess.run(
            ["curl", "-sS", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
             "--cacert", str(pki.ca), *cert, "--resolve", f"{host}:{port}:127.0.0.1",
             "-H", f"Authorization: Bearer {token}", f"https://{host}:{port}/h2"],
            check=True, capture_output=True, text=True, timeout=30,
        ).stdout

    a = ("--cert", str(pki.client_a.cert), "--key", str(pki.client_a.key))
    bound = pki.token(pki.client_a)
    assert status(MTLS, bound, *a) == "2 200"
    assert status(PLAIN, pki.token(None)) == "2 200"
    assert status(PLAIN, bound) == "2 401"
