"""Envoy Gateway (gateway/): the native build's manifests pass Envoy
Gateway's and the Gateway API's schemas with no unknown field
(gateway/schema/validate.mjs), fit together (the policy loads the module the
EnvoyProxy registers, from the path the proxy image puts it at, on the
Gateway that uses that EnvoyProxy), carry the configuration of
envoy/envoy-native.yaml, and, rendered as Envoy Gateway renders an
EnvoyExtensionPolicy's dynamic module, load into Envoy 1.40.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import harness
from manifest_edits import at, rename, set_key
from harness import Pki

GATEWAY = harness.REPO / "gateway"
SCHEMA_DIR = GATEWAY / "schema"
SCHEMA_MODULES = Path(os.environ.get(
    "CERTBOUND_GATEWAY_SCHEMA", harness.REPO / "target" / "gateway-schema" / "node_modules"))
NATIVE_CONFIG = harness.REPO / "envoy" / "envoy-native.yaml"
# What Envoy Gateway v1.9 names the filter of an EnvoyExtensionPolicy's
# dynamic module in the listener (the policy, and the module's index in it).
EG_FILTER_NAME = ("envoy.filters.http.dynamic_modules/"
                  "envoyextensionpolicy/{namespace}/{name}/dynamic-module/{index}")


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((GATEWAY / name).read_text()) if d]


def one(kind: str) -> dict[str, Any]:
    (doc,) = [d for p in harness.GATEWAY_MANIFESTS for d in load(p.name) if d["kind"] == kind]
    return doc


def validate_manifests(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per document: {"kind", "apiVersion", "name", "errors"}."""
    if not (SCHEMA_MODULES / "@kubernetes-models" / "envoy-gateway").is_dir():
        raise AssertionError(f"Envoy Gateway schemas missing in {SCHEMA_MODULES}: run `make gateway-schema`")
    node = shutil.which("node")
    assert node, "node (Node.js) is needed to validate against Envoy Gateway's schemas"
    res = subprocess.run([node, str(SCHEMA_DIR / "validate.mjs"), str(SCHEMA_MODULES)],
                         input=json.dumps(docs), capture_output=True, text=True, timeout=120)
    assert res.returncode in (0, 1), res.stderr
    results = json.loads(res.stdout)
    assert len(results) == len(docs)
    return results


# ---------------------------------------------------------------------------
# the schemas
# ---------------------------------------------------------------------------


def test_the_installed_schema_packages_are_the_pinned_ones():
    pins = json.loads((SCHEMA_DIR / "package.json").read_text())["dependencies"]
    lock = json.loads((SCHEMA_DIR / "package-lock.json").read_text())["packages"]
    for name, version in pins.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name}: pin an exact version, not {version}"
        assert lock[f"node_modules/{name}"]["version"] == version, name
        installed = json.loads((SCHEMA_MODULES / name / "package.json").read_text())
        assert installed["version"] == version, f"{name}: run `make gateway-schema`"
    eg = json.loads((SCHEMA_MODULES / "@kubernetes-models" / "envoy-gateway" / "package.json").read_text())
    assert eg["go-generate"]["input"] == ["github.com/envoyproxy/gateway/api/v1alpha1"], eg


@pytest.mark.parametrize("path", harness.GATEWAY_MANIFESTS, ids=lambda p: p.name)
def test_manifest_passes_the_schemas(path: Path):
    docs = load(path.name)
    assert docs
    for res in validate_manifests(docs):
        assert res["errors"] == [], f"{path.name}: {res}"


