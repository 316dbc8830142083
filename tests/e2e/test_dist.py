"""What ships: `make dist` (istio/dist.py) writes the filter, its sha256 (the
WasmPlugin.sha256 for an https:// URL), the OCI image with its digest (the
WasmPlugin.sha256 for an oci:// URL) and the Istio manifests filled in for
both; dist/ is ignored by git. And every Envoy configuration in the repository
passes `envoy --mode validate`.
"""

from __future__ import annotations

import hashlib
import sys
import json
import subprocess
from pathlib import Path

import pytest
import yaml

import harness
import istio_support as ist


@pytest.fixture(scope="module")
def wasm_path(pki) -> Path:
    return pki.root / harness.WASM_REL


@pytest.fixture(scope="module")
def rel(wasm_path, tmp_path_factory):
    return ist.release(wasm_path, tmp_path_factory.mktemp("dist"), image="registry.example.com:5000/team/certbound:1.2.3")


def test_wasm_and_its_sha256(rel, wasm_path):
    d = rel["dir"]
    wasm = wasm_path.read_bytes()
    assert (d / "certbound.wasm").read_bytes() == wasm
    text = (d / "certbound.wasm.sha256").read_text()
    assert text == hashlib.sha256(wasm).hexdigest() + "\n"
    assert text.strip() == rel["wasm_sha256"]


def test_oci_image_and_its_digest(rel, wasm_path):
    d = rel["dir"]
    img = ist.oci.read_image(d / "oci", "1.2.3")  # the tag of IMAGE
    assert ist.oci.extract_plugin(img) == wasm_path.read_bytes()
    assert (d / "certbound-oci.sha256").read_text() == img.manifest_sha256 + "\n"
    assert img.manifest_sha256 != rel["wasm_sha256"]  # two different values, two URL kinds
    assert (d / "certbound-oci.tar").is_file()


def test_manifests_are_filled_in(rel):
    for name in ist.dist.MANIFESTS:
        text = (rel["manifests"] / name).read_text()
        assert "${" not in text, name
        for plugin in ist.xds.wasm_plugins(list(yaml.safe_load_all(text))):
            assert plugin["spec"]["url"] == "oci://registry.example.com:5000/team/certbound:1.2.3"
            assert plugin["spec"]["sha256"] == rel["oci_sha256"]


def test_image_needs_a_tag(wasm_path, tmp_path):
    with pytest.raises(SystemExit, match="<registry>/<repository>:<tag>"):
        ist.dist.build(wasm_path, tmp_path, image="registry.example.com:5000/certbound")


def test_rebuild_is_identical(rel, wasm_path, tmp_path):
    again = ist.release(wasm_path, tmp_path, image="registry.example.com:5000/team/certbound:1.2.3")
    for p in sorted(rel["dir"].rglob("*")):
        if p.is_file():
            assert (again["dir"] / p.relative_to(rel["dir"])).read_bytes() == p.read_bytes(), p


def test_dist_is_ignored_by_git():
    res = subprocess.run(["git", "check-ignore", "-q", "dist/certbound.wasm"], cwd=harness.REPO)
    assert res.returncode == 0, "dist/ must be in .gitignore"


def test_native_build_and_its_sha256(tmp_path):
    """`make dist` ships the native build too (istio/dist.py --so)."""
    sys.path.insert(0, str(harness.REPO / "istio"))
    import dist  # noqa: E402
    digest = dist.add_native(harness.SO, tmp_path)
    so = harness.SO.read_bytes()
    assert (tmp_path / "libcertbound.so").read_bytes() == so
    assert (tmp_path / "libcertbound.so.sha256").read_text() == hashlib.sha256(so).hexdigest() + "\n"
    assert digest == hashlib.sha256(so).hexdigest()


def test_make_targets():
    out = subprocess.run(["make", "-n", "-s", "dist", "oci", "IMAGE=r.example/c:1"], cwd=harness.REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any("istio/dist.py" in ln and str(harness.WASM_REL) in ln and "--image r.example/c:1" in ln
               for ln in lines), out.stdout
    assert any("istio/oci.py" in ln and "--out" in ln and "dist/oci" in ln for ln in lines), out.stdout
    assert any(ln.startswith("cargo build --release --target wasm32-wasip1") for ln in lines), out.stdout
    assert any("istio/dist.py" in ln and "--so" in ln and str(harness.SO_REL) in ln
               for ln in lines), out.stdout


# ---------------------------------------------------------------------------
# every Envoy configuration in the repository validates
# ---------------------------------------------------------------------------


def shipped_envoy_configs() -> list[Path]:
    """Tracked or new (not ignored) YAML/JSON files that are Envoy bootstraps."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=harness.REPO, capture_output=True, text=True, check=True).stdout.split()
    found = []
    for f in files:
        path = harness.REPO / f
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        try:
            text = path.read_text()
            docs = [json.loads(text)] if path.suffix == ".json" else list(yaml.safe_load_all(text))
        except (ValueError, yaml.YAMLError, UnicodeDecodeError):
            continue
        if any(isinstance(d, dict) and ({"static_resources", "dynamic_resources"} & d.keys()) for d in docs):
            found.append(path)
    return sorted(found)


SHIPPED = shipped_envoy_configs()


def test_the_known_configs_are_found():
    rel_paths = {p.relative_to(harness.REPO).as_posix() for p in SHIPPED}
    assert {"envoy/envoy.yaml", "istio/envoy-gateway.yaml"} <= rel_paths, rel_paths


@pytest.fixture(scope="module")
def validate_root(pki, rel):
    """pki.root (repo layout: certs, wasm) plus what istio/envoy-gateway.yaml
    reads: the ECDS file for the ingress WasmPlugin and the module it names."""
    ist.write_ecds(ist.plugin(rel, "wasmplugin-ingress.yaml"), rel, pki.root, pki.root / ist.ECDS_REL)
    return pki.root


@pytest.mark.parametrize("config", SHIPPED, ids=[p.relative_to(harness.REPO).as_posix() for p in SHIPPED])
def test_shipped_envoy_config_validates(config, validate_root, pki):
    res = harness.validate(config, cwd=validate_root, jwks_text=pki.idp_jwks_text)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and f"configuration '{config}' OK" in res.stdout, out
    assert not [ln for ln in out.splitlines() if harness.VM_FAILURE.search(ln)], out
