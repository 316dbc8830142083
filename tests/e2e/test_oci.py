"""The OCI image of `make oci` / `make dist` (istio/oci.py), Istio's "compat"
variant, read back blob by blob: media types, digests and sizes recomputed,
the layer's plugin.wasm equal to the built filter, byte-for-byte reproducible.
Plus the Dockerfile for users who build the image with docker instead.

A real OCI client (skopeo) reads the layout and the archive, and the image
is pushed to a real registry (Debian's docker-registry, started on a free
loopback port) and pulled back, digest and module checked. `make e2e`
installs both when missing (tests/e2e/install-tools.sh); without them these
tests fail, they do not skip.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

import harness

sys.path.insert(0, str(harness.REPO / "istio"))
import oci  # noqa: E402

TAG = "9.9.9-test"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def wasm(pki) -> bytes:
    return (pki.root / harness.WASM_REL).read_bytes()


@pytest.fixture(scope="module")
def image(wasm, tmp_path_factory):
    out = tmp_path_factory.mktemp("oci")
    built = oci.build(wasm, out / "layout", tag=TAG, archive=out / "image.tar")
    return built


def blob(layout: Path, digest: str) -> bytes:
    algo, _, hexd = digest.partition(":")
    assert algo == "sha256"
    return (layout / "blobs" / "sha256" / hexd).read_bytes()


def test_layout_files_and_index(image):
    layout = image.layout
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    (entry,) = index["manifests"]
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == TAG
    assert entry["digest"] == image.manifest_digest
    # nothing but the three blobs
    names = sorted(p.name for p in (layout / "blobs" / "sha256").iterdir())
    m = image.manifest
    assert names == sorted(d["digest"].split(":")[1]
                           for d in [entry, m["config"], *m["layers"]])


def test_every_blob_matches_its_digest_and_size(image):
    layout = image.layout
    for p in (layout / "blobs" / "sha256").iterdir():
        assert sha(p.read_bytes()) == p.name, p
    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    manifest_bytes = blob(layout, entry["digest"])
    assert len(manifest_bytes) == entry["size"]
    manifest = json.loads(manifest_bytes)
    for desc in [manifest["config"], *manifest["layers"]]:
        assert len(blob(layout, desc["digest"])) == desc["size"], desc


def test_manifest_is_istio_compat_variant(image):
    m = image.manifest
    assert m["schemaVersion"] == 2
    assert m["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert m["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    (layer,) = m["layers"]  # exactly one layer
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    # compat variant with an OCI layer media type: this annotation is required
    assert m["annotations"]["module.wasm.image/variant"] == "compat"
    assert m["annotations"]["org.opencontainers.image.version"] == oci.cargo_version()


def test_layer_holds_plugin_wasm_equal_to_the_build(image, wasm):
    m = image.manifest
    layer = blob(image.layout, m["layers"][0]["digest"])
    assert layer[:2] == b"\x1f\x8b"
    assert int.from_bytes(layer[4:8], "little") == 0, "gzip header mtime must be 0"
    tar_bytes = gzip.decompress(layer)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        (member,) = tar.getmembers()
        assert member.name == "plugin.wasm" and member.isreg()
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (0, 0, 0, "", "")
        assert member.mode == 0o644
        f = tar.extractfile(member)
        assert f is not None
        assert f.read() == wasm
    config = json.loads(blob(image.layout, m["config"]["digest"]))
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + sha(tar_bytes)]}
    assert (config["architecture"], config["os"]) == ("wasm", "wasip1")


def test_istio_extraction_rules_find_the_module(image, wasm):
    """What Istio's agent does with the pulled image (last layer, OCI tar+gzip,
    first entry named plugin.wasm), via the reader the Istio test uses."""
    img = oci.read_image(image.layout, TAG)
    assert img.manifest_digest == image.manifest_digest
    assert oci.extract_plugin(img) == wasm


def test_reader_refuses_a_tampered_blob(image, tmp_path):
    copy = tmp_path / "layout"
    shutil.copytree(image.layout, copy)
    layer = copy / "blobs" / "sha256" / image.manifest["layers"][0]["digest"].split(":")[1]
    data = bytearray(layer.read_bytes())
    data[-10] ^= 1
    layer.write_bytes(bytes(data))
    with pytest.raises(oci.LayoutError, match="does not match its digest"):
        oci.read_image(copy, TAG)


def test_reproducible(wasm, image, tmp_path):
    again = oci.build(wasm, tmp_path / "layout", tag=TAG, archive=tmp_path / "image.tar")
    assert again.manifest_digest == image.manifest_digest
    for p in sorted(image.layout.rglob("*")):
        if p.is_file():
            assert (again.layout / p.relative_to(image.layout)).read_bytes() == p.read_bytes(), p
    assert (tmp_path / "image.tar").read_bytes() == (image.layout.parent / "image.tar").read_bytes()


def test_archive_is_the_layout(image):
    with tarfile.open(image.layout.parent / "image.tar") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}  # type: ignore[union-attr]
        assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
    expected = {p.relative_to(image.layout).as_posix(): p.read_bytes()
                for p in image.layout.rglob("*") if p.is_file()}
    assert files == expected


def test_refuses_a_non_wasm_input(tmp_path):
    with pytest.raises(ValueError, match="WebAssembly"):
        oci.build(b"not wasm", tmp_path / "x")


def test_dockerfile_builds_the_same_shape():
    """No Docker engine here: check the Dockerfile's structure instead."""
    text = (harness.REPO / "Dockerfile").read_text()
    stages = [ln.split() for ln in text.splitlines() if ln.upper().startswith("FROM ")]
    assert stages[-1][1] == "scratch", "the final image must hold nothing but the module"
    copies = [ln for ln in text.splitlines() if ln.upper().startswith("COPY ")]
    final = copies[-1].split()
    assert final[-1] == "/plugin.wasm"
    assert final[-2].endswith(str(harness.WASM_REL)), final
    assert "--target wasm32-wasip1" in text and "--locked" in text
    ignore = (harness.REPO / ".dockerignore").read_text().split()
    assert "target" in ignore or "/target" in ignore


