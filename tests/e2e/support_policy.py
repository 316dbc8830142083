"""Helpers for test_policy.py and test_forwarded.py, on top of harness.py.

What harness.py does not offer and these tests need:

* ``Fleet``: several Envoys per module, started concurrently (each start is
  ~2 s of V8 compiling the filter), each log scanned for wasm VM failures
  after every test (the same patterns conftest.py uses);
* configs derived from the shipped envoy/envoy.yaml for a **back** Envoy (XFCC
  passed to the filter instead of sanitised, optionally ``use_remote_address``)
  and a **front** Envoy (no wasm, mTLS terminated, XFCC written, routes to
  several upstream clusters);
* ``send``: one request on a fresh TLS connection with any path and query,
  repeated header names, an optional client certificate and an optional
  **source address** (127.0.0.x: every loopback address is local on Linux, so
  a socket bound to 127.0.0.3 is a genuinely different peer for Envoy);
* ``Recorder``: the echo backend, indexed by path without the query string,
  so that a request whose query the filter rewrote is still found;
* token minting with full control over the JOSE header (``typ``, ``crit``);
* ``Stats``: the filter's counters from the admin ``/stats``. Envoy 1.40
  exposes the filter's metrics with a ``wasmcustom.`` prefix (``dynamicmodulescustom.`` natively)
  (``wasmcustom.certbound.allowed``); the prefix is removed here.
"""

from __future__ import annotations

import base64
import copy
import datetime as _dt
import hashlib
import http.client
import os
import re
import socket
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

import harness
from harness import Client, Envoy, Pki, demo

ISSUER = demo.ISSUER
AUDIENCE = demo.AUDIENCE

# ---------------------------------------------------------------------------
# tokens
# ---------------------------------------------------------------------------


def sign(key: Any, alg: str, claims: Mapping[str, Any], header: Mapping[str, Any] | None = None) -> str:
    """A JWS over ``claims``. ``header`` is merged into PyJWT's
    ``{"alg", "typ": "JWT"}``; a ``None`` value removes the member."""
    hdr = dict(header or {})
    return jwt.encode(dict(claims), key, algorithm=alg, headers=hdr)


