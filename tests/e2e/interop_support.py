"""Interop harness: a real OAuth 2.0 authorization server, panva/oidc-provider
(tests/interop, pinned in its package-lock.json), issuing RFC 8705
certificate-bound access tokens that certbound checks in Envoy 1.40.

Pieces, all on 127.0.0.1 with ports chosen by the OS:

* ``OidcProvider``: ``node tests/interop/oidc-server.mjs CONFIG`` over plain
  HTTP. Ready when it prints ``listening <port>`` and its discovery document
  answers. ``stop()``/``start()`` take it down and bring it back on the same
  port with the same signing keys (they live in a file).
* the front Envoy (``front_envoy_config``): terminates mTLS for the token,
  revocation and introspection endpoints and hands the client certificate
  to oidc-provider in ``x-forwarded-client-cert`` (SANITIZE_SET + cert:
  true; any XFCC a client sends is dropped). oidc-provider's
  ``features.mTLS.getCertificate`` parses that header's ``Cert=``.
* certbound Envoys (``certbound_config``): the shipped envoy/envoy.yaml with
  the plugin JSON replaced and an ``oidc_provider`` cluster that reaches
  the node server directly for ``remote_jwks`` and introspection.
* ``BlackHole``: a TCP listener that accepts connections and never answers.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import selectors
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness

INTEROP_DIR = harness.REPO / "tests" / "interop"
SERVER_SCRIPT = INTEROP_DIR / "oidc-server.mjs"
NODE = os.environ.get("CERTBOUND_NODE") or shutil.which("node") or "node"

ISSUER = "https://as.interop.test"
JWT_API = "https://api.example.com"  # resource whose access tokens are JWTs
OPAQUE_API = "https://opaque.api.example.com"  # resource with opaque tokens
SCOPE = "api:read"

CLIENT_ID = "api-client"  # client_credentials, certificate-bound tokens
RS_CLIENT_ID = "certbound-rs"  # the resource server: introspection only
CLUSTER = "oidc_provider"
SECRET_ENV = "CERTBOUND_INTROSPECTION_SECRET"


def missing_dependencies() -> str | None:
    """Why the interop tests cannot run here, or None."""
    if shutil.which(NODE) is None and not Path(NODE).exists():
        return f"node not found ({NODE!r}); install Node.js >= 18"
    if not (INTEROP_DIR / "node_modules" / "oidc-provider" / "package.json").exists():
        return f"{INTEROP_DIR}/node_modules is not installed: run `make interop-deps`"
    return None


def form_urlencode(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def basic_auth(client_id: str, secret: str) -> str:
    """client_secret_basic (RFC 6749 §2.3.1: both parts form-urlencoded first)."""
    pair = f"{form_urlencode(client_id)}:{form_urlencode(secret)}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def new_secret() -> str:
    # Reserved characters on purpose: they must survive the form-urlencoding
    # of RFC 6749 §2.3.1 on both sides (certbound encodes, oidc-provider decodes).
    return secrets.token_urlsafe(18) + ":+ &%/="


def unverified_claims(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of a JWS, without verifying anything."""
    h, p, _ = token.split(".")

    def dec(seg: str) -> dict[str, Any]:
        return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))

    return dec(h), dec(p)


# ---------------------------------------------------------------------------
# oidc-provider (node)
# ---------------------------------------------------------------------------


class OidcProviderError(AssertionError):
    pass


class OidcProvider:
    """The node server: one process at a time, always on the same port once
    one was chosen, the same signing keys across restarts. Subclasses run
    another ``script`` (tests/interop/dpop-provider.mjs) with their own
    ``config()`` and ``issuer``."""

    script = SERVER_SCRIPT
    issuer = ISSUER

    def __init__(self, workdir: Path, client_secret: str, rs_secret: str,
                 ready_timeout: float = harness.READY_TIMEOUT) -> None:
        self.workdir = workdir
        self.client_secret = client_secret
        self.rs_secret = rs_secret
        self.ready_timeout = ready_timeout
        self.config_path = workdir / "oidc-provider.json"
        self.keys_path = workdir / "oidc-provider-keys.json"
        self.log_path = workdir / "oidc-provider.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def config(self) -> dict[str, Any]:
        common = {"response_types": [], "redirect_uris": [],
                  "token_endpoint_auth_method": "client_secret_basic"}
        return {
            "issuer": ISSUER,
            "host": "127.0.0.1",
            "port": self.port,
            "keys_file": str(self.keys_path),
            "clients": [
                {**common, "client_id": CLIENT_ID, "client_secret": self.client_secret,
                 "grant_types": ["client_credentials"],
                 "tls_client_certificate_bound_access_tokens": True},
                {**common, "client_id": RS_CLIENT_ID, "client_secret": self.rs_secret,
                 "grant_types": []},
            ],
            "resources": {
                JWT_API: {"format": "jwt", "scope": SCOPE, "ttl": 300},
                OPAQUE_API: {"format": "opaque", "scope": SCOPE, "ttl": 300},
            },
            "introspectors": [RS_CLIENT_ID],
        }

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "OidcProvider":
        """Spawn node, wait for ``listening <port>``, then poll discovery."""
        if self.running:
            return self
        self.config_path.write_text(json.dumps(self.config(), indent=2))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [NODE, str(self.script), str(self.config_path)],
                cwd=INTEROP_DIR, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + self.ready_timeout
        port = self._read_port(deadline)
        if self.port and port != self.port:
            self.stop()
            raise OidcProviderError(f"oidc-provider came back on port {port}, not {self.port}")
        self.port = port
        while not self._discovery_ok():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise OidcProviderError("oidc-provider never served its discovery document:\n"
                                        + self.log_tail())
            harness._poll_sleep(self.proc)
        return self

    def _read_port(self, deadline: float) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        line = b""
        try:
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(timeout=left):
                    self.stop()
                    raise OidcProviderError(
                        f"oidc-provider not listening after {self.ready_timeout}s:\n"
                        + self.log_tail())
                chunk = os.read(self.proc.stdout.fileno(), 256)
                if not chunk:
                    self.proc.wait(timeout=5)
                    raise OidcProviderError(
                        f"oidc-provider exited with {self.proc.returncode}:\n" + self.log_tail())
                line += chunk
        finally:
            sel.close()
        word, _, port = line.decode().strip().partition(" ")
        if word != "listening" or not port.isdigit():
            self.stop()
            raise OidcProviderError(f"unexpected first line from oidc-provider: {line!r}")
        return int(port)

    def _discovery_ok(self) -> bool:
        try:
            with urllib.request.urlopen(
                    f"{self.base_url}/.well-known/openid-configuration", timeout=2) as r:
                return r.status == 200 and json.load(r)["issuer"] == self.issuer
        except OSError:
            return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def jwks(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base_url}/jwks", timeout=5) as r:
            return json.load(r)


