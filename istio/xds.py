#!/usr/bin/env python3
"""What Istio makes of a certbound WasmPlugin, as Envoy configuration, so
that plain Envoy can run certbound exactly as an Istio proxy would.

Two steps, after Istio 1.29's source:

1. **istiod** (pilot/pkg/model/extensions.go, pilot/pkg/networking/core/
   extension/wasmplugin.go) turns the WasmPlugin into

   * an HTTP filter named ``extensions.istio.io/wasmplugin/<ns>.<name>``
     whose configuration comes from ECDS (``config_discovery``: ADS,
     ``initial_fetch_timeout: 0s``, type URLs Wasm and RBAC), and
   * the ECDS resource: a ``TypedExtensionConfig`` of that name holding an
     ``envoy.extensions.filters.http.wasm.v3.Wasm`` whose ``config`` has
     ``name: <ns>.<name>``, ``root_id: <spec.pluginName>``,
     ``configuration``: a ``google.protobuf.StringValue`` with
     ``spec.pluginConfig`` as JSON, ``vm_config.runtime:
     envoy.wasm.runtime.v8``, ``vm_config.code.remote`` (the URL, ``sha256``,
     cluster ``_``, 30 s), the environment variable
     ``ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION`` (plus pull policy / secret),
     and ``failure_policy`` from ``spec.failStrategy``
     (FAIL_CLOSE → FAIL_CLOSED).

2. **istio-agent** (pkg/wasm/convert.go, cache.go, imagefetcher.go), on the
   way to Envoy, pulls the module: for ``oci://`` it reads the image, checks
   the manifest digest against ``sha256``, takes ``plugin.wasm`` out of the
   compat layer, stores it as ``/var/lib/istio/data/<sha256(module
   name)>/<digest>.wasm``, rewrites ``code`` to that local file and strips
   the ``ISTIO_META_*`` variables. If that fails, the resource becomes an
   RBAC filter that denies everything (allows, with FAIL_OPEN).

Here the registry is an OCI image layout (istio/oci.py), and ECDS comes from
a file (``path_config_source``) instead of ADS; everything else is as above.

    target/venv/bin/python istio/xds.py ecds --plugin dist/istio/wasmplugin-ingress.yaml \\
        --oci dist/oci --data target/istio/data --out target/istio/ecds-certbound.yaml
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import oci  # noqa: E402

WASM_HTTP = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
RBAC_HTTP = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
TYPED_EXTENSION_CONFIG = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
RESOURCE_PREFIX = "extensions.istio.io/wasmplugin/"
RUNTIME = "envoy.wasm.runtime.v8"
ENV_SECRET = "ISTIO_META_WASM_IMAGE_PULL_SECRET"
ENV_POLICY = "ISTIO_META_WASM_IMAGE_PULL_POLICY"
ENV_RESOURCE_VERSION = "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION"
ISTIO_DATA_DIR = "/var/lib/istio/data"
FAILURE_POLICY = {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN", "FAIL_RELOAD": "FAIL_RELOAD"}



# ---------------------------------------------------------------------------
# manifests
# ---------------------------------------------------------------------------


def load_docs(path: Path | str, text: str | None = None) -> list[dict[str, Any]]:
    text = Path(path).read_text() if text is None else text
    return [d for d in yaml.safe_load_all(text) if d is not None]


def wasm_plugins(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == "WasmPlugin"]


# ---------------------------------------------------------------------------
# istiod
# ---------------------------------------------------------------------------


def _go_float(x: float) -> str:
    # protojson writes a Struct number (a double) like Go's
    # strconv.FormatFloat(x, 'f' or 'e', -1, 64): 60 -> "60", 0.5 -> "0.5".
    if not math.isfinite(x):
        raise ValueError("pluginConfig: NaN/Infinity cannot be serialized")
    if x == int(x) and abs(x) < 1e21:
        return str(int(x))
    return repr(x)


def _protojson(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _go_float(float(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(_protojson(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{_protojson(v)}"
                              for k, v in sorted(value.items())) + "}"
    raise TypeError(f"pluginConfig: {type(value).__name__} is not JSON")


def plugin_config_json(plugin_config: dict[str, Any]) -> str:
    """spec.pluginConfig (a google.protobuf.Struct) as istiod serializes it:
    compact JSON, keys in order, every number a double."""
    return _protojson(plugin_config)


def resource_name(plugin: dict[str, Any]) -> str:
    md = plugin["metadata"]
    return f"{RESOURCE_PREFIX}{md.get('namespace', 'default')}.{md['name']}"


def http_filter(plugin: dict[str, Any]) -> dict[str, Any]:
    """The listener's HTTP filter istiod generates (configuration via ECDS over ADS)."""
    return {
        "name": resource_name(plugin),
        "config_discovery": {
            "config_source": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
            "type_urls": [WASM_HTTP, RBAC_HTTP],
        },
    }


