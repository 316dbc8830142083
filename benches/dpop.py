#!/usr/bin/env python3
"""`make bench-dpop`: what a DPoP request costs, in Envoy instructions per
request under callgrind, next to the certificate-bound token.

Three listeners of certbound (wasm), one Envoy each, as in bench.py:

  (c) cache on, a token bound to the client certificate (x5t#S256);
  (p) cache on, a DPoP-bound token (cnf.jkt), every request with a fresh
      ES256 proof: one proof verification per request plus the cached token;
  (d) cache off, the certificate-bound token: one token verification per
      request.

A load generator cannot vary a header per request, so the requests go from
Python over one keep-alive TLS connection, every proof made beforehand.
Callgrind counts Envoy's instructions only, so the client's speed does not
enter the figures (what a timed run could not say on this shared machine).

    target/venv/bin/python benches/dpop.py [--requests 1000] [--wasm X.wasm]
"""

from __future__ import annotations

import argparse
import base64
import glob
import hashlib
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
import instructions  # noqa: E402

REPO = bench.REPO


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    n = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64url(n.x.to_bytes(32, "big")),
            "y": b64url(n.y.to_bytes(32, "big"))}


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638: the required members in lexicographic order, no whitespace."""
    members = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    return b64url(hashlib.sha256(json.dumps(members, separators=(",", ":")).encode()).digest())


def proof(key: ec.EllipticCurvePrivateKey, jwk: dict[str, str], htu: str, token: str) -> str:
    claims = {"jti": str(uuid.uuid4()), "htm": "GET", "htu": htu, "iat": int(time.time()),
              "ath": b64url(hashlib.sha256(token.encode()).digest())}
    return jwt.encode(claims, key, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": jwk})


def certbound_config(m: bench.Material, dpop: bool, cache: int) -> str:
    provider: dict = {"issuer": bench.ISSUER, "audiences": [bench.AUDIENCE],
                      "local_jwks": {"inline_string": m.jwks_text}, "forward": True}
    if dpop:
        provider["dpop"] = {"algorithms": ["ES256"], "max_age": "3600s"}
    return json.dumps({"providers": {"idp": provider}, "jwt_cache_size": cache})


def send(port: int, m: bench.Material, requests: list[dict[str, str]], status: int = 200) -> None:
    ctx = ssl.create_default_context(cafile=str(m.ca))
    ctx.load_cert_chain(str(m.client_cert), str(m.client_key))
    ctx.check_hostname = False
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=600)
    for headers in requests:
        conn.request("GET", "/", headers=headers)
        r = conn.getresponse()
        body = r.read()
        if r.status != status:
            sys.exit(f"dpop bench: answered {r.status}: {body[:200]!r} "
                     f"{r.getheader('www-authenticate')}")
    conn.close()


def count(name: str, config: str, n: int, m: bench.Material, wasm: Path, workdir: Path,
          make_requests, status: int = 200, warm=None) -> instructions.Counts:
    port, admin = bench.free_port(), bench.free_port()
    cfg = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [
            bench.listener(f"bench_{name}", port, m,
                           [bench.wasm_filter(f"bench_{name}", wasm, config)])]},
    }
    out = workdir / f"callgrind-{name}.out"
    for f in glob.glob(f"{out}*"):
        os.remove(f)
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={out}", "--cache-sim=yes"]
    envoy = bench.Envoy(instructions.envoy_binary(), cfg, workdir, f"dpop-{name}", None,
                        wrapper=valgrind)
    envoy.start(timeout=600)
    assert envoy.proc is not None
    try:
        warm_requests = (warm or make_requests)(port, max(n // 2, 100))
        send(port, m, warm_requests, status)  # warm, not counted
        batch = make_requests(port, n)
        pid = str(envoy.proc.pid)
        subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
        send(port, m, batch, status)
        subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
    finally:
        envoy.stop()
    return instructions.read_dump(out, n, f"({name})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--wasm", default=str(REPO / "target/wasm32-wasip1/release/certbound.wasm"))
    ap.add_argument("--workdir", default=str(REPO / "target/bench/dpop"))
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"dpop bench: {tool} not found (apt-get install valgrind)")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    wasm = workdir / "certbound.wasm"
    shutil.copyfile(args.wasm, wasm)
    m = bench.make_material(workdir)
    idp_key, kid = m.keys["ES256"]
    bound = m.tokens["ES256"]

    dpop_key = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(dpop_key)
    now = int(time.time())
    dpop_token = jwt.encode(
        {"iss": bench.ISSUER, "aud": bench.AUDIENCE, "sub": "bench-client", "iat": now,
         "exp": now + 12 * 3600, "cnf": {"jkt": thumbprint(jwk)}},
        idp_key, algorithm="ES256", headers={"kid": kid})

    def bearer(_port: int, k: int) -> list[dict[str, str]]:
        return [{"authorization": f"Bearer {bound}"}] * k

    def dpop(port: int, k: int) -> list[dict[str, str]]:
        htu = f"https://127.0.0.1:{port}/"
        return [{"authorization": f"DPoP {dpop_token}", "dpop": proof(dpop_key, jwk, htu, dpop_token)}
                for _ in range(k)]

    rows = {
        "c": count("c", certbound_config(m, False, bench.CACHE_SIZE), args.requests, m, wasm,
                   workdir, bearer),
        "p": count("p", certbound_config(m, True, bench.CACHE_SIZE), args.requests, m, wasm,
                   workdir, dpop),
        "d": count("d", certbound_config(m, False, 0), args.requests, m, wasm, workdir, bearer),
    }
    titles = {"c": "certbound, cache on, certificate-bound ES256 token",
              "p": "certbound, cache on, DPoP-bound token, fresh ES256 proof per request",
              "d": "certbound, cache off, certificate-bound ES256 token"}
    print("| per request (callgrind) | instructions | estimated cycles | ÷ (c) | ÷ (d) |")
    print("|---|---:|---:|---:|---:|")
    for k, c in rows.items():
        print(f"| ({k}) {titles[k]} | {c.ir / 1000:,.1f} k | {c.cycles / 1000:,.1f} k "
              f"| {c.ir / rows['c'].ir:.2f} | {c.ir / rows['d'].ir:.2f} |")
    print(f"\n{args.requests} counted requests per row; reproduce with `make bench-dpop`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
