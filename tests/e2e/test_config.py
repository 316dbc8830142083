"""Envoy-side configuration: the shipped envoy.yaml validates; Envoy refuses an
invalid plugin configuration (the filter's on_configure returns false).

Observed with Envoy 1.40.0: `--mode validate` instantiates the wasm VM and
runs on_configure; a `false` makes it log "Wasm VM failed Failed to configure
base Wasm plugin" / "Plugin certbound failed to load" and exit 1 with
"Unable to create Wasm plugin certbound". A serving Envoy with that static
listener exits 1 with the same message.
"""

from __future__ import annotations

import json

import pytest
import yaml

import harness
from harness import Envoy

REFUSED = harness.REFUSED


def test_shipped_config_validates(pki):
    """The unmodified envoy/envoy.yaml, relative paths resolved from a root
    laid out like the repository (generated certs, built wasm)."""
    res = harness.validate(harness.SHIPPED_CONFIG, cwd=pki.root, jwks_text=pki.idp_jwks_text)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert f"configuration '{harness.SHIPPED_CONFIG}' OK" in res.stdout, out
    assert not [ln for ln in out.splitlines() if harness.VM_FAILURE.search(ln)], out


def test_shipped_config_shape():
    cfg = harness.load_shipped_config()
    assert cfg["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}
    listener = harness._listener(cfg)
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8443}
    (chain,) = listener["filter_chains"]
    tls = chain["transport_socket"]["typed_config"]
    assert tls["require_client_certificate"] is False
    common = tls["common_tls_context"]
    assert common["validation_context"]["trusted_ca"] == {"filename": "envoy/certs/ca.pem"}
    assert common["tls_certificates"][0]["certificate_chain"] == {"filename": "envoy/certs/server.pem"}
    names = [f["name"] for f in harness.http_filters(cfg)]
    assert names == ["envoy.filters.http.wasm", "envoy.filters.http.router"]
    plugin = harness.wasm_plugin(cfg)
    assert plugin["name"] == plugin["root_id"] == "certbound"
    assert plugin["fail_open"] is False
    vm = plugin["vm_config"]
    assert vm["vm_id"] == "certbound" and vm["runtime"] == "envoy.wasm.runtime.v8"
    assert vm["code"]["local"]["filename"] == str(harness.WASM_REL)
    assert vm["environment_variables"]["host_env_keys"] == ["CERTBOUND_JWKS"]
    pj = harness.plugin_json(cfg)
    idp = pj["providers"]["idp"]
    assert idp["local_jwks"] == {"environment_variable": "CERTBOUND_JWKS"}
    assert idp["certificate_binding"] == "required"
    assert idp["forward"] is True  # "accepted -> upstream unchanged"


def _invalid_plugins():
    base = harness.plugin_json(harness.load_shipped_config())

    def patched(**provider):
        pj = json.loads(json.dumps(base))
        pj["providers"]["idp"].update(provider)
        return pj

    top = json.loads(json.dumps(base))
    top["unknown_top_level"] = True
    return [
        pytest.param(patched(unknown_field=1), id="unknown-provider-field"),
        pytest.param(top, id="unknown-top-level-field"),
        pytest.param(patched(certificate_binding="sometimes"), id="bad-certificate-binding"),
        pytest.param(patched(local_jwks={"inline_string": "not json"}), id="jwks-not-json"),
        pytest.param(patched(audiences="https://api.example.com"), id="audiences-not-a-list"),
        pytest.param("{not json", id="not-json"),
        pytest.param({"providers": {}}, id="no-providers"),
    ]


def _refused_at_validation(pki, backend, envoy_workdir, plugin, name: str) -> str:
    """`envoy --mode validate` of the shipped config with `plugin`: refused,
    without a panic. Returns what Envoy printed."""
    cfg = harness.scenario_config(backend.port, plugin=plugin)
    path = envoy_workdir / f"validate-{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = harness.validate(path, cwd=pki.root, jwks_text=pki.jwks_text)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert REFUSED in out, out
    assert "panicked" not in out, out
    return out


@pytest.mark.parametrize("plugin", _invalid_plugins())
def test_invalid_plugin_config_fails_validation(pki, backend, envoy_workdir, request, plugin):
    _refused_at_validation(pki, backend, envoy_workdir, plugin, request.node.callspec.id)


def test_an_empty_configuration_is_refused_as_empty(pki, backend, envoy_workdir):
    """An empty configuration is refused as such, in the words of both
    builds, not as a JSON syntax error."""
    out = _refused_at_validation(pki, backend, envoy_workdir, "", "empty")
    assert "certbound: invalid configuration: the configuration is empty" in out, out


def test_invalid_plugin_config_makes_envoy_exit(pki, backend, envoy_workdir):
    plugin = harness.plugin_json(harness.load_shipped_config())
    plugin["providers"]["idp"]["unknown_field"] = 1
    cfg = harness.scenario_config(backend.port, plugin=plugin)
    envoy = Envoy("refused", cfg, pki.root, envoy_workdir, pki.jwks_text)
    try:
        rc = envoy.wait_exit()
    finally:
        envoy.stop()
    log = envoy.log_text()
    assert rc != 0, log
    assert REFUSED in log, log
    if harness.BUILD == "wasm":
        assert "Failed to configure base Wasm plugin" in log, log
    else:
        # The same field-named error as the wasm build's, from the module.
        assert "certbound: invalid configuration at providers.idp.unknown_field" in log, log
    assert "panicked" not in log, log


def test_shipped_config_without_jwks_env_is_refused(pki, backend, envoy_workdir):
    """CERTBOUND_JWKS unset: the JWKS source is unusable, Envoy must not serve."""
    cfg = harness.scenario_config(backend.port)
    path = envoy_workdir / "validate-no-env.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = harness.validate(path, cwd=pki.root, jwks_text=None)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert REFUSED in out, out
