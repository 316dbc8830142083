"""DPoP interop with real implementations: panva/oidc-provider
(tests/interop/dpop-provider.mjs, features.dPoP) issues DPoP-bound JWT
access tokens (RFC 9449 §6.1: ``cnf.jkt``), panva/oauth4webapi
(tests/interop/dpop-client.mjs) obtains them and calls the API through
Envoy 1.40 and certbound, a fresh proof per request.

    dpop-client.mjs --DPoP proof--> oidc-provider /token   (plain HTTP, loopback)
    dpop-client.mjs --TLS + DPoP--> Envoy + certbound --> echo backend
                                         `--- remote_jwks ---> oidc-provider /jwks

The issuer is ``http://127.0.0.1:<port>``, the URL the client discovers it
at (oauth4webapi checks that the two are the same). The client trusts the
session CA through ``NODE_EXTRA_CA_CERTS`` and calls
``https://127.0.0.1:<envoy port>/...``, so its proofs' ``htu`` names that.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import harness
from dpop_support import new_path, send
from interop_support import (
    CLUSTER, INTEROP_DIR, NODE, InteropEnvoy, OidcProvider, certbound_config, http_uri,
    missing_dependencies, new_secret, unverified_claims,
)

API = "https://api.example.com"
SCOPE = "api:read"
DPOP_CLIENT_ID = "dpop-client"
CLIENT_SCRIPT = INTEROP_DIR / "dpop-client.mjs"
NONCE_SECRET = "certbound interop DPoP nonce secret, 32+ bytes"
STATS = harness.STAT_NAMESPACE + "certbound."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DpopProvider(OidcProvider):
    """dpop-provider.mjs on a port chosen up front: the issuer names it."""

    script = INTEROP_DIR / "dpop-provider.mjs"

    def __init__(self, workdir: Path, client_secret: str) -> None:
        super().__init__(workdir, client_secret, rs_secret="unused")
        self.config_path = workdir / "dpop-provider.json"
        self.keys_path = workdir / "dpop-provider-keys.json"
        self.log_path = workdir / "dpop-provider.log"
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "host": "127.0.0.1",
            "port": self.port,
            "keys_file": str(self.keys_path),
            "clients": [{
                "client_id": DPOP_CLIENT_ID, "client_secret": self.client_secret,
                "grant_types": ["client_credentials"], "response_types": [],
                "redirect_uris": [], "token_endpoint_auth_method": "client_secret_basic",
                "dpop_bound_access_tokens": True,
            }],
            "resources": {API: {"format": "jwt", "scope": SCOPE, "ttl": 300}},
            "dpop": {"algs": ["ES256", "PS256", "EdDSA"]},
        }


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def as_server(envoy_workdir) -> Iterator[DpopProvider]:
    why = missing_dependencies()
    if why:
        pytest.fail(f"interop tests cannot run: {why}", pytrace=False)
    server = DpopProvider(envoy_workdir, client_secret=new_secret())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def start_api(pki, backend, envoy_workdir, as_server) -> Iterator[Callable[..., InteropEnvoy]]:
    """start(name, dpop) -> a certbound Envoy whose provider trusts the
    authorization server (keys from its jwks_uri) with that dpop block."""
    started: list[InteropEnvoy] = []

    def start(name: str, dpop: dict[str, Any]) -> InteropEnvoy:
        provider = {
            "issuer": as_server.issuer,
            "audiences": [API],
            "remote_jwks": {"http_uri": http_uri(as_server.port, "/jwks"),
                            "cache_duration": "300s"},
            "certificate_binding": "required",
            "forward": True,
            "claim_to_headers": [{"claim_name": "client_id",
                                  "header_name": "x-certbound-client-id"}],
            "dpop": dpop,
        }
        cfg = certbound_config(backend.port, provider, clusters={CLUSTER: as_server.port})
        envoy = InteropEnvoy(f"dpop_interop_{name}", cfg, pki.root, envoy_workdir)
        started.append(envoy)
        envoy.start()
        harness.WATCH.add(envoy)
        return envoy

    yield start

    left = harness.WATCH.stop(started)
    if left:
        pytest.fail("wasm VM failures in Envoy logs:\n" + "\n".join(left[:20]), pytrace=False)


@pytest.fixture(scope="module")
def api(start_api) -> InteropEnvoy:
    return start_api("api", {})


@pytest.fixture(scope="module")
def nonce_api(start_api) -> InteropEnvoy:
    return start_api("nonce", {"nonce": {"secret": NONCE_SECRET}})


# ---------------------------------------------------------------------------
# the oauth4webapi client
# ---------------------------------------------------------------------------


class DpopClient:
    """``node dpop-client.mjs``: one run per call, the key pair kept in
    ``key_file`` between runs."""

    def __init__(self, as_server: DpopProvider, pki: harness.Pki, key_file: Path,
                 alg: str = "ES256") -> None:
        self.as_server, self.pki, self.key_file, self.alg = as_server, pki, key_file, alg

    def run(self, mode: str, *args: str, token: str | None = None) -> dict[str, Any]:
        opts = {"issuer": self.as_server.issuer, "client-id": DPOP_CLIENT_ID,
                "client-secret": self.as_server.client_secret, "resource": API,
                "scope": SCOPE, "alg": self.alg, "key-file": str(self.key_file)}
        if token is not None:
            opts["token"] = token
        # --name=value: node's parseArgs refuses a separate value that starts
        # with "-", as a random secret may.
        cmd = [NODE, str(CLIENT_SCRIPT), mode, *args, *(f"--{k}={v}" for k, v in opts.items())]
        env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(self.pki.ca)}
        out = subprocess.run(cmd, cwd=INTEROP_DIR, env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, (out.stderr, self.as_server.log_tail())
        return json.loads(out.stdout)

    def token(self) -> dict[str, Any]:
        return self.run("token")

    def call(self, envoy: harness.Envoy, path: str, token: str | None = None) -> dict[str, Any]:
        return self.run("call", url(envoy, path), token=token)

    def proof(self, envoy: harness.Envoy, path: str, token: str) -> dict[str, Any]:
        return self.run("proof", url(envoy, path), token=token)


def url(envoy: harness.Envoy, path: str) -> str:
    return f"https://127.0.0.1:{envoy.port}{path}"


@pytest.fixture
def key_file(tmp_path) -> Path:
    return tmp_path / "dpop-key.json"


def counters(envoy: harness.Envoy) -> dict[str, int]:
    return {k[len(STATS):]: v for k, v in envoy.stats("^" + STATS.replace(".", "\\.")).items()}


def delta(envoy: harness.Envoy, before: dict[str, int]) -> dict[str, int]:
    """The counters a request moved. Key fetching is left out: the native
    build fetches with the first request rather than at start."""
    after = counters(envoy)
    return {k: v - before.get(k, 0) for k, v in after.items()
            if v != before.get(k, 0)
            and not k.startswith(("cache_", "provider.oidc.jwks", "provider.oidc.keys_loaded"))}


# ---------------------------------------------------------------------------
# the authorization server itself
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "PS256", "EdDSA"])
def test_as_issues_dpop_bound_jwt_access_tokens(alg, as_server, pki, key_file):
    got = DpopClient(as_server, pki, key_file, alg).token()
    assert got["token_type"].lower() == "dpop", got
    header, claims = unverified_claims(got["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256", header
    assert claims["iss"] == as_server.issuer and claims["aud"] == API, claims
    assert claims["client_id"] == DPOP_CLIENT_ID, claims
    assert claims["cnf"] == {"jkt": got["jkt"]}, claims
    assert got["bound"] is True


# ---------------------------------------------------------------------------
# certbound
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "PS256", "EdDSA"])
def test_client_calls_the_api(alg, api, as_server, pki, backend, key_file):
    client = DpopClient(as_server, pki, key_file, alg)
    before = counters(api)
    path = new_path("/interop")
    got = client.call(api, path)
    assert got["status"] == 200, got
    assert got["attempts"] == 1, got
    (seen,) = backend.seen(path)
    assert seen["headers"]["authorization"].startswith("DPoP "), seen
    assert seen["headers"]["x-certbound-client-id"] == DPOP_CLIENT_ID, seen
    assert delta(api, before) == {"allowed": 1, "provider.oidc.allowed": 1, "dpop.accepted": 1}


def test_token_replayed_without_the_key(api, as_server, pki, backend, tmp_path):
    """The token of one client, used by another with its own key: its
    proofs are valid, but not by the key the token is bound to."""
    owner = DpopClient(as_server, pki, tmp_path / "owner.json")
    thief = DpopClient(as_server, pki, tmp_path / "thief.json")
    token = owner.token()["access_token"]
    assert owner.call(api, new_path("/interop"), token=token)["status"] == 200
    before = counters(api)
    got = thief.call(api, new_path("/interop"), token=token)
    assert got["status"] == 401, got
    assert ('DPoP algs="ES256 PS256 EdDSA Ed25519", error="invalid_token", '
            'error_description="DPoP key binding mismatch"') in got["www_authenticate"], got
    # as a bearer token, no proof at all
    r = send(api, backend, pki.ca, new_path("/interop"), host=f"127.0.0.1:{api.port}",
             headers=[("authorization", f"Bearer {token}")])
    assert r.status == 401, r
    assert r.challenges == [
        "Bearer",
        'DPoP algs="ES256 PS256 EdDSA Ed25519", error="invalid_token", '
        'error_description="DPoP-bound token sent with the Bearer scheme"'], r
    assert delta(api, before) == {"denied": 2, "provider.oidc.denied": 2,
                                  "denied.dpop_key_mismatch": 1,
                                  "denied.dpop_bearer_scheme": 1}


def test_replayed_proof(api, as_server, pki, backend, key_file):
    client = DpopClient(as_server, pki, key_file)
    token = client.token()["access_token"]
    path = new_path("/interop")
    made = client.proof(api, path, token)
    assert made["htu"] == url(api, path) and made["method"] == "GET", made
    headers = [("authorization", f"DPoP {token}"), ("dpop", made["proof"])]
    host = f"127.0.0.1:{api.port}"
    first = send(api, backend, pki.ca, path, host=host, headers=headers)
    assert first.status == 200, first
    before = counters(api)
    second = send(api, backend, pki.ca, path, host=host, headers=headers)
    assert second.status == 401, second
    assert second.challenges == [
        "Bearer",
        'DPoP algs="ES256 PS256 EdDSA Ed25519", error="invalid_dpop_proof", '
        'error_description="DPoP proof replayed"'], second
    assert len(second.upstream) == 1, "only the first request reached the backend"
    assert delta(api, before) == {"denied": 1, "provider.oidc.denied": 1,
                                  "denied.dpop_replayed": 1}


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_client_retries_with_certbounds_nonce(alg, nonce_api, as_server, pki, backend,
                                              key_file):
    """Nonces on at certbound: the client's first proof has none, the
    answer is use_dpop_nonce with a DPoP-Nonce, and oauth4webapi retries
    with it by itself."""
    client = DpopClient(as_server, pki, key_file, alg)
    before = counters(nonce_api)
    path = new_path("/interop")
    got = client.call(nonce_api, path)
    assert got["status"] == 200, got
    assert got["attempts"] == 2, got
    assert len(backend.seen(path)) == 1
    assert delta(nonce_api, before) == {
        "denied": 1, "provider.oidc.denied": 1, "denied.dpop_nonce_required": 1,
        "dpop.nonce_issued": 1, "allowed": 1, "provider.oidc.allowed": 1, "dpop.accepted": 1,
    }
