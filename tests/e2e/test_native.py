"""The native build (libcertbound.so as an Envoy dynamic module): its
shipped configs load, a bad configuration is refused at load with the same
field-named error as the wasm build, and a request is decided as there.

Run in the native pass of `make e2e` (CERTBOUND_BUILD=native).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import harness
from harness import Pki

pytestmark = pytest.mark.native_only(reason="the native pass (CERTBOUND_BUILD=native) runs these")

NATIVE_CONFIG = harness.REPO / "envoy" / "envoy-native.yaml"
HELLO_CONFIG = harness.REPO / "envoy" / "native-hello.yaml"


def _validate(cfg: dict, pki: Pki, tmp_path: Path, jwks: str | None):
    path = tmp_path / "native.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return harness.validate(path, pki.root, jwks)


def _filter(cfg: dict) -> dict:
    (f,) = [f for f in harness.http_filters(cfg) if f["name"] == "certbound"]
    return f


@pytest.mark.parametrize("config", [NATIVE_CONFIG, HELLO_CONFIG], ids=lambda p: p.name)
def test_shipped_native_config_validates(config: Path, pki: Pki, tmp_path: Path) -> None:
    cfg = yaml.safe_load(config.read_text())
    r = _validate(cfg, pki, tmp_path, pki.jwks_text)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "configuration \"certbound\" accepted" in r.stdout + r.stderr


def test_native_config_carries_the_wasm_configs_json() -> None:
    wasm = harness.plugin_json(harness.load_shipped_config())
    native = json.loads(_filter(yaml.safe_load(NATIVE_CONFIG.read_text()))
                        ["typed_config"]["filter_config"]["value"])
    assert native == wasm


def test_a_bad_configuration_is_refused_at_load_with_the_field_named_error(
        pki: Pki, tmp_path: Path) -> None:
    cfg = yaml.safe_load(NATIVE_CONFIG.read_text())
    f = _filter(cfg)
    doc = json.loads(f["typed_config"]["filter_config"]["value"])
    doc["providers"]["idp"]["clock_skew_seconds"] = "forever"
    f["typed_config"]["filter_config"]["value"] = json.dumps(doc)
    r = _validate(cfg, pki, tmp_path, pki.jwks_text)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "certbound: invalid configuration at providers.idp.clock_skew_seconds" in out, out
    assert "Failed to initialize dynamic module" in out, out


def test_without_its_jwks_the_configuration_is_refused(pki: Pki, tmp_path: Path) -> None:
    cfg = yaml.safe_load(NATIVE_CONFIG.read_text())
    r = _validate(cfg, pki, tmp_path, None)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "CERTBOUND_JWKS" in out, out


def test_the_istio_envoyfilter_configuration_is_accepted(pki: Pki, tmp_path: Path) -> None:
    """istio/envoyfilter-native.yaml's JSON, loaded by this Envoy's native
    module at `--mode validate`, is a configuration certbound accepts."""
    (doc,) = yaml.safe_load_all((harness.REPO / "istio" / "envoyfilter-native.yaml").read_text())
    value = doc["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]
    cfg = yaml.safe_load(NATIVE_CONFIG.read_text())
    _filter(cfg)["typed_config"]["filter_config"] = value["filter_config"]
    r = _validate(cfg, pki, tmp_path, pki.jwks_text)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "configuration \"certbound\" accepted" in r.stdout + r.stderr


def test_workers_share_verified_tokens(pki: Pki, backend: harness.Backend,
                                       envoy_workdir: Path) -> None:
    """Two workers: each token is verified once per Envoy, not once per
    worker. Every request comes on a fresh connection, and Envoy spreads
    connections over its workers; a token a worker has not seen is a hit
    in the configuration's shared cache. (With a cache per worker alone,
    most tokens would be verified twice.)"""
    envoy = harness.Envoy("native_shared_cache", harness.scenario_config(backend.port),
                          pki.root, envoy_workdir, pki.jwks_text)
    envoy.concurrency = 2
    envoy.start()
    try:
        stat = harness.STAT_NAMESPACE + "certbound."
        tokens = [pki.token(pki.client_a, sub=f"client-{i}") for i in range(10)]
        for t in tokens:
            for _ in range(6):
                r = harness.request(envoy, backend, pki.ca, token=t, client=pki.client_a)
                assert r.status == 200, r
        stats = envoy.stats()
        assert stats[stat + "cache_miss"] == len(tokens), stats
        assert stats[stat + "cache_hit"] == 5 * len(tokens), stats
        # Both workers took connections (else the test proves nothing).
        served = [v for k, v in stats.items()
                  if k.startswith("listener.") and k.endswith(".downstream_cx_total")
                  and ".worker_" in k]
        assert len([v for v in served if v > 0]) == 2, served
    finally:
        envoy.stop()