def claims(
    *,
    cert: Client | Path | None = None,
    iss: str | None = ISSUER,
    aud: str | list[str] | None = AUDIENCE,
    sub: str | None = "demo-client",
    lifetime: int | None = 300,
    nbf: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Access-token claims: bound to ``cert`` (``cnf.x5t#S256``) if given.
    ``lifetime`` None: no ``exp``. ``nbf`` is relative to now. A claim
    passed as None in ``extra`` is left out."""
    now = int(time.time())
    c: dict[str, Any] = {"iat": now, "jti": uuid.uuid4().hex}
    if sub is not None:
        c["sub"] = sub
    if iss is not None:
        c["iss"] = iss
    if aud is not None:
        c["aud"] = aud
    if lifetime is not None:
        c["exp"] = now + lifetime
    if nbf is not None:
        c["nbf"] = now + nbf
    if cert is not None:
        path = cert.cert if isinstance(cert, Client) else cert
        c["cnf"] = {"x5t#S256": demo.thumbprint(path)}
    for k, v in extra.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def payload_segment(token: str) -> str:
    return token.split(".")[1]


def tamper_signature(token: str) -> str:
    h, p, s = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return ".".join([h, p, demo.b64url(bytes(raw))])


# ---------------------------------------------------------------------------
# certificates for the forwarded-certificate tests
# ---------------------------------------------------------------------------


def issue_client_cert(pki: Pki, name: str, *, uri_sans: Iterable[str] = ()) -> Client:
    """A client certificate from the session CA (so Envoy accepts it), with
    the given URI SANs (``spiffe://...``), written next to the others."""
    ca_key = demo.load_key(pki.certs / "ca-key.pem")
    ca_cert = demo.load_cert(pki.ca)
    key = demo.new_ec_key()
    now = _dt.datetime.now(_dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    sans = [x509.UniformResourceIdentifier(u) for u in uri_sans]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path = pki.certs / f"{name}.pem"
    key_path = pki.certs / f"{name}-key.pem"
    cert_path.write_bytes(demo.cert_pem(cert))
    key_path.write_bytes(demo.key_pem(key))
    return Client(name, cert_path, key_path)


def cert_der(client: Client) -> bytes:
    return demo.load_cert(client.cert).public_bytes(serialization.Encoding.DER)


def url_encoded_pem(client: Client) -> str:
    """As nginx's ``$ssl_client_escaped_cert`` and Envoy's XFCC ``Cert=``."""
    return urllib.parse.quote(client.cert.read_text(), safe="")


def xfcc_naming(client: Client) -> str:
    """An XFCC value in the shape a real Envoy writes (see test_forwarded)."""
    der = cert_der(client)
    return f'Hash={hashlib.sha256(der).hexdigest()};Cert="{url_encoded_pem(client)}";URI='


def rfc9440(client: Client) -> str:
    """RFC 9440 ``Client-Cert``: an RFC 8941 byte sequence of the DER."""
    return ":" + base64.b64encode(cert_der(client)).decode() + ":"


# ---------------------------------------------------------------------------
# echo backend, indexed by path without the query string
# ---------------------------------------------------------------------------


class Recorder(harness.Backend):
    """harness.Backend, but ``seen(base)`` ignores the query string."""

    def _record(self, req: dict[str, Any]) -> None:
        base = req["path"].split("?", 1)[0]
        with self._lock:
            self._seen.setdefault(base, []).append(req)

    def seen(self, path: str) -> list[dict[str, Any]]:
        return super().seen(path.split("?", 1)[0])


# ---------------------------------------------------------------------------
# requests
# ---------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    path: str  # as sent
    upstream: list[dict[str, Any]]  # what the backend received for this path

    @property
    def www_authenticate(self) -> str | None:
        return self.headers.get("www-authenticate")

    @property
    def seen(self) -> dict[str, Any]:
        """The one request the backend received (method, path, headers)."""
        assert len(self.upstream) == 1, f"expected exactly one upstream request: {self!r}"
        return self.upstream[0]

    @property
    def seen_headers(self) -> dict[str, str]:
        return self.seen["headers"]

    def __repr__(self) -> str:
        return (f"Reply({self.path} -> {self.status}, www-authenticate={self.www_authenticate!r}, "
                f"body={self.body[:160]!r}, upstream={self.upstream!r})")


def unique(prefix: str) -> str:
    """``prefix`` + a fresh segment, so the backend's record is this request's."""
    return f"{prefix.rstrip('/')}/{uuid.uuid4().hex[:16]}"


def send(
    port: int,
    backend: Recorder,
    ca: Path,
    path: str,
    *,
    client: Client | None = None,
    token: str | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    source: str | None = None,
    method: str = "GET",
) -> Reply:
    """One HTTP/1.1 request on a fresh (m)TLS connection to 127.0.0.1:port.

    ``headers`` may be a list of pairs, to send a name twice. ``token`` adds
    ``Authorization: Bearer <token>``. ``source`` binds the client socket to
    that local address (e.g. 127.0.0.3)."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if token is not None:
        pairs.append(("authorization", f"Bearer {token}"))
    if not any(k.lower() == "host" for k, _ in pairs):
        pairs.insert(0, ("host", "localhost"))
    conn = http.client.HTTPSConnection(
        "127.0.0.1", port, timeout=harness.HTTP_TIMEOUT,
        context=harness.tls_context(ca, client),
        source_address=(source, 0) if source else None)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in pairs:
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        got: dict[str, str] = {}
        for k, v in resp.getheaders():
            k = k.lower()
            got[k] = f"{got[k]}, {v}" if k in got else v
        status = resp.status
    finally:
        conn.close()
    return Reply(status, got, body, path, backend.seen(path))


def assert_invalid_token(r: Reply, description: str | None = None) -> None:
    assert r.status == 401, r
    wa = r.www_authenticate or ""
    assert wa.startswith('Bearer error="invalid_token", error_description="'), r
    if description is not None:
        assert wa == f'Bearer error="invalid_token", error_description="{description}"', r
    assert r.upstream == [], f"a rejected request reached the backend: {r!r}"


def assert_missing_token(r: Reply) -> None:
    assert r.status == 401, r
    assert r.www_authenticate == "Bearer", r
    assert r.upstream == [], f"a rejected request reached the backend: {r!r}"


def assert_passed(r: Reply) -> dict[str, str]:
    """200 from the backend, which saw the request exactly once; its headers."""
    assert r.status == 200, r
    return r.seen_headers


# ---------------------------------------------------------------------------
# stats
# ---------------------------------------------------------------------------

STAT_PREFIX = harness.STAT_NAMESPACE


class Stats:
    """The filter's counters: ``certbound.*`` without Envoy's ``wasmcustom.``."""

    def __init__(self, envoy: Envoy) -> None:
        self.envoy = envoy

    def read(self) -> dict[str, int]:
        counters = self.envoy.stats("^" + re.escape(STAT_PREFIX) + r"certbound\.")
        return {name[len(STAT_PREFIX):]: v for name, v in counters.items()}

    def delta(self, before: Mapping[str, int], *, ignore: Iterable[str] = ()) -> dict[str, int]:
        """Counters that moved since ``before`` (new names count from 0)."""
        skip = set(ignore)
        now = self.read()
        return {k: v - before.get(k, 0) for k, v in sorted(now.items())
                if v != before.get(k, 0) and k not in skip}

    def expect(self, before: Mapping[str, int], expected: Mapping[str, int], *,
               ignore: Iterable[str] = (), timeout: float = 2.0) -> None:
        """Poll (counters are bumped before the reply, but do not rely on it)
        until exactly ``expected`` moved, or fail with what did."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.delta(before, ignore=ignore)
            if got == dict(expected) or time.monotonic() > deadline:
                break
            time.sleep(harness.POLL_INTERVAL)
        assert got == dict(expected), f"counter deltas: got {got}, expected {dict(expected)}"


# ---------------------------------------------------------------------------
# Envoy configs derived from the shipped envoy.yaml
# ---------------------------------------------------------------------------


def hcm(cfg: dict[str, Any]) -> dict[str, Any]:
    (chain,) = harness._listener(cfg)["filter_chains"]
    (f,) = chain["filters"]
    return f["typed_config"]


def back_config(
    backend_port: int,
    plugin: dict[str, Any],
    *,
    xfcc: str | None = None,
    use_remote_address: bool | None = None,
) -> dict[str, Any]:
    """The shipped config (ports, plugin JSON rewritten by harness) plus, on
    its HTTP connection manager, ``forward_client_cert_details = xfcc`` and
    ``use_remote_address`` when given."""
    cfg = harness.scenario_config(backend_port, plugin=plugin)
    h = hcm(cfg)
    if xfcc is not None:
        h["forward_client_cert_details"] = xfcc
    if use_remote_address is not None:
        h["use_remote_address"] = use_remote_address
    return cfg


def upstream_tls(pki: Pki, client: Client | None) -> dict[str, Any]:
    common: dict[str, Any] = {"validation_context": {"trusted_ca": {"filename": str(pki.ca)}}}
    if client is not None:
        common["tls_certificates"] = [{
            "certificate_chain": {"filename": str(client.cert)},
            "private_key": {"filename": str(client.key)},
        }]
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": "localhost",
            "common_tls_context": common,
        },
    }


def front_config(
    pki: Pki,
    backend_port: int,
    routes: list[tuple[str, int | None, Client | None]],
) -> dict[str, Any]:
    """A TLS-terminating front Envoy from the shipped config: same mTLS
    listener, no wasm filter, XFCC written for the next hop
    (``SANITIZE_SET`` with the client's ``Cert`` and ``URI``).

    ``routes``: (path prefix, upstream TLS port or None for the plain echo
    backend, client certificate the front presents upstream or None).
    Upstream connections leave from 127.0.0.1 explicitly."""
    cfg = harness.scenario_config(backend_port)
    h = hcm(cfg)
    h["http_filters"] = [f for f in h["http_filters"] if f["name"] != harness.WASM_FILTER]
    h["forward_client_cert_details"] = "SANITIZE_SET"
    h["set_current_client_cert_details"] = {"cert": True, "uri": True}
    (vhost,) = h["route_config"]["virtual_hosts"]
    (backend_cluster,) = cfg["static_resources"]["clusters"]
    clusters = [backend_cluster]
    vhost["routes"] = []
    for i, (prefix, port, client) in enumerate(routes):
        if port is None:
            name = backend_cluster["name"]
        else:
            name = f"hop_{i}"
            c = copy.deepcopy(backend_cluster)
            c["name"] = name
            c["load_assignment"]["cluster_name"] = name
            (ep,) = c["load_assignment"]["endpoints"][0]["lb_endpoints"]
            ep["endpoint"]["address"]["socket_address"].update(address="127.0.0.1", port_value=port)
            c["transport_socket"] = upstream_tls(pki, client)
            c["upstream_bind_config"] = {"source_address": {"address": "127.0.0.1", "port_value": 0}}
            clusters.append(c)
        vhost["routes"].append({"match": {"prefix": prefix}, "route": {"cluster": name}})
    cfg["static_resources"]["clusters"] = clusters
    return cfg


# ---------------------------------------------------------------------------
# a set of Envoys for one test module
# ---------------------------------------------------------------------------


class Fleet:
    """Envoys of one test module: started together, watched for VM
    failures (harness.WATCH)."""

    def __init__(self, pki: Pki, workdir: Path) -> None:
        self.pki = pki
        self.workdir = workdir
        self.envoys: list[Envoy] = []

    def start(self, specs: Mapping[str, tuple[dict[str, Any], str | None]]) -> dict[str, Envoy]:
        """``{name: (config, CERTBOUND_JWKS or None)}`` -> ready Envoys,
        started concurrently."""
        made = {name: Envoy(name, cfg, self.pki.root, self.workdir, jwks)
                for name, (cfg, jwks) in specs.items()}
        self.envoys.extend(made.values())
        for e in made.values():
            harness.WATCH.add(e)
        with ThreadPoolExecutor(max_workers=max(1, min(len(made), os.cpu_count() or 2))) as pool:
            for f in [pool.submit(e.start) for e in made.values()]:
                f.result()
        return made

    def stop(self) -> list[str]:
        """Stop all; VM-failure lines not reported by a test yet."""
        return harness.WATCH.stop(self.envoys)


def can_bind(addr: str) -> bool:
    """Whether a client socket can use ``addr`` as its source (Linux: any
    127.0.0.0/8 address; macOS: only configured aliases)."""
    try:
        with socket.socket() as s:
            s.bind((addr, 0))
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# fixtures shared by the modules that use a Fleet (imported by name there;
# module-scoped, so each module gets its own recorder and fleet)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def echo():
    r = Recorder()
    yield r
    r.close()


@pytest.fixture(scope="module")
def fleet(pki, envoy_workdir):
    f = Fleet(pki, envoy_workdir)
    yield f
    left = f.stop()
    if left:
        pytest.fail("wasm VM failures in Envoy logs:\n" + "\n".join(left[:20]), pytrace=False)