# ---------------------------------------------------------------------------
# Envoy configurations
# ---------------------------------------------------------------------------


def _static_cluster(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.5s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }


def front_envoy_config(node_port: int) -> dict[str, Any]:
    """The authorization server's own Envoy: mTLS (optional, so that a
    request without a certificate reaches oidc-provider and is refused
    there), the client certificate forwarded in XFCC, paths relative to the
    session root like the shipped config."""
    tls = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                     "DownstreamTlsContext",
            "require_client_certificate": False,
            "common_tls_context": {
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificates": [{
                    "certificate_chain": {"filename": "envoy/certs/server.pem"},
                    "private_key": {"filename": "envoy/certs/server-key.pem"},
                }],
                "validation_context": {"trusted_ca": {"filename": "envoy/certs/ca.pem"}},
            },
        },
    }
    hcm = {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network."
                     "http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "oidc_front",
            "codec_type": "AUTO",
            "use_remote_address": True,
            # Drop any XFCC the client sent; set our own with the PEM of the
            # certificate this TLS connection presented (if any).
            "forward_client_cert_details": "SANITIZE_SET",
            "set_current_client_cert_details": {"cert": True},
            "route_config": {
                "name": "oidc",
                "virtual_hosts": [{
                    "name": "oidc", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"},
                                "route": {"cluster": CLUSTER, "timeout": "5s"}}],
                }],
            },
            "http_filters": [{
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            }],
        },
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "oidc_front",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"transport_socket": tls, "filters": [hcm]}],
            }],
            "clusters": [_static_cluster(CLUSTER, node_port)],
        },
    }


def certbound_config(backend_port: int, provider: dict[str, Any], *,
                     clusters: dict[str, int], host_env_keys: tuple[str, ...] = ()
                     ) -> dict[str, Any]:
    """The shipped envoy.yaml with the plugin JSON ``{"providers": {"oidc":
    provider}}``, extra STATIC clusters (name -> port on 127.0.0.1) and extra
    VM environment variables passed through from Envoy's environment."""
    cfg = harness.scenario_config(backend_port, plugin={"providers": {"oidc": provider}})
    for name, port in clusters.items():
        cfg["static_resources"]["clusters"].append(_static_cluster(name, port))
    env = harness.wasm_plugin(cfg)["vm_config"].setdefault("environment_variables", {})
    keys = env.setdefault("host_env_keys", [])
    keys.extend(k for k in host_env_keys if k not in keys)
    return cfg


def http_uri(port: int, path: str, timeout: str = "1s", cluster: str = CLUSTER) -> dict[str, Any]:
    return {"uri": f"http://127.0.0.1:{port}{path}", "cluster": cluster, "timeout": timeout}


class InteropEnvoy(harness.Envoy):
    """harness.Envoy with extra environment variables (for the VM's
    host_env_keys) and no CERTBOUND_JWKS."""

    def __init__(self, name: str, cfg: dict[str, Any], root: Path, workdir: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        super().__init__(name, cfg, root, workdir, jwks_text=None)
        self.extra_env = dict(extra_env or {})


# ---------------------------------------------------------------------------
# the client side of the authorization server
# ---------------------------------------------------------------------------


@dataclass
class AsResponse:
    status: int
    body: dict[str, Any]


def as_post(front: harness.Envoy, ca: Path, client: harness.Client | None, path: str,
            form: dict[str, str], auth: str, headers: dict[str, str] | None = None
            ) -> AsResponse:
    """POST a form to the authorization server through its front Envoy, on a
    fresh TLS connection presenting ``client``'s certificate (or none)."""
    body = urllib.parse.urlencode(form)
    hdrs = {"host": "localhost", "content-type": "application/x-www-form-urlencoded",
            "accept": "application/json", "authorization": auth, **(headers or {})}
    conn = http.client.HTTPSConnection("127.0.0.1", front.port, timeout=harness.HTTP_TIMEOUT,
                                       context=harness.tls_context(ca, client))
    try:
        conn.request("POST", path, body=body, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {"raw": raw.decode(errors="replace")}
    return AsResponse(resp.status, data)


# ---------------------------------------------------------------------------
# an introspection endpoint that never answers
# ---------------------------------------------------------------------------


class BlackHole:
    """Accepts TCP connections and reads whatever comes, never answering."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._closing = threading.Event()
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, name=f"black-hole-{self.port}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5)
        for c in self._conns:
            c.close()
        self._sock.close()
