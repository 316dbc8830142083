"""Helpers for the Istio, OCI and release tests: build dist/ into a temporary
directory (istio/dist.py), turn a WasmPlugin into the Envoy configuration
istiod + istio-agent would give its proxy (istio/xds.py), validate manifests
against Istio's CRD schemas, unknown fields included (istio/schema/validate.mjs),
a JWKS endpoint.
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

import harness

ISTIO = harness.REPO / "istio"
sys.path.insert(0, str(ISTIO))
import dist  # noqa: E402
import oci  # noqa: E402,F401  (re-exported for the tests)
import xds  # noqa: E402

IMAGE = "registry.example.com/certbound:0.1.0"
GATEWAY_CONFIG = ISTIO / "envoy-gateway.yaml"
# What envoy-gateway.yaml reads ECDS from, relative to the root it runs in.
ECDS_REL = Path("target/istio/ecds-certbound.yaml")
JWKS_PATH = "/.well-known/jwks.json"

SCHEMA_MODULES = Path(os.environ.get(
    "CERTBOUND_ISTIO_SCHEMA", harness.REPO / "target" / "istio-schema" / "node_modules"))
VALIDATE_MJS = ISTIO / "schema" / "validate.mjs"


# ---------------------------------------------------------------------------
# release + istiod/agent
# ---------------------------------------------------------------------------


def release(wasm: Path, out: Path, image: str = IMAGE) -> dict[str, Any]:
    """`make dist` into ``out``; returns dist.build's summary plus paths."""
    info = dist.build(wasm, out, image)
    info.update(dir=out, oci=out / "oci", manifests=out / "istio")
    return info


def rendered(rel: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return xds.load_docs(rel["manifests"] / name)


def plugin(rel: dict[str, Any], name: str) -> dict[str, Any]:
    (p,) = xds.wasm_plugins(rendered(rel, name))
    return p


def write_ecds(plugin_doc: dict[str, Any], rel: dict[str, Any], root: Path, out: Path) -> dict[str, Any]:
    """istiod + agent: the ECDS file for ``plugin_doc``, the module stored in
    ``root``/target/istio/data (the agent's /var/lib/istio/data)."""
    return xds.write_ecds(plugin_doc, rel["oci"], root / "target" / "istio" / "data", out)


def gateway_config(*, backend_port: int, jwks_port: int, ecds: Path | None = None,
                   inline: dict[str, Any] | None = None,
                   require_client_certificate: bool = False) -> dict[str, Any]:
    """istio/envoy-gateway.yaml with ports on loopback (admin and listener 0)
    and either another ECDS file or the ECDS resource ``inline`` as the filter's
    typed_config (for `--mode validate`, which does not read ECDS)."""
    cfg = yaml.safe_load(GATEWAY_CONFIG.read_text())
    cfg["admin"]["address"]["socket_address"].update(address="127.0.0.1", port_value=0)
    (listener,) = cfg["static_resources"]["listeners"]
    listener["address"]["socket_address"].update(address="127.0.0.1", port_value=0)
    (chain,) = listener["filter_chains"]
    chain["transport_socket"]["typed_config"]["require_client_certificate"] = require_client_certificate
    hcm = chain["filters"][0]["typed_config"]
    wasm_filter = hcm["http_filters"][0]
    if inline is not None:
        hcm["http_filters"][0] = {"name": inline["name"], "typed_config": copy.deepcopy(inline["typed_config"])}
    elif ecds is not None:
        wasm_filter["config_discovery"]["config_source"]["path_config_source"]["path"] = str(ecds)
    ports = {"api.default.svc.cluster.local": backend_port, "idp.example.com": jwks_port}
    for cluster in cfg["static_resources"]["clusters"]:
        host = cluster["name"].rsplit("|", 1)[-1]
        (ep,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        ep["endpoint"]["address"]["socket_address"]["port_value"] = ports[host]
    return cfg


def gateway_filters(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    (listener,) = cfg["static_resources"]["listeners"]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]


# ---------------------------------------------------------------------------
# Istio CRD schemas
# ---------------------------------------------------------------------------


def validate_manifests(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per document: {"kind", "apiVersion", "name", "errors"}."""
    if not (SCHEMA_MODULES / "@kubernetes-models" / "istio").is_dir():
        raise AssertionError(f"Istio CRD schemas missing in {SCHEMA_MODULES}: run `make istio-schema`")
    node = shutil.which("node")
    assert node, "node (Node.js) is needed to validate against Istio's CRD schemas"
    res = subprocess.run([node, str(VALIDATE_MJS), str(SCHEMA_MODULES)], input=json.dumps(docs),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode in (0, 1), res.stderr
    results = json.loads(res.stdout)
    assert len(results) == len(docs)
    return results


def schema_package() -> dict[str, Any]:
    return json.loads((SCHEMA_MODULES / "@kubernetes-models" / "istio" / "package.json").read_text())


# ---------------------------------------------------------------------------
# JWKS endpoint (the IdP behind outbound|443||idp.example.com)
# ---------------------------------------------------------------------------


class JwksEndpoint:
    def __init__(self, jwks_text: str) -> None:
        self.body = jwks_text.encode()
        self.requests: list[dict[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append({"path": self.path, "host": self.headers.get("host", "")})
                ok = self.path == JWKS_PATH
                body = outer.body if ok else b"not found"
                self.send_response(200 if ok else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------
# the sidecar shape: mesh identities and an inbound sidecar listener
# ---------------------------------------------------------------------------

GATEWAY_SPIFFE = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
API_SPIFFE = "spiffe://cluster.local/ns/default/sa/api"
OTHER_SPIFFE = "spiffe://cluster.local/ns/default/sa/other"


def mesh_pki(out: Path) -> dict[str, Any]:
    """Istio-like workload certificates (SPIFFE URI SANs) from a mesh CA:
    the ingress gateway's, the api workload's (a server, for 127.0.0.1) and
    another workload's."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    demo = harness.demo
    out.mkdir(parents=True, exist_ok=True)
    ca_key, ca = demo.make_ca("mesh CA (istiod)")
    (out / "mesh-ca.pem").write_bytes(demo.cert_pem(ca))
    now = datetime.datetime.now(datetime.timezone.utc)

    def issue(name: str, spiffe: str, server: bool = False) -> harness.Client:
        key = demo.new_ec_key()
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe)]
        if server:
            sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([]))  # like Istio workload certificates
                .issuer_name(ca.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.SubjectAlternativeName(sans), critical=True)
                .sign(ca_key, hashes.SHA256()))
        (out / f"{name}.pem").write_bytes(demo.cert_pem(cert))
        (out / f"{name}-key.pem").write_bytes(demo.key_pem(key))
        return harness.Client(name, out / f"{name}.pem", out / f"{name}-key.pem")

    return {
        "ca": out / "mesh-ca.pem",
        "gateway": issue("mesh-gateway", GATEWAY_SPIFFE),
        "api": issue("mesh-api", API_SPIFFE, server=True),
        "other": issue("mesh-other", OTHER_SPIFFE),
    }