# (kind, JSON pointer of the node to change, change, what the error names)
BAD = [
    # misspelt fields: the dynamic-module ones (additions.json, closed) ...
    ("EnvoyExtensionPolicy", "/spec", rename("dynamicModule", "dynamicModules"), "/spec/dynamicModules"),
    ("EnvoyExtensionPolicy", "/spec/dynamicModule/0", rename("filterName", "filter_name"), "filter_name"),
    ("EnvoyProxy", "/spec/dynamicModules/0/source/local", rename("path", "filename"), "filename"),
    # ... and the published schemas' (keys their validators never look up)
    ("EnvoyProxy", "/spec/provider/kubernetes/envoyDeployment", rename("container", "containr"),
     "/spec/provider/kubernetes/envoyDeployment/containr"),
    ("Gateway", "/spec/infrastructure", rename("parametersRef", "parametersRefs"),
     "/spec/infrastructure/parametersRefs"),
    ("ClientTrafficPolicy", "/spec/tls", rename("clientValidation", "clientValidaton"),
     "/spec/tls/clientValidaton"),
    ("HTTPRoute", "/spec/rules/0/backendRefs/0", rename("port", "prot"), "/spec/rules/0/backendRefs/0/prot"),
    # wrong types, enums, patterns
    ("EnvoyProxy", "/spec/dynamicModules/0", set_key("doNotClose", "yes"), "/spec/dynamicModules/0/doNotClose"),
    ("EnvoyProxy", "/spec/dynamicModules/0/source", set_key("type", "File"), "/spec/dynamicModules/0/source/type"),
    ("EnvoyExtensionPolicy", "/spec/dynamicModule/0", set_key("name", "Certbound"), "/spec/dynamicModule/0/name"),
    ("Gateway", "/spec/listeners/0", set_key("port", "443"), "/spec/listeners/0/port"),
    ("ClientTrafficPolicy", "/spec/tls/clientValidation", set_key("mode", "Optional"),
     "/spec/tls/clientValidation/mode"),
]


def test_the_schema_check_rejects_misspelt_and_mistyped_fields():
    """The check is live: each changed copy of a manifest is refused, with
    the changed field named."""
    bad = []
    for kind, path, change, _ in BAD:
        doc = copy.deepcopy(one(kind))
        change(at(doc, path))
        bad.append(doc)
    for (kind, path, _, named), res in zip(BAD, validate_manifests(bad)):
        assert res["errors"], f"{kind} {path}: accepted"
        assert any(named in e for e in res["errors"]), f"{kind} {path}: {res['errors']}"


# ---------------------------------------------------------------------------
# what the manifests say
# ---------------------------------------------------------------------------


def test_the_pieces_fit_together():
    proxy, gw, ctp, route, policy = (one(k) for k in (
        "EnvoyProxy", "Gateway", "ClientTrafficPolicy", "HTTPRoute", "EnvoyExtensionPolicy"))
    namespaces = {d["metadata"]["namespace"] for d in (proxy, gw, ctp, route, policy)}
    assert len(namespaces) == 1, namespaces
    assert gw["spec"]["infrastructure"]["parametersRef"] == {
        "group": "gateway.envoyproxy.io", "kind": "EnvoyProxy", "name": proxy["metadata"]["name"]}
    gateway_ref = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gw["metadata"]["name"]}
    assert policy["spec"]["targetRefs"] == [gateway_ref]
    assert ctp["spec"]["targetRefs"] == [gateway_ref]
    assert [p["name"] for p in route["spec"]["parentRefs"]] == [gw["metadata"]["name"]]
    # TLS at the Gateway, the client certificate requested: certbound binds to it
    (listener,) = gw["spec"]["listeners"]
    assert listener["protocol"] == "HTTPS" and listener["tls"]["mode"] == "Terminate"
    validation = ctp["spec"]["tls"]["clientValidation"]
    assert validation["mode"] in ("VerifyIfGiven", "RequireAndVerify") and validation["caCertificateRefs"]


def test_the_policy_loads_the_registered_module():
    (entry,) = one("EnvoyProxy")["spec"]["dynamicModules"]
    (dm,) = one("EnvoyExtensionPolicy")["spec"]["dynamicModule"]
    assert dm["name"] == entry["name"] == "certbound"
    assert dm["filterName"] == "certbound"
    assert entry["source"]["type"] == "Local"
    assert entry["source"]["local"]["path"].endswith("/libcertbound.so")
    # process-wide state and its own thread: never dlclose'd
    assert entry["doNotClose"] is True


