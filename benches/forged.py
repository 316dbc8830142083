#!/usr/bin/env python3
"""What forged ES256/ES384 signatures cost certbound in Envoy: N tokens
signed r = s = 1 under one key the filter has never verified a signature
for (a `kid` from its JWKS), counted by callgrind, Envoy instructions in all
and per token. A key's precomputed table is built only after a signature
under it verifies, so forgeries take the plain path and build none.

    target/venv/bin/python benches/forged.py [--wasm X.wasm] [--tokens 1000]
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
import dpop  # noqa: E402

REPO = bench.REPO
CURVES = {"ES256": (ec.SECP256R1, 32), "ES384": (ec.SECP384R1, 48)}


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwk(key, kid: str, alg: str, size: int) -> dict:
    n = key.public_key().public_numbers()
    crv = "P-256" if alg == "ES256" else "P-384"
    return {"kty": "EC", "crv": crv, "kid": kid, "alg": alg,
            "x": b64url(n.x.to_bytes(size, "big")), "y": b64url(n.y.to_bytes(size, "big"))}


def forged(alg: str, kid: str, size: int, i: int) -> str:
    header = {"alg": alg, "kid": kid, "typ": "JWT"}
    now = int(time.time())
    claims = {"iss": bench.ISSUER, "aud": bench.AUDIENCE, "sub": f"forger-{i}",
              "iat": now, "exp": now + 3600}
    one = (1).to_bytes(size, "big")
    seg = lambda d: b64url(json.dumps(d, separators=(",", ":")).encode())  # noqa: E731
    return f"{seg(header)}.{seg(claims)}.{b64url(one + one)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--wasm", default=str(REPO / "target/wasm32-wasip1/release/certbound.wasm"))
    ap.add_argument("--workdir", default=str(REPO / "target/bench/forged"))
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    wasm = workdir / "certbound.wasm"
    shutil.copyfile(args.wasm, wasm)
    m = bench.make_material(workdir)
    print(f"| {args.tokens} forged tokens under one fresh key | Envoy instructions | per token |")
    print("|---|---:|---:|")
    for alg, (curve, size) in CURVES.items():
        keys = {kid: ec.generate_private_key(curve()) for kid in ("warm", "fresh")}
        jwks = json.dumps({"keys": [jwk(k, kid, alg, size) for kid, k in keys.items()]})
        config = json.dumps({"providers": {"idp": {
            "issuer": bench.ISSUER, "audiences": [bench.AUDIENCE],
            "local_jwks": {"inline_string": jwks}}}, "jwt_cache_size": 0})

        def requests(kid: str):
            return lambda _port, k: [{"authorization": f"Bearer {forged(alg, kid, size, i)}"}
                                     for i in range(k)]

        c = dpop.count(f"forged-{alg.lower()}", config, args.tokens, m, wasm, workdir,
                       requests("fresh"), status=401, warm=requests("warm"))
        print(f"| {alg} | {c.ir * args.tokens / 1e6:,.1f} M | {c.ir / 1000:,.1f} k |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