# ---------------------------------------------------------------------------
# a real OCI client and a real registry
# ---------------------------------------------------------------------------

# Where tests/e2e/install-tools.sh unpacks the registry when it is not on PATH.
UNPACKED_REGISTRY = harness.REPO / "target" / "tools" / "docker-registry" / "usr" / "bin" / "docker-registry"
INSTALL_HINT = "run `make e2e-tools` (tests/e2e/install-tools.sh) or `make e2e`, which installs it"


@pytest.fixture(scope="module")
def skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        pytest.fail(f"skopeo is not installed: {INSTALL_HINT}", pytrace=False)
    return path


@pytest.fixture(scope="module")
def registry_bin() -> str:
    path = shutil.which("docker-registry") or (
        str(UNPACKED_REGISTRY) if UNPACKED_REGISTRY.is_file() else None)
    if path is None:
        pytest.fail(f"docker-registry is not installed: {INSTALL_HINT}", pytrace=False)
    return path


def test_skopeo_reads_layout_and_archive(image, skopeo):
    for ref in (f"oci:{image.layout}:{TAG}", f"oci-archive:{image.layout.parent / 'image.tar'}:{TAG}"):
        raw = subprocess.run([skopeo, "inspect", "--raw", ref], capture_output=True, check=True, timeout=60)
        assert "sha256:" + sha(raw.stdout) == image.manifest_digest, ref


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def registry(registry_bin, tmp_path):
    """A docker-registry on 127.0.0.1:<free port>, storage in tmp_path; its host:port."""
    port = _free_port()
    cfg = tmp_path / "registry.yml"
    cfg.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
                   f"http:\n  addr: 127.0.0.1:{port}\n")
    log_path = tmp_path / "registry.log"
    with open(log_path, "wb") as log:
        reg = subprocess.Popen([registry_bin, "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert reg.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        reg.terminate()
        reg.wait(timeout=15)


def _run(*argv: str) -> bytes:
    """Run an OCI client command; on failure, fail with its stderr."""
    res = subprocess.run(argv, capture_output=True, timeout=60)
    assert res.returncode == 0, f"{' '.join(argv)} -> {res.returncode}\n{res.stderr.decode(errors='replace')}"
    return res.stdout


def test_push_to_a_registry_keeps_the_digest(image, wasm, tmp_path, skopeo, registry):
    dest = f"docker://{registry}/certbound:{TAG}"
    _run(skopeo, "copy", "--dest-tls-verify=false", f"oci:{image.layout}:{TAG}", dest)
    raw = _run(skopeo, "inspect", "--raw", "--tls-verify=false", dest)
    assert "sha256:" + sha(raw) == image.manifest_digest  # = WasmPlugin.sha256
    # Pulled by digest (oci://host/certbound@sha256:...), the same manifest.
    raw = _run(skopeo, "inspect", "--raw", "--tls-verify=false",
               f"docker://{registry}/certbound@{image.manifest_digest}")
    assert "sha256:" + sha(raw) == image.manifest_digest
    back = tmp_path / "pulled"
    _run(skopeo, "copy", "--src-tls-verify=false", dest, f"oci:{back}:{TAG}")
    assert oci.extract_plugin(oci.read_image(back, TAG)) == wasm