def test_the_policy_carries_the_native_example_configuration():
    native = json.loads(_native_filter(yaml.safe_load(NATIVE_CONFIG.read_text()))
                        ["typed_config"]["filter_config"]["value"])
    (dm,) = one("EnvoyExtensionPolicy")["spec"]["dynamicModule"]
    assert dm["config"] == native
    # its keys come from the environment the EnvoyProxy gives the proxy
    variable = native["providers"]["idp"]["local_jwks"]["environment_variable"]
    container = one("EnvoyProxy")["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]
    assert variable in [e["name"] for e in container["env"]]


def test_the_proxy_image_is_envoy_1_40_with_the_module_where_it_is_registered():
    lines = [ln.split() for ln in (GATEWAY / "Dockerfile").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    (base,) = [ln[1] for ln in lines if ln[0] == "FROM"]
    assert re.fullmatch(r"docker\.io/envoyproxy/envoy:distroless-v1\.40\.\d+", base), base
    (copy_,) = [ln[1:] for ln in lines if ln[0] == "COPY"]
    (entry,) = one("EnvoyProxy")["spec"]["dynamicModules"]
    assert copy_ == ["libcertbound.so", entry["source"]["local"]["path"]]
    container = one("EnvoyProxy")["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]
    assert "envoy-certbound" in container["image"] and "1.40" in container["image"], container["image"]


# ---------------------------------------------------------------------------
# in Envoy, as Envoy Gateway renders the policy
# ---------------------------------------------------------------------------


def _native_filter(cfg: dict) -> dict:
    (f,) = [f for f in harness.http_filters(cfg) if f["name"] == "certbound"]
    return f


def rendered(policy: dict, proxy: dict, so: Path) -> dict[str, Any]:
    """envoy/envoy-native.yaml with certbound's filter as Envoy Gateway v1.9
    renders an EnvoyExtensionPolicy's dynamic module: named after the policy
    (EG_FILTER_NAME), disabled in the listener and
    enabled on each route by an empty FilterConfig, the module by file name
    (the registered path, here the build under test), `config` serialised to
    JSON in a StringValue."""
    cfg = yaml.safe_load(NATIVE_CONFIG.read_text())
    (dm,) = policy["spec"]["dynamicModule"]
    (entry,) = [e for e in proxy["spec"]["dynamicModules"] if e["name"] == dm["name"]]
    name = EG_FILTER_NAME.format(index=0, **policy["metadata"])
    filters = harness.http_filters(cfg)
    filters[filters.index(_native_filter(cfg))] = {
        "name": name,
        "disabled": True,
        "typed_config": {
            "@type": harness.NATIVE_FILTER_TYPE,
            "dynamic_module_config": {
                "module": {"local": {"filename": str(so)}},
                "do_not_close": entry.get("doNotClose", False),
                "load_globally": entry.get("loadGlobally", False),
            },
            "filter_name": dm.get("filterName", ""),
            "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                              "value": json.dumps(dm["config"])},
        },
    }
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    for vh in hcm["route_config"]["virtual_hosts"]:
        for route in vh["routes"]:
            route["typed_per_filter_config"] = {
                name: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}}}
    return cfg


def _validate(cfg: dict, pki: Pki, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "envoy-gateway-native.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return harness.validate(path, pki.root, pki.jwks_text)


@pytest.mark.native_only(reason="loads libcertbound.so")
def test_envoy_accepts_the_policy_as_envoy_gateway_renders_it(pki: Pki, tmp_path: Path) -> None:
    cfg = rendered(one("EnvoyExtensionPolicy"), one("EnvoyProxy"), harness.SO.resolve())
    r = _validate(cfg, pki, tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "configuration \"certbound\" accepted" in out, out


@pytest.mark.native_only(reason="loads libcertbound.so")
def test_a_bad_policy_configuration_is_refused_at_load(pki: Pki, tmp_path: Path) -> None:
    policy = copy.deepcopy(one("EnvoyExtensionPolicy"))
    policy["spec"]["dynamicModule"][0]["config"]["providers"]["idp"]["clock_skew_seconds"] = "forever"
    r = _validate(rendered(policy, one("EnvoyProxy"), harness.SO.resolve()), pki, tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "certbound: invalid configuration at providers.idp.clock_skew_seconds" in out, out
    assert "Failed to initialize dynamic module" in out, out
