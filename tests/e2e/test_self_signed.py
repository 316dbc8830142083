"""RFC 8705 section 2.2, the self-signed certificate method, as shipped in
envoy/self-signed.yaml: Envoy requires a client certificate but accepts any
(trust_chain_verification: ACCEPT_UNTRUSTED, no trusted CA), and certbound's
binding is the only thing that ties a request to its client.

Each client makes its own key and self-signed certificate (envoy/demo.py's
self_signed, what `demo.py self-signed` and `make demo` use); the token is
bound to that certificate's thumbprint, as an authorization server would bind
it after the client authenticated with it."""

from __future__ import annotations

import datetime as dt
import http.client
import ssl
import subprocess
from pathlib import Path

import pytest
import yaml

import harness
from harness import Client

demo = harness.demo
MISMATCH = "certificate binding mismatch"


def self_signed_client(directory: Path, name: str, **kw) -> Client:
    key, cert = demo.self_signed(name, **kw)
    c = Client(name, directory / f"{name}.pem", directory / f"{name}-key.pem")
    c.cert.write_bytes(demo.cert_pem(cert))
    c.key.write_bytes(demo.key_pem(key))
    return c


@pytest.fixture(scope="module")
def apps(tmp_path_factory) -> dict[str, Client]:
    d = tmp_path_factory.mktemp("self-signed")
    out = {name: self_signed_client(d, name) for name in ("app-1", "app-2")}
    # The same key pair as app-1 in a second certificate: another thumbprint.
    app1_key = demo.load_key(out["app-1"].key)
    out["app-1-reissued"] = self_signed_client(d, "app-1-reissued", key=app1_key)
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)
    out["expired"] = self_signed_client(d, "expired", not_before=past, days=1)
    return out


@pytest.fixture(scope="module")
def envoy_ss(envoy_factory):
    return envoy_factory("self_signed", config=harness.SELF_SIGNED_CONFIG)


@pytest.fixture
def call(pki, backend, envoy_ss):
    def _call(**kw) -> harness.Response:
        return harness.request(envoy_ss, backend, pki.ca, **kw)

    return _call


def assert_denied(resp: harness.Response, description: str) -> None:
    assert resp.status == 401, resp
    assert resp.www_authenticate == (
        f'Bearer error="invalid_token", error_description="{description}"'), resp
    assert resp.upstream == [], "a rejected request must not reach the backend"


# -- the shipped file -------------------------------------------------------


def test_shipped_file_validates(pki):
    """`envoy --mode validate` on the unmodified envoy/self-signed.yaml."""
    res = harness.validate(harness.SELF_SIGNED_CONFIG, cwd=pki.root, jwks_text=pki.idp_jwks_text)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert f"configuration '{harness.SELF_SIGNED_CONFIG}' OK" in res.stdout, out


def test_shipped_file_accepts_any_certificate_and_requires_binding():
    cfg = yaml.safe_load(harness.SELF_SIGNED_CONFIG.read_text())
    (chain,) = harness._listener(cfg)["filter_chains"]
    tls = chain["transport_socket"]["typed_config"]
    # Without a trusted_ca, Envoy ignores require_client_certificate (see the
    # test without a certificate): the file says so instead of pretending.
    assert tls["require_client_certificate"] is False
    vc = tls["common_tls_context"]["validation_context"]
    assert vc == {"trust_chain_verification": "ACCEPT_UNTRUSTED"}, "no CA: any certificate"
    idp = harness.plugin_json(cfg)["providers"]["idp"]
    assert idp["certificate_binding"] == "required"
    # Everything else as in envoy.yaml: one IdP configuration for both shapes.
    shipped = harness.plugin_json(harness.load_shipped_config())
    assert harness.plugin_json(cfg) == shipped


# -- real Envoy, real TLS ---------------------------------------------------


def test_self_signed_certificate_with_its_bound_token_is_forwarded(call, pki, apps):
    token = pki.token(apps["app-1"])
    resp = call(token=token, client=apps["app-1"])
    assert resp.status == 200, resp
    (seen,) = resp.upstream
    assert seen["headers"]["authorization"] == f"Bearer {token}"


def test_same_token_from_another_self_signed_certificate_is_rejected(call, pki, apps):
    assert_denied(call(token=pki.token(apps["app-1"]), client=apps["app-2"]), MISMATCH)


