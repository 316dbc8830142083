"""Istio (istio/): the manifests, rendered as `make dist` renders them, pass
Istio's own CRD schemas and have no field those schemas do not know; certbound
runs in Envoy configured exactly as istiod + istio-agent configure a gateway
for istio/wasmplugin-ingress.yaml (ECDS resource, pluginConfig as a JSON
StringValue, root_id = pluginName, runtime v8, fail closed, the module pulled
from the OCI image of `make oci`), and the core end-to-end checks pass
through it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

import harness
from manifest_edits import at, rename, set_key
import istio_support as ist
from harness import Envoy, Pki

MANIFESTS = ("gateway.yaml", "idp.yaml", "wasmplugin-ingress.yaml", "wasmplugin-sidecar.yaml")
HOST = {"host": "api.example.com"}


@pytest.fixture(scope="module")
def rel(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return ist.release(pki.root / harness.WASM_REL, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def ingress(rel) -> dict[str, Any]:
    return ist.plugin(rel, "wasmplugin-ingress.yaml")


@pytest.fixture(scope="module")
def sidecar(rel) -> dict[str, Any]:
    return ist.plugin(rel, "wasmplugin-sidecar.yaml")


def _docs(rel, name: str) -> list[dict[str, Any]]:
    if name in MANIFESTS:
        return ist.rendered(rel, name)
    return ist.xds.load_docs(ist.ISTIO / name)


# ---------------------------------------------------------------------------
# manifests against Istio's CRD schemas
# ---------------------------------------------------------------------------


def test_schema_package_is_generated_from_istio_crds():
    pkg = ist.schema_package()
    assert pkg["name"] == "@kubernetes-models/istio"
    sources = " ".join(pkg["crd-generate"]["input"])
    assert "istio/istio/1.29" in sources and "crd-all.gen.yaml" in sources, sources


@pytest.mark.parametrize(
    "name", [*MANIFESTS, "requestauthentication-before.yaml", "envoyfilter-native.yaml"])
def test_manifest_passes_istio_crd_schema(rel, name):
    docs = _docs(rel, name)
    assert docs
    for res in ist.validate_manifests(docs):
        assert res["errors"] == [], f"{name}: {res}"


def test_gateway_tls_modes_pass_the_schema(rel):
    (gw,) = [d for d in _docs(rel, "gateway.yaml") if d["kind"] == "Gateway"]
    variants = []
    for mode in ("MUTUAL", "OPTIONAL_MUTUAL"):
        v = copy.deepcopy(gw)
        v["spec"]["servers"][0]["tls"]["mode"] = mode
        variants.append(v)
    assert [r["errors"] for r in ist.validate_manifests(variants)] == [[], []]


def test_schema_check_rejects_bad_manifests(ingress):
    """The validator is live: wrong enums and patterns are errors."""
    bad = []
    for field, value in [("phase", "AUTHENTICATION"), ("failStrategy", "CLOSE"),
                         ("sha256", "sha256:" + "a" * 64), ("imagePullPolicy", "Sometimes")]:
        doc = copy.deepcopy(ingress)
        doc["spec"][field] = value
        bad.append(doc)
    results = ist.validate_manifests(bad)
    for doc, res in zip(bad, results):
        assert res["errors"], doc["spec"]


def _changed(rel, name: str, kind: str, path: str, change: Callable[[dict], None]) -> dict[str, Any]:
    (doc,) = [d for d in _docs(rel, name) if d["kind"] == kind]
    change(at(doc, path))
    return doc


# (manifest, kind, JSON pointer of the node to change, change, how an error starts)
MISSPELT = [
    ("envoyfilter-native.yaml", "EnvoyFilter", "", rename("spec", "specs"), "/specs"),
    ("envoyfilter-native.yaml", "EnvoyFilter", "/metadata", rename("namespace", "namepsace"),
     "/metadata/namepsace"),
    ("envoyfilter-native.yaml", "EnvoyFilter", "/spec", rename("workloadSelector", "workloadSelectr"),
     "/spec/workloadSelectr"),
    ("envoyfilter-native.yaml", "EnvoyFilter", "/spec/workloadSelector", rename("labels", "matchLabels"),
     "/spec/workloadSelector/matchLabels"),
    ("envoyfilter-native.yaml", "EnvoyFilter", "/spec/configPatches/0", rename("applyTo", "apply_to"),
     "/spec/configPatches/0/apply_to"),
    ("envoyfilter-native.yaml", "EnvoyFilter", "/spec/configPatches/0/match/listener/filterChain/filter",
     rename("subFilter", "sub_filter"), "/spec/configPatches/0/match/listener/filterChain/filter/sub_filter"),
    ("envoyfilter-native.yaml", "EnvoyFilter", "/spec/configPatches/0/patch", rename("value", "values"),
     "/spec/configPatches/0/patch/values"),
    ("wasmplugin-ingress.yaml", "WasmPlugin", "/spec", rename("failStrategy", "failurePolicy"),
     "/spec/failurePolicy"),
    ("wasmplugin-ingress.yaml", "WasmPlugin", "/spec", rename("pluginConfig", "pluginConf"),
     "/spec/pluginConf"),
    ("wasmplugin-ingress.yaml", "WasmPlugin", "/spec/selector", rename("matchLabels", "matchLabel"),
     "/spec/selector/matchLabel"),
    ("wasmplugin-sidecar.yaml", "WasmPlugin", "/spec/match/0", rename("mode", "Mode"), "/spec/match/0/Mode"),
    ("wasmplugin-sidecar.yaml", "PeerAuthentication", "/spec/mtls", rename("mode", "tlsMode"),
     "/spec/mtls/tlsMode"),
    ("gateway.yaml", "Gateway", "/spec/servers/0/tls", rename("credentialName", "credentialNam"),
     "/spec/servers/0/tls/credentialNam"),
    ("gateway.yaml", "Gateway", "/spec/servers/0/port", set_key("target_port", 8443),
     "/spec/servers/0/port/target_port"),
    ("gateway.yaml", "VirtualService", "/spec/http/0/route/0/destination", rename("host", "hostname"),
     "/spec/http/0/route/0/destination/hostname"),
    ("idp.yaml", "ServiceEntry", "/spec/ports/0", rename("protocol", "proto"), "/spec/ports/0/proto"),
    ("idp.yaml", "DestinationRule", "/spec/trafficPolicy/portLevelSettings/0/tls", rename("sni", "serverName"),
     "/spec/trafficPolicy/portLevelSettings/0/tls/serverName"),
    ("requestauthentication-before.yaml", "RequestAuthentication", "/spec/jwtRules/0",
     rename("jwksUri", "jwks_url"), "/spec/jwtRules/0/jwks_url"),
    ("requestauthentication-before.yaml", "AuthorizationPolicy", "/spec/rules/0/from/0/source",
     rename("notRequestPrincipals", "notRequestPrincipal"), "/spec/rules/0/from/0/source/notRequestPrincipal"),
]
MISTYPED = [
    ("wasmplugin-ingress.yaml", "WasmPlugin", "/spec", set_key("priority", "10"), "/spec/priority"),
    ("wasmplugin-ingress.yaml", "WasmPlugin", "/spec", set_key("pluginConfig", ["providers"]), "/spec/pluginConfig"),
    ("envoyfilter-native.yaml", "EnvoyFilter", "/spec/configPatches/0", set_key("applyTo", ["HTTP_FILTER"]),
     "/spec/configPatches/0/applyTo"),
    ("envoyfilter-native.yaml", "EnvoyFilter", "/spec/configPatches/0/patch", set_key("value", "certbound"),
     "/spec/configPatches/0/patch/value"),
    ("gateway.yaml", "Gateway", "/spec/servers/0/port", set_key("number", "443"), "/spec/servers/0/port/number"),
    ("gateway.yaml", "Gateway", "/spec/selector", set_key("istio", 1), "/spec/selector/istio"),
    ("wasmplugin-sidecar.yaml", "PeerAuthentication", "/spec/selector/matchLabels", set_key("app", ["api"]),
     "/spec/selector/matchLabels/app"),
]


@pytest.mark.parametrize("bad", [MISSPELT, MISTYPED], ids=["misspelt", "mistyped"])
def test_schema_check_rejects_misspelt_and_mistyped_fields(rel, bad):
    """Each changed copy of a shipped manifest is refused, the changed field
    named: a misspelt key as not a field of its kind, a wrong type by the schema."""
    docs = [_changed(rel, name, kind, path, change) for name, kind, path, change, _ in bad]
    missed = []
    for (name, kind, path, _, named), res in zip(bad, ist.validate_manifests(docs)):
        assert res["kind"] == kind
        if bad is MISSPELT:
            found = f"{named} is not a field of {kind}" in res["errors"]
        else:
            found = any(e.startswith(f"{named} must ") for e in res["errors"])
        if not found:
            missed.append(f"{name} {kind} {named}: {res['errors']}")
    assert missed == [], "\n".join(missed)


# Struct fields (x-kubernetes-preserve-unknown-fields): anything goes below them.
FREE_FORM = [
    ("wasmplugin-ingress.yaml", "WasmPlugin", "/spec/pluginConfig", set_key("a_new_setting", {"x": [1, {"y": None}]})),
    ("wasmplugin-ingress.yaml", "WasmPlugin", "/spec/pluginConfig/providers/idp", rename("issuer", "issuerr")),
    ("wasmplugin-sidecar.yaml", "WasmPlugin", "/spec/pluginConfig/client_certificate", set_key("source", 7)),
    ("envoyfilter-native.yaml", "EnvoyFilter", "/spec/configPatches/0/patch/value",
     rename("typed_config", "typedConfig")),
    ("envoyfilter-native.yaml", "EnvoyFilter", "/spec/configPatches/0/patch/value/typed_config",
     set_key("anything", [{"at": {"any": "depth"}}])),
]


def test_struct_fields_stay_free_form(rel):
    docs = [_changed(rel, name, kind, path, change) for name, kind, path, change in FREE_FORM]
    for (name, kind, path, _), res in zip(FREE_FORM, ist.validate_manifests(docs)):
        assert res["errors"] == [], f"{name} {kind} {path}: {res['errors']}"


def test_unrendered_templates_are_not_valid(ingress):
    """The committed WasmPlugins are templates: `make dist` fills them in."""
    text = (ist.ISTIO / "wasmplugin-ingress.yaml").read_text()
    assert "${CERTBOUND_IMAGE}" in text and "${CERTBOUND_OCI_SHA256}" in text
    (raw,) = ist.xds.wasm_plugins(ist.xds.load_docs(ist.ISTIO / "wasmplugin-ingress.yaml"))
    (res,) = ist.validate_manifests([raw])
    assert any("sha256" in e for e in res["errors"]), res


# ---------------------------------------------------------------------------
# what the manifests say
# ---------------------------------------------------------------------------


def test_ingress_plugin(rel, ingress):
    spec = ingress["spec"]
    assert spec["phase"] == "AUTHN"
    assert spec["failStrategy"] == "FAIL_CLOSE"
    assert spec["url"] == f"oci://{ist.IMAGE}"
    # oci:// URL: Istio checks sha256 against the image's manifest digest
    assert spec["sha256"] == rel["oci_sha256"] == ist.oci.read_image(rel["oci"], "0.1.0").manifest_sha256
    assert (rel["dir"] / "certbound-oci.sha256").read_text().strip() == spec["sha256"]
    assert spec["pluginName"] == "certbound"
    assert spec["pluginConfig"]["providers"]["idp"]["certificate_binding"] == "required"
    (gw,) = [d for d in ist.rendered(rel, "gateway.yaml") if d["kind"] == "Gateway"]
    assert gw["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert gw["metadata"]["namespace"] == ingress["metadata"]["namespace"]
    for server in gw["spec"]["servers"]:
        assert server["tls"]["mode"] in ("MUTUAL", "OPTIONAL_MUTUAL")


def test_jwks_cluster_is_the_idp_service_entry(rel, ingress, sidecar):
    se, dr = ist.rendered(rel, "idp.yaml")
    assert (se["kind"], dr["kind"]) == ("ServiceEntry", "DestinationRule")
    (host,) = se["spec"]["hosts"]
    (port,) = se["spec"]["ports"]
    cluster = f"outbound|{port['number']}||{host}"
    for p in (ingress, sidecar):
        http_uri = p["spec"]["pluginConfig"]["providers"]["idp"]["remote_jwks"]["http_uri"]
        assert http_uri["cluster"] == cluster
        assert http_uri["uri"].startswith(f"https://{host}/")
    (pls,) = dr["spec"]["trafficPolicy"]["portLevelSettings"]
    assert dr["spec"]["host"] == host and pls["port"]["number"] == port["number"]
    assert pls["tls"]["mode"] == "SIMPLE"


def test_sidecar_plugin(rel, sidecar):
    spec = sidecar["spec"]
    assert spec["phase"] == "AUTHN" and spec["failStrategy"] == "FAIL_CLOSE"
    assert spec["match"] == [{"mode": "SERVER"}]  # inbound only
    src = spec["pluginConfig"]["client_certificate"]
    assert src["source"] == "xfcc"
    assert src["trusted_peer_uri_sans"] == [
        "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]
    (pa,) = [d for d in ist.rendered(rel, "wasmplugin-sidecar.yaml") if d["kind"] == "PeerAuthentication"]
    assert pa["spec"]["mtls"]["mode"] == "STRICT"
    assert pa["spec"]["selector"] == spec["selector"]
    note = (ist.ISTIO / "wasmplugin-sidecar.yaml").read_text()
    assert "calling workload" in note and "FORWARD_ONLY" in note


# ---------------------------------------------------------------------------
# istiod + agent output
# ---------------------------------------------------------------------------


def test_istiod_extension_config(ingress):
    ec = ist.xds.extension_config(ingress, resource_version="42")
    assert ec["name"] == "extensions.istio.io/wasmplugin/istio-system.certbound"
    tc = ec["typed_config"]
    assert tc["@type"] == "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
    cfg = tc["config"]
    assert cfg["name"] == "istio-system.certbound"
    assert cfg["root_id"] == ingress["spec"]["pluginName"] == "certbound"
    assert cfg["failure_policy"] == "FAIL_CLOSED"
    assert cfg["configuration"]["@type"] == "type.googleapis.com/google.protobuf.StringValue"
    assert json.loads(cfg["configuration"]["value"]) == ingress["spec"]["pluginConfig"]
    vm = cfg["vm_config"]
    assert vm["runtime"] == "envoy.wasm.runtime.v8"
    assert vm["code"] == {"remote": {
        "http_uri": {"uri": f"oci://{ist.IMAGE}", "cluster": "_", "timeout": "30s"},
        "sha256": ingress["spec"]["sha256"]}}
    assert vm["environment_variables"]["key_values"] == {
        "ISTIO_META_WASM_IMAGE_PULL_POLICY": "IfNotPresent",
        "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION": "42"}
    assert ist.xds.http_filter(ingress)["config_discovery"]["type_urls"] == [
        ist.xds.WASM_HTTP, ist.xds.RBAC_HTTP]


def test_plugin_config_json_is_protojson_like():
    assert ist.xds.plugin_config_json({"b": [1, 2.5, True, None], "a": {"x": "é"}, "n": 60}) == \
        '{"a":{"x":"é"},"b":[1,2.5,true,null],"n":60}'


def test_agent_pulls_the_module_into_its_cache(rel, ingress, pki, tmp_path):
    ec = ist.xds.agent_convert(ist.xds.extension_config(ingress), rel["oci"], tmp_path)
    vm = ec["typed_config"]["config"]["vm_config"]
    assert "environment_variables" not in vm  # ISTIO_META_* stripped, nothing left
    path = Path(vm["code"]["local"]["filename"])
    name_hash = hashlib.sha256(b"oci://registry.example.com/certbound").hexdigest()
    assert path == tmp_path / name_hash / f"{rel['oci_sha256']}.wasm"
    assert path.read_bytes() == (pki.root / harness.WASM_REL).read_bytes()


def test_agent_fails_closed_on_a_digest_mismatch(rel, ingress, tmp_path):
    wrong = copy.deepcopy(ingress)
    wrong["spec"]["sha256"] = rel["wasm_sha256"]  # the module's hash, not the image's
    ec = ist.xds.agent_convert(ist.xds.extension_config(wrong), rel["oci"], tmp_path)
    assert ec["typed_config"]["@type"] == ist.xds.RBAC_HTTP
    assert ec["typed_config"]["rules"] == {}  # deny all
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["wasmplugin-ingress.yaml", "wasmplugin-sidecar.yaml"])
def test_certbound_accepts_the_plugin_config(rel, pki, envoy_workdir, name):
    """`envoy --mode validate` (on_configure runs) on the Istio-shaped filter,
    with the ECDS resource inline: validation mode does not read ECDS."""
    ec = ist.xds.agent_convert(ist.xds.extension_config(ist.plugin(rel, name)), rel["oci"],
                               pki.root / "target" / "istio" / "data")
    assert ec["typed_config"]["@type"] == ist.xds.WASM_HTTP
    cfg = ist.gateway_config(backend_port=8080, jwks_port=8081, inline=ec)
    path = envoy_workdir / f"istio-validate-{name}"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = harness.validate(path, cwd=pki.root, jwks_text=None)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and f"configuration '{path}' OK" in res.stdout, out
    assert not [ln for ln in out.splitlines() if harness.VM_FAILURE.search(ln)], out


# ---------------------------------------------------------------------------
# end to end through the Istio-shaped gateway
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jwks(pki: Pki) -> Iterator[ist.JwksEndpoint]:
    ep = ist.JwksEndpoint(pki.idp_jwks_text)
    yield ep
    ep.close()


def _start(name: str, plugin_doc, rel, pki, backend, jwks, workdir) -> Envoy:
    ecds = pki.root / "target" / "istio" / f"ecds-{name}.yaml"
    ist.write_ecds(plugin_doc, rel, pki.root, ecds)
    cfg = ist.gateway_config(backend_port=backend.port, jwks_port=jwks.port, ecds=ecds)
    # No CERTBOUND_JWKS: the keys come from the IdP cluster.
    return Envoy(name, cfg, pki.root, workdir, jwks_text=None).start()


@pytest.fixture(scope="module")
def gateway(rel, ingress, pki, backend, jwks, envoy_workdir) -> Iterator[Envoy]:
    envoy = _start("istio-gateway", ingress, rel, pki, backend, jwks, envoy_workdir)
    yield envoy
    envoy.stop()
    assert not envoy.vm_failures(), envoy.vm_failures()


def test_gateway_config_has_istiods_filter(ingress):
    """envoy-gateway.yaml's filter is istiod's, but for ECDS from a file instead of ADS."""
    expected = ist.xds.http_filter(ingress)
    (shipped,) = [f for f in ist.gateway_filters(ist.yaml.safe_load(ist.GATEWAY_CONFIG.read_text()))
                  if "config_discovery" in f]
    src = shipped["config_discovery"]["config_source"]
    assert src.pop("path_config_source") == {"path": str(ist.ECDS_REL)}
    assert expected["config_discovery"]["config_source"].pop("ads") == {}
    assert shipped == expected
    names = [f["name"] for f in ist.gateway_filters(ist.yaml.safe_load(ist.GATEWAY_CONFIG.read_text()))]
    assert names == [expected["name"], "envoy.filters.http.router"]


def test_gateway_runs_the_ecds_filter(gateway):
    dump = json.loads(gateway.admin_get("/config_dump?resource=ecds_filters"))
    (ecds,) = dump["configs"]
    cfg = ecds["ecds_filter"]["typed_config"]["config"]
    assert ecds["ecds_filter"]["name"] == "extensions.istio.io/wasmplugin/istio-system.certbound"
    assert (cfg["name"], cfg["root_id"], cfg["failure_policy"]) == \
        ("istio-system.certbound", "certbound", "FAIL_CLOSED")
    assert cfg["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"


def test_bound_token_with_its_certificate_is_accepted(gateway, pki, backend, jwks):
    client = pki.client_a
    r = harness.request(gateway, backend, pki.ca, token=pki.token(client), client=client, headers=HOST)
    assert r.status == 200, r
    (up,) = r.upstream
    headers = {k.lower(): v for k, v in up["headers"].items()}
    assert "authorization" not in headers  # forward: false
    assert headers["x-certbound-sub"] == "demo-client"
    assert headers["x-certbound-x5t-s256"] == client.thumbprint
    # the gateway forwards the client certificate (what the sidecar shape reads)
    assert "Cert=" in headers["x-forwarded-client-cert"]
    # keys came through Istio's cluster for the IdP, with its host name
    assert {"path": ist.JWKS_PATH, "host": "idp.example.com"} in jwks.requests


def test_bound_token_from_another_certificate_is_refused(gateway, pki, backend):
    r = harness.request(gateway, backend, pki.ca, token=pki.token(pki.client_a), client=pki.client_b,
                        headers=HOST)
    assert r.status == 401, r
    assert 'error="invalid_token"' in r.www_authenticate
    assert "mismatch" in r.www_authenticate
    assert r.upstream == []


def test_no_token_is_refused(gateway, pki, backend):
    r = harness.request(gateway, backend, pki.ca, client=pki.client_a, headers=HOST)
    assert r.status == 401, r
    assert r.www_authenticate == "Bearer"
    assert r.upstream == []


def test_bound_token_without_a_certificate_is_refused(gateway, pki, backend):
    """OPTIONAL_MUTUAL: the TLS handshake succeeds, certbound refuses."""
    r = harness.request(gateway, backend, pki.ca, token=pki.token(pki.client_a), client=None, headers=HOST)
    assert r.status == 401, r
    assert 'error="invalid_token"' in r.www_authenticate
    assert r.upstream == []


def test_fail_close_when_the_image_does_not_match(rel, ingress, pki, backend, jwks, envoy_workdir):
    """A wrong sha256: the agent installs a deny-all filter, nothing gets through."""
    wrong = copy.deepcopy(ingress)
    wrong["spec"]["sha256"] = "0" * 64
    envoy = _start("istio-gateway-mismatch", wrong, rel, pki, backend, jwks, envoy_workdir)
    try:
        client = pki.client_a
        r = harness.request(envoy, backend, pki.ca, token=pki.token(client), client=client, headers=HOST)
        assert r.status == 403, r
        assert r.upstream == []
    finally:
        envoy.stop()


# ---------------------------------------------------------------------------
# the sidecar shape: client -> gateway (MUTUAL TLS, XFCC) -> sidecar (certbound)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mesh(pki: Pki) -> dict[str, Any]:
    return ist.mesh_pki(pki.root / "target" / "istio" / "mesh")


def _xfcc_for(client: harness.Client) -> str:
    from urllib.parse import quote

    return f'Hash={"0" * 64};Cert="{quote(client.cert.read_text(), safe="")}"'


def _start_sidecar(name, rel, sidecar, pki, backend, jwks, mesh, workdir, fcc) -> Envoy:
    ecds = pki.root / "target" / "istio" / f"ecds-{name}.yaml"
    ist.write_ecds(sidecar, rel, pki.root, ecds)
    cfg = ist.sidecar_config(plugin_doc=sidecar, mesh=mesh, backend_port=backend.port, jwks_port=jwks.port, ecds=ecds,
                             forward_client_cert=fcc)
    return Envoy(name, cfg, pki.root, workdir, jwks_text=None).start()


@pytest.fixture(scope="module")
def sidecar_chain(rel, sidecar, pki, backend, jwks, mesh, envoy_workdir) -> Iterator[tuple[Envoy, Envoy]]:
    """(gateway, sidecar): the gateway without certbound (it would strip the
    token), routing to the api workload's sidecar over mesh mTLS; the sidecar
    with pod annotation proxyHeaders.forwardedClientCert: FORWARD_ONLY."""
    side = _start_sidecar("istio-sidecar", rel, sidecar, pki, backend, jwks, mesh, envoy_workdir,
                          "FORWARD_ONLY")
    cfg = ist.gateway_config(backend_port=backend.port, jwks_port=jwks.port)
    filters = ist.gateway_filters(cfg)
    filters[:] = [f for f in filters if not f["name"].startswith(ist.xds.RESOURCE_PREFIX)]
    ist.route_gateway_to_sidecar(cfg, mesh, side.port)
    gw = Envoy("istio-gateway-plain", cfg, pki.root, envoy_workdir, jwks_text=None).start()
    yield gw, side
    gw.stop()
    side.stop()
    assert not side.vm_failures(), side.vm_failures()


def test_sidecar_checks_the_end_clients_certificate(sidecar_chain, pki, backend):
    gw, _ = sidecar_chain
    client = pki.client_a
    r = harness.request(gw, backend, pki.ca, token=pki.token(client), client=client, headers=HOST)
    assert r.status == 200, r
    r = harness.request(gw, backend, pki.ca, token=pki.token(client), client=pki.client_b, headers=HOST)
    assert r.status == 401 and "mismatch" in r.www_authenticate, r
    r = harness.request(gw, backend, pki.ca, token=pki.token(client), client=None, headers=HOST)
    assert r.status == 401 and 'error="invalid_token"' in r.www_authenticate, r


def test_sidecar_ignores_xfcc_from_other_workloads(sidecar_chain, pki, backend, mesh):
    """Another mesh workload cannot claim a client certificate: its XFCC is not believed."""
    _, side = sidecar_chain
    client = pki.client_a
    hdrs = {"x-forwarded-client-cert": _xfcc_for(client)}
    r = harness.request(side, backend, mesh["ca"], token=pki.token(client), client=mesh["other"], headers=hdrs)
    assert r.status == 401, r
    # the same header from the gateway's identity is believed
    r = harness.request(side, backend, mesh["ca"], token=pki.token(client), client=mesh["gateway"], headers=hdrs)
    assert r.status == 200, r


def test_sidecar_with_istio_default_xfcc_sees_the_gateway(rel, sidecar, pki, backend, jwks, mesh, envoy_workdir):
    """Why the FORWARD_ONLY annotation: with APPEND_FORWARD (Istio's default)
    the last XFCC element is the gateway's certificate, so the binding fails."""
    side = _start_sidecar("istio-sidecar-append", rel, sidecar, pki, backend, jwks, mesh, envoy_workdir,
                          "APPEND_FORWARD")
    try:
        client = pki.client_a
        hdrs = {"x-forwarded-client-cert": _xfcc_for(client)}
        r = harness.request(side, backend, mesh["ca"], token=pki.token(client), client=mesh["gateway"],
                            headers=hdrs)
        assert r.status == 401 and "mismatch" in r.www_authenticate, r
    finally:
        side.stop()


def test_native_envoyfilter_carries_a_valid_certbound_config():
    """The EnvoyFilter's JSON is a configuration certbound accepts, and its
    filter is the dynamic-module filter the native build is loaded by."""
    (doc,) = ist.xds.load_docs(ist.ISTIO / "envoyfilter-native.yaml")
    value = doc["spec"]["configPatches"][0]["patch"]["value"]
    typed = value["typed_config"]
    assert typed["@type"].endswith("dynamic_modules.v3.DynamicModuleFilter")
    assert typed["dynamic_module_config"]["name"] == "certbound"
    config = json.loads(typed["filter_config"]["value"])
    assert set(config["providers"]["idp"]) >= {"issuer", "audiences", "remote_jwks"}