def _oci_url(url: str) -> str:
    return url if "://" in url else "oci://" + url  # no scheme: oci


def extension_config(plugin: dict[str, Any], resource_version: str = "1") -> dict[str, Any]:
    """The ECDS resource istiod sends for a WasmPlugin of type HTTP."""
    spec = plugin["spec"]
    if spec.get("type", "HTTP") not in ("HTTP", "UNSPECIFIED_PLUGIN_TYPE"):
        raise ValueError("only HTTP WasmPlugins are modelled")
    md = plugin["metadata"]
    url = _oci_url(spec["url"])
    if url.startswith("file://"):
        code: dict[str, Any] = {"local": {"filename": url[len("file://"):]}}
    else:
        code = {"remote": {
            "http_uri": {"uri": url, "cluster": "_", "timeout": "30s"},
            "sha256": spec.get("sha256", ""),
        }}
    env: dict[str, str] = {}
    if spec.get("imagePullSecret"):
        env[ENV_SECRET] = spec["imagePullSecret"]
    if spec.get("imagePullPolicy", "UNSPECIFIED_POLICY") != "UNSPECIFIED_POLICY":
        env[ENV_POLICY] = spec["imagePullPolicy"]
    env[ENV_RESOURCE_VERSION] = resource_version
    host_keys = []
    for e in (spec.get("vmConfig") or {}).get("env", []):
        if e.get("valueFrom", "INLINE") == "INLINE":
            env[e["name"]] = e.get("value", "")
        else:
            host_keys.append(e["name"])
    env_vars: dict[str, Any] = {"key_values": env}
    if host_keys:
        env_vars["host_env_keys"] = host_keys
    config: dict[str, Any] = {"name": f"{md.get('namespace', 'default')}.{md['name']}"}
    if spec.get("pluginName"):
        config["root_id"] = spec["pluginName"]
    if spec.get("pluginConfig"):
        config["configuration"] = {"@type": STRING_VALUE,
                                   "value": plugin_config_json(spec["pluginConfig"])}
    config["vm_config"] = {"runtime": RUNTIME, "code": code, "environment_variables": env_vars}
    # WasmPlugin's default failStrategy is FAIL_CLOSE.
    config["failure_policy"] = FAILURE_POLICY[spec.get("failStrategy", "FAIL_CLOSE")]
    return {
        "name": resource_name(plugin),
        "typed_config": {"@type": WASM_HTTP, "config": config},
    }


# ---------------------------------------------------------------------------
# istio-agent
# ---------------------------------------------------------------------------


class FetchError(RuntimeError):
    pass


def _split_ref(ref: str) -> tuple[str, str | None, str | None]:
    """registry/repo[:tag][@sha256:hex] -> (name, tag, digest hex)."""
    digest = None
    if "@" in ref:
        ref, _, d = ref.partition("@")
        if not d.startswith("sha256:"):
            raise FetchError(f"unsupported digest in {ref}")
        digest = d[len("sha256:"):]
    tag = None
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, _, tag = ref.rpartition(":")
    if digest is None and tag is None:
        tag = "latest"
    return ref, tag, digest


def module_name(url: str) -> str:
    """Istio's cache key for a URL: oci:// URLs without tag or digest."""
    if url.startswith("oci://"):
        name, _, _ = _split_ref(url[len("oci://"):])
        first = name.split("/", 1)[0]
        if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
            name = "index.docker.io/" + (name if "/" in name else "library/" + name)
        return "oci://" + name
    return url