def test_each_self_signed_client_gets_its_own_binding(call, pki, apps):
    token = pki.token(apps["app-2"])
    assert call(token=token, client=apps["app-2"]).status == 200
    assert_denied(call(token=token, client=apps["app-1"]), MISMATCH)


def test_binding_is_to_the_certificate_not_the_key(call, pki, apps):
    """x5t#S256 hashes the whole certificate: a new certificate for the same
    key does not carry the old certificate's tokens."""
    assert apps["app-1"].thumbprint != apps["app-1-reissued"].thumbprint
    assert_denied(call(token=pki.token(apps["app-1"]), client=apps["app-1-reissued"]), MISMATCH)
    assert call(token=pki.token(apps["app-1-reissued"]), client=apps["app-1-reissued"]).status == 200


def test_certificate_validity_dates_are_not_checked(call, pki, apps):
    """ACCEPT_UNTRUSTED without a CA checks nothing in the certificate, not even
    its dates: the token's own exp is the only lifetime."""
    assert call(token=pki.token(apps["expired"]), client=apps["expired"]).status == 200
    assert_denied(call(token=pki.token(apps["expired"], expires_in=-3600),
                       client=apps["expired"]), "token expired")


def test_ca_signed_certificate_is_just_another_certificate(call, pki):
    assert call(token=pki.token(pki.client_a), client=pki.client_a).status == 200
    assert call(token=pki.token(pki.rogue), client=pki.rogue).status == 200
    assert_denied(call(token=pki.token(pki.client_a), client=pki.rogue), MISMATCH)


def test_unbound_token_is_rejected(call, pki, apps):
    assert_denied(call(token=pki.token(None), client=apps["app-1"]), "token is not certificate-bound")


def test_request_without_token_is_rejected(call, apps):
    resp = call(client=apps["app-1"])
    assert resp.status == 401 and resp.www_authenticate == "Bearer", resp
    assert resp.upstream == []


def test_without_a_certificate_every_token_is_refused(call, pki, apps):
    """Envoy cannot refuse the handshake without a trusted_ca (ACCEPT_UNTRUSTED
    requests a certificate, never requires one): certbound refuses instead."""
    assert_denied(call(token=pki.token(apps["app-1"]), client=None), "client certificate required")
    assert_denied(call(token=pki.token(None), client=None), "token is not certificate-bound")


def test_with_a_trusted_ca_the_handshake_requires_a_certificate(pki, backend, envoy_factory, apps):
    """The other way, when every client's TLS stack sends its certificate
    whatever CA names the server lists: add a trusted_ca (any CA) and
    require_client_certificate takes effect; ACCEPT_UNTRUSTED still takes
    certificates that do not chain to it."""
    cfg_path = pki.root / "self-signed-with-ca.yaml"
    cfg = yaml.safe_load(harness.SELF_SIGNED_CONFIG.read_text())
    tls = harness._listener(cfg)["filter_chains"][0]["transport_socket"]["typed_config"]
    tls["require_client_certificate"] = True
    tls["common_tls_context"]["validation_context"]["trusted_ca"] = {"filename": "envoy/certs/ca.pem"}
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    envoy = envoy_factory("self_signed_with_ca", config=cfg_path)
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        harness.request(envoy, backend, pki.ca, token=pki.token(apps["app-1"]), client=None)
    ok = harness.request(envoy, backend, pki.ca, token=pki.token(apps["app-1"]), client=apps["app-1"])
    assert ok.status == 200, ok


def test_http2_with_curl(pki, envoy_ss, apps):
    """The same over HTTP/2 with curl (OpenSSL), the client an app's test would use."""
    token = pki.token(apps["app-1"])

    def status(client: Client) -> str:
        return subprocess.run(
            ["curl", "-sS", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
             "--cacert", str(pki.ca), "--cert", str(client.cert), "--key", str(client.key),
             "--resolve", f"localhost:{envoy_ss.port}:127.0.0.1",
             "-H", f"Authorization: Bearer {token}", f"https://localhost:{envoy_ss.port}/h2"],
            check=True, capture_output=True, text=True, timeout=30,
        ).stdout

    assert status(apps["app-1"]) == "2 200"
    assert status(apps["app-2"]) == "2 401"
