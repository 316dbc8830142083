#!/usr/bin/env python3
"""certbound as an OCI image that Istio's WasmPlugin can pull, built without a
Docker engine (standard library only).

The image is the *compat* variant of the Wasm image specification, the one
Istio's agent reads (pkg/wasm/imagefetcher.go, extractOCIStandardImage):

* one layer, media type ``application/vnd.oci.image.layer.v1.tar+gzip``,
  a tar.gz holding one file, ``plugin.wasm`` (the filter);
* an OCI image config (``application/vnd.oci.image.config.v1+json``) whose
  ``rootfs.diff_ids`` is the sha256 of the uncompressed layer;
* the manifest annotation ``module.wasm.image/variant: compat``.

Output, reproducible byte for byte (tar entries with mtime 0, uid/gid 0, no
user names; gzip header mtime 0; JSON with sorted keys):

* an OCI image layout directory (``oci-layout``, ``index.json``,
  ``blobs/sha256/...``), the tag in ``org.opencontainers.image.ref.name``;
* optionally the same layout as one tar (``--archive``).

Either can be pushed to a registry as is::

    skopeo copy oci:dist/oci:0.1.0 docker://registry.example.com/certbound:0.1.0
    skopeo copy oci-archive:dist/certbound-oci.tar:0.1.0 docker://registry.example.com/certbound:0.1.0
    oras cp --from-oci-layout dist/oci:0.1.0 registry.example.com/certbound:0.1.0

For an ``oci://`` URL, ``WasmPlugin.sha256`` is the *manifest* digest (Istio
compares it with the pulled image's digest), printed by this script and
written next to the archive as ``<archive stem>.sha256``.

Usage::

    python3 istio/oci.py --wasm target/wasm32-wasip1/release/certbound.wasm \\
        --out dist/oci [--tag 0.1.0] [--archive dist/certbound-oci.tar]

Importable: ``build`` writes a layout, ``read_image`` reads one back
(checking every digest and size) and ``extract_plugin`` takes ``plugin.wasm``
out of a layer the way Istio does; the tests and istio/xds.py use them.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parent.parent

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
VARIANT_ANNOTATION = "module.wasm.image/variant"
REF_NAME = "org.opencontainers.image.ref.name"
PLUGIN_FILE = "plugin.wasm"
WASM_MAGIC = b"\0asm"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digest(data: bytes) -> str:
    return "sha256:" + sha256_hex(data)


def _json(obj: object) -> bytes:
    """Canonical JSON: sorted keys, no whitespace (same input, same digest)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def cargo_version() -> str:
    with open(REPO / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["package"]["version"]


# ---------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------


def layer_tar(wasm: bytes) -> bytes:
    """An uncompressed tar with one regular file, plugin.wasm, and fixed metadata."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(PLUGIN_FILE)
        info.size = len(wasm)
        info.mode = 0o644
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """gzip with mtime 0 and no file name in the header."""
    return gzip.compress(data, compresslevel=9, mtime=0)


@dataclass
class Built:
    layout: Path
    tag: str
    manifest_digest: str  # "sha256:<hex>"
    manifest: dict
    config: dict

    @property
    def manifest_sha256(self) -> str:
        """The value for WasmPlugin.sha256 with an oci:// URL."""
        return self.manifest_digest.split(":", 1)[1]


def image_blobs(wasm: bytes, version: str) -> tuple[bytes, bytes, bytes]:
    """(layer tar.gz, config JSON, manifest JSON) for the compat image."""
    if not wasm.startswith(WASM_MAGIC):
        raise ValueError("not a WebAssembly module (missing \\0asm magic)")
    tar = layer_tar(wasm)
    layer = gzip_bytes(tar)
    config = _json({
        # GOOS/GOARCH pair of WASI preview 1 (what Docker+Wasm calls wasi/wasm).
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [_digest(tar)]},
    })
    manifest = _json({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": _digest(layer), "size": len(layer)}],
        "annotations": {
            VARIANT_ANNOTATION: "compat",
            "org.opencontainers.image.title": "certbound",
            "org.opencontainers.image.description":
                "certbound proxy-wasm filter (RFC 8705 certificate-bound JWTs) for Envoy and Istio",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.licenses": "Apache-2.0",
        },
    })
    return layer, config, manifest


def _write_layout(dest: Path, blobs: list[bytes], manifest: bytes, tag: str) -> None:
    (dest / "blobs" / "sha256").mkdir(parents=True)
    for blob in blobs:
        (dest / "blobs" / "sha256" / sha256_hex(blob)).write_bytes(blob)
    (dest / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": _digest(manifest),
            "size": len(manifest),
            "annotations": {REF_NAME: tag},
        }],
    }
    (dest / "index.json").write_bytes(_json(index))


def _replace_dir(tmp: Path, out: Path) -> None:
    """Put tmp where out is; only ever deletes an old OCI layout (or an empty dir)."""
    if out.exists():
        if not (out / "oci-layout").is_file() and any(out.iterdir()):
            raise SystemExit(f"oci: {out} exists and is not an OCI image layout; not replacing it")
        shutil.rmtree(out)
    tmp.rename(out)