def fetch_oci(url: str, layout: Path) -> tuple[str, bytes]:
    """(manifest digest hex, plugin.wasm) for an oci:// URL, from an OCI image
    layout standing in for the registry (the tag is looked up in index.json)."""
    _, tag, digest = _split_ref(url[len("oci://"):])
    try:
        if digest is not None:
            index = json.loads((layout / "index.json").read_text())
            tags = [m.get("annotations", {}).get(oci.REF_NAME) for m in index["manifests"]
                    if m["digest"] == "sha256:" + digest]
            if not tags:
                raise FetchError(f"{url}: manifest unknown")
            tag = tags[0]
        image = oci.read_image(layout, tag)
        return image.manifest_sha256, oci.extract_plugin(image)
    except (OSError, ValueError) as e:
        raise FetchError(f"could not fetch Wasm OCI image {url}: {e}") from e


def deny_all(name: str, fail_open: bool = False) -> dict[str, Any]:
    """What the agent sends instead of a module it could not fetch."""
    if fail_open:
        return {"name": name, "typed_config": {"@type": RBAC_HTTP, "rules_stat_prefix": "wasm-default-allow"}}
    return {"name": name, "typed_config": {"@type": RBAC_HTTP, "rules": {},
                                           "rules_stat_prefix": "wasm-default-deny"}}


def agent_convert(ec: dict[str, Any], layout: Path, data_dir: Path) -> dict[str, Any]:
    """The agent's rewrite of one ECDS resource: pull, check, store, point to the file."""
    out = json.loads(json.dumps(ec))
    config = out["typed_config"]["config"]
    vm = config["vm_config"]
    remote = vm["code"].get("remote")
    if remote is None:
        return out
    env = vm.get("environment_variables", {})
    kv = env.get("key_values", {})
    for k in [k for k in kv if k.startswith("ISTIO_META_")]:
        del kv[k]
    if not kv:
        env.pop("key_values", None)
    if not env:
        vm.pop("environment_variables", None)
    url = remote["http_uri"]["uri"]
    want = remote.get("sha256", "")
    try:
        if url.startswith("oci://"):
            got, wasm = fetch_oci(url, Path(layout))
        else:
            raise FetchError(f"only oci:// URLs are modelled, not {url}")
        if want and want != got:
            raise FetchError(f"module downloaded from {url} has checksum {got}, which does not match: {want}")
        if not (wasm[:4] == b"\0asm" and wasm[4:8] == b"\x01\0\0\0"):
            raise FetchError(f"fetched Wasm binary from {url} is invalid")
    except FetchError as e:
        print(f"xds: {e}; applying {'allow' if config['failure_policy'] == 'FAIL_OPEN' else 'deny'} RBAC filter",
              file=sys.stderr)
        return deny_all(out["name"], config["failure_policy"] == "FAIL_OPEN")
    module_dir = Path(data_dir) / hashlib.sha256(module_name(url).encode()).hexdigest()
    module_dir.mkdir(parents=True, exist_ok=True)
    path = module_dir / f"{got}.wasm"
    path.write_bytes(wasm)
    vm["code"] = {"local": {"filename": str(path)}}
    return out


def discovery_response(resources: list[dict[str, Any]], version: str = "1") -> dict[str, Any]:
    """An xDS DiscoveryResponse, the format of a path_config_source file."""
    return {
        "version_info": version,
        "type_url": TYPED_EXTENSION_CONFIG,
        "resources": [{"@type": TYPED_EXTENSION_CONFIG, **r} for r in resources],
    }


def write_ecds(plugin: dict[str, Any], layout: Path, data_dir: Path, out: Path) -> dict[str, Any]:
    """istiod + agent for one WasmPlugin; the DiscoveryResponse is written to ``out``."""
    ec = agent_convert(extension_config(plugin), layout, data_dir)
    resp = discovery_response([ec])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(yaml.safe_dump(resp, sort_keys=False))
    tmp.replace(out)  # Envoy watches the file: replace it in one step
    return ec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("ecds", help="write the ECDS DiscoveryResponse for a WasmPlugin")
    e.add_argument("--plugin", required=True, type=Path, help="rendered WasmPlugin manifest")
    e.add_argument("--oci", required=True, type=Path, help="OCI image layout standing in for the registry")
    e.add_argument("--data", required=True, type=Path, help="the agent's module cache directory")
    e.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    (plugin,) = wasm_plugins(load_docs(args.plugin))
    ec = write_ecds(plugin, args.oci, args.data, args.out)
    print(f"xds: {args.out}: {ec['name']} ({ec['typed_config']['@type'].rsplit('.', 1)[-1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