def sidecar_config(*, plugin_doc: dict[str, Any], mesh: dict[str, Any], backend_port: int,
                   jwks_port: int, ecds: Path, forward_client_cert: str = "FORWARD_ONLY") -> dict[str, Any]:
    """A sidecar's inbound listener as Istio builds it for the api workload:
    STRICT mutual TLS with mesh certificates, XFCC per proxyHeaders.forwardedClientCert
    (Istio's default: APPEND_FORWARD), then the WasmPlugin's ECDS filter (match mode SERVER)."""
    cfg = gateway_config(backend_port=backend_port, jwks_port=jwks_port, ecds=ecds)
    cfg["node"] = {"id": "sidecar~127.0.0.1~api-0.default~default.svc.cluster.local", "cluster": "api.default"}
    (listener,) = cfg["static_resources"]["listeners"]
    listener["name"] = "virtualInbound"
    (chain,) = listener["filter_chains"]
    tls = chain["transport_socket"]["typed_config"]
    tls["require_client_certificate"] = True
    common = tls["common_tls_context"]
    common["tls_certificates"] = [{"certificate_chain": {"filename": str(mesh["api"].cert)},
                                   "private_key": {"filename": str(mesh["api"].key)}}]
    common["validation_context"] = {"trusted_ca": {"filename": str(mesh["ca"])}}
    hcm = chain["filters"][0]["typed_config"]
    hcm["http_filters"][0]["name"] = xds.resource_name(plugin_doc)
    hcm["stat_prefix"] = "inbound_0.0.0.0_8080"
    hcm.pop("use_remote_address")
    hcm["forward_client_cert_details"] = forward_client_cert
    hcm["set_current_client_cert_details"] = {"subject": True, "dns": True, "uri": True}
    vhost = hcm["route_config"]["virtual_hosts"][0]
    hcm["route_config"]["name"] = "inbound|8080||"
    vhost.update(name="inbound|http|8080", domains=["*"])
    vhost["routes"][0]["route"]["cluster"] = "inbound|8080||"
    for c in cfg["static_resources"]["clusters"]:
        if c["name"].endswith("api.default.svc.cluster.local"):
            c["name"] = c["load_assignment"]["cluster_name"] = "inbound|8080||"
    return cfg


def route_gateway_to_sidecar(cfg: dict[str, Any], mesh: dict[str, Any], sidecar_port: int) -> None:
    """The gateway's cluster for the api service, ISTIO_MUTUAL: the gateway's
    workload certificate, the api workload's SPIFFE ID checked."""
    (cluster,) = [c for c in cfg["static_resources"]["clusters"]
                  if c["name"] == "outbound|8080||api.default.svc.cluster.local"]
    (ep,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ep["endpoint"]["address"]["socket_address"]["port_value"] = sidecar_port
    cluster["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": "outbound_.8080_._.api.default.svc.cluster.local",
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": str(mesh["gateway"].cert)},
                                      "private_key": {"filename": str(mesh["gateway"].key)}}],
                "validation_context": {
                    "trusted_ca": {"filename": str(mesh["ca"])},
                    "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": API_SPIFFE}}],
                },
            },
        },
    }