def write_archive(layout: Path, archive: Path) -> None:
    """The layout as one tar (for `skopeo copy oci-archive:` / `oras cp --from-oci-layout`)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(archive.name + ".tmp")
    paths = sorted(p for p in layout.rglob("*"))
    with tarfile.open(tmp, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for p in paths:
            info = tarfile.TarInfo(p.relative_to(layout).as_posix())
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if p.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                data = p.read_bytes()
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, archive)


def build(wasm: bytes, out: Path, tag: str | None = None, archive: Path | None = None) -> Built:
    """Write the compat image as an OCI image layout at ``out`` (and ``archive``)."""
    version = cargo_version()
    tag = tag or version
    layer, config, manifest = image_blobs(wasm, version)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".oci-", dir=out.parent))
    try:
        _write_layout(tmp, [layer, config, manifest], manifest, tag)
        _replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    if archive is not None:
        write_archive(out, Path(archive))
    return Built(out, tag, _digest(manifest), json.loads(manifest), json.loads(config))


# ---------------------------------------------------------------------------
# reading back (tests, and the Istio-agent emulation in istio/xds.py)
# ---------------------------------------------------------------------------


class LayoutError(ValueError):
    pass


@dataclass
class Image:
    index: dict
    manifest_digest: str
    manifest: dict
    config: dict
    layers: list[bytes]  # compressed, in manifest order

    @property
    def manifest_sha256(self) -> str:
        return self.manifest_digest.split(":", 1)[1]


def read_blob(layout: Path, descriptor: dict) -> bytes:
    """A blob by descriptor, checked against the descriptor's digest and size."""
    algo, _, hexd = descriptor["digest"].partition(":")
    if algo != "sha256" or len(hexd) != 64:
        raise LayoutError(f"unsupported digest {descriptor['digest']!r}")
    data = (Path(layout) / "blobs" / "sha256" / hexd).read_bytes()
    if sha256_hex(data) != hexd:
        raise LayoutError(f"blob {hexd} does not match its digest")
    if len(data) != descriptor["size"]:
        raise LayoutError(f"blob {hexd}: size {len(data)} != descriptor size {descriptor['size']}")
    return data


def read_image(layout: Path, tag: str | None = None) -> Image:
    """The image tagged ``tag`` (or the only one) in an OCI image layout."""
    layout = Path(layout)
    if json.loads((layout / "oci-layout").read_text()).get("imageLayoutVersion") != "1.0.0":
        raise LayoutError("oci-layout: imageLayoutVersion is not 1.0.0")
    index = json.loads((layout / "index.json").read_text())
    entries = index["manifests"]
    if tag is not None:
        entries = [m for m in entries if m.get("annotations", {}).get(REF_NAME) == tag]
    if len(entries) != 1:
        raise LayoutError(f"expected one manifest for tag {tag!r}, found {len(entries)}")
    (desc,) = entries
    if desc["mediaType"] != MEDIA_MANIFEST:
        raise LayoutError(f"not an image manifest: {desc['mediaType']}")
    manifest = json.loads(read_blob(layout, desc))
    config = json.loads(read_blob(layout, manifest["config"]))
    layers = [read_blob(layout, d) for d in manifest["layers"]]
    return Image(index, desc["digest"], manifest, config, layers)


def extract_plugin(image: Image) -> bytes:
    """plugin.wasm from a compat image, by Istio's rules: the last layer must be
    an OCI tar+gzip layer; the first tar entry whose base name is plugin.wasm."""
    if not image.layers:
        raise LayoutError("number of layers must be greater than zero")
    media = image.manifest["layers"][-1]["mediaType"]
    if media != MEDIA_LAYER:
        raise LayoutError(f"invalid media type {media} (expect {MEDIA_LAYER})")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(image.layers[-1])), mode="r:") as tar:
        for member in tar:
            if PurePosixPath(member.name).name == PLUGIN_FILE:
                f = tar.extractfile(member)
                if f is None:
                    raise LayoutError(f"{PLUGIN_FILE} is not a regular file")
                return f.read()
    raise LayoutError(f"{PLUGIN_FILE} not found in the archive")


# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wasm", required=True, type=Path, help="the built certbound.wasm")
    p.add_argument("--out", required=True, type=Path, help="OCI image layout directory to (re)create")
    p.add_argument("--tag", help="tag (index.json ref name); default: the Cargo.toml version")
    p.add_argument("--archive", type=Path, help="also write the layout as this tar file")
    args = p.parse_args(argv)
    try:
        wasm = args.wasm.read_bytes()
    except FileNotFoundError:
        print(f"oci: {args.wasm} not found (run `make build`)", file=sys.stderr)
        return 1
    built = build(wasm, args.out, args.tag, args.archive)
    if args.archive is not None:
        Path(args.archive).with_suffix(".sha256").write_text(built.manifest_sha256 + "\n")
    print(f"oci: {built.layout} (tag {built.tag}), manifest {built.manifest_digest}")
    if args.archive is not None:
        print(f"oci: {args.archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
