#!/usr/bin/env python3
"""Release artifacts in dist/ (`make dist`), standard library only:

    dist/certbound.wasm           the filter
    dist/certbound.wasm.sha256    its sha256 (hex): WasmPlugin.sha256 for an
                                  https:// (or file://) url, Envoy's
                                  vm_config.code.remote.sha256
    dist/oci/                     OCI image layout, Istio's compat variant (istio/oci.py)
    dist/certbound-oci.tar        the same layout as one tar
    dist/certbound-oci.sha256     the image's manifest digest (hex):
                                  WasmPlugin.sha256 for an oci:// url
    dist/istio/*.yaml             istio/*.yaml with ${CERTBOUND_IMAGE} and
                                  ${CERTBOUND_OCI_SHA256} filled in
    dist/libcertbound.so          with --so: the native build, an Envoy 1.40
                                  dynamic module (docs/deployment-native.md)
    dist/libcertbound.so.sha256   its sha256 (hex)

    python3 istio/dist.py --wasm target/wasm32-wasip1/release/certbound.wasm \\
        --out dist [--image registry.example.com/certbound:0.1.0] \\
        [--so target/release/libcertbound.so]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import oci  # noqa: E402

# Manifests shipped to users (the migration "before" example is not one).
MANIFESTS = ("gateway.yaml", "idp.yaml", "wasmplugin-ingress.yaml", "wasmplugin-sidecar.yaml")
PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


def default_image() -> str:
    return f"registry.example.com/certbound:{oci.cargo_version()}"


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def render(text: str, values: dict[str, str]) -> str:
    """Fill ${NAME} placeholders, as envsubst would; every one must have a value."""
    missing = sorted({m for m in PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise KeyError(f"no value for {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def render_manifests(out_dir: Path, values: dict[str, str]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in MANIFESTS:
        dst = out_dir / name
        _write(dst, render((HERE / name).read_text(), values).encode())
        written.append(dst)
    return written


def build(wasm_path: Path, out: Path, image: str | None = None) -> dict[str, str]:
    wasm = wasm_path.read_bytes()
    if not wasm.startswith(oci.WASM_MAGIC):
        raise SystemExit(f"dist: {wasm_path} is not a WebAssembly module")
    image = image or default_image()
    ref = image.removeprefix("oci://")
    last = ref.rsplit("/", 1)[-1]
    if "@" in ref or ":" not in last:
        raise SystemExit(f"dist: IMAGE must be <registry>/<repository>:<tag>, got {image!r}")
    tag = last.rsplit(":", 1)[1]
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "certbound.wasm", wasm)
    _write(out / "certbound.wasm.sha256", (oci.sha256_hex(wasm) + "\n").encode())
    built = oci.build(wasm, out / "oci", tag=tag, archive=out / "certbound-oci.tar")
    _write(out / "certbound-oci.sha256", (built.manifest_sha256 + "\n").encode())
    if (out / "istio").exists():
        shutil.rmtree(out / "istio")
    render_manifests(out / "istio", {"CERTBOUND_IMAGE": ref, "CERTBOUND_OCI_SHA256": built.manifest_sha256})
    return {"image": ref, "tag": tag, "wasm_sha256": oci.sha256_hex(wasm),
            "oci_sha256": built.manifest_sha256}


ELF_MAGIC = b"\x7fELF"


def add_native(so_path: Path, out: Path) -> str:
    """Copies the native build and writes its sha256; returns the hex digest."""
    so = so_path.read_bytes()
    if not so.startswith(ELF_MAGIC):
        raise SystemExit(f"dist: {so_path} is not a shared object")
    out.mkdir(parents=True, exist_ok=True)
    digest = oci.sha256_hex(so)
    _write(out / "libcertbound.so", so)
    _write(out / "libcertbound.so.sha256", (digest + "\n").encode())
    return digest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wasm", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--image", default=os.environ.get("IMAGE") or None,
                   help="<registry>/<repository>:<tag> the image will be pushed to "
                        "(default: registry.example.com/certbound:<Cargo.toml version>)")
    p.add_argument("--so", type=Path, default=None,
                   help="the native build (libcertbound.so) to ship too")
    args = p.parse_args(argv)
    if args.so is not None and not args.so.exists():
        print(f"dist: {args.so} not found (run `make native`)", file=sys.stderr)
        return 1
    if not args.wasm.exists():
        print(f"dist: {args.wasm} not found (run `make build`)", file=sys.stderr)
        return 1
    info = build(args.wasm, args.out, args.image)
    d = args.out
    if args.so is not None:
        print(f"dist: {d}/libcertbound.so        sha256 {add_native(args.so, d)}")
    print(f"""dist: {d}/certbound.wasm           sha256 {info['wasm_sha256']}
dist: {d}/oci/ (tag {info['tag']}), {d}/certbound-oci.tar  manifest sha256:{info['oci_sha256']}
dist: {d}/istio/*.yaml for oci://{info['image']}
push: skopeo copy oci:{d}/oci:{info['tag']} docker://{info['image']}
  or: oras cp --from-oci-layout {d}/oci:{info['tag']} {info['image']}""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
