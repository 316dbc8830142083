#!/usr/bin/env python3
"""Writes the fuzz seed corpora under fuzz/seeds/<target>/ from the committed
vectors (tests/vectors/vectors.json). Only the standard library is used.

    python3 fuzz/gen_seeds.py [--out DIR]

The seeds are generated, not committed: rerun after the vectors change.
Each seed is a file named after what it is. `decision` takes structured
(`arbitrary`) input and gets no seeds: its enums pick vector tokens,
certificates and routes directly.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
VECTORS = HERE.parent / "tests" / "vectors" / "vectors.json"


def write(dir_: Path, name: str, data: bytes | str) -> None:
    if isinstance(data, str):
        data = data.encode()
    dir_.mkdir(parents=True, exist_ok=True)
    (dir_ / name).write_bytes(data)


def pem_der(pem: str) -> bytes:
    body = "".join(l for l in pem.splitlines() if l and not l.startswith("-----"))
    return base64.b64decode(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "seeds")
    out = ap.parse_args().out
    v = json.loads(VECTORS.read_text())
    if out.exists():
        shutil.rmtree(out)

    # jwt_verify: every vector token, good and bad.
    for name, tok in v["tokens"].items():
        write(out / "jwt_verify", name, tok)

    # jwks_parse: every key set, and each key alone.
    for name in ("jwks", "single_jwks", "messy_jwks", "weak_jwks"):
        write(out / "jwks_parse", name, json.dumps(v[name]))
        for i, key in enumerate(v[name]["keys"]):
            write(out / "jwks_parse", f"{name}_{i}", json.dumps({"keys": [key]}))

    # cert_parse: PEM, percent-encoded PEM (as Envoy sends it), raw DER,
    # the forwarded-header forms (base64 DER, RFC 9440, folded PEM, XFCC),
    # the hex digest, the x5t#S256 values and a few proxy addresses.
    for name, pem in v["certs"].items():
        write(out / "cert_parse", f"{name}.pem", pem)
        write(out / "cert_parse", f"{name}.pem.urlenc", urllib.parse.quote(pem, safe=""))
        write(out / "cert_parse", f"{name}.der", pem_der(pem))
        der = pem_der(pem)
        write(out / "cert_parse", f"{name}.b64der", base64.b64encode(der))
        write(out / "cert_parse", f"{name}.rfc9440", b":" + base64.b64encode(der) + b":")
        write(out / "cert_parse", f"{name}.pem.folded", " ".join(pem.splitlines()))
        quoted = urllib.parse.quote(pem, safe="")
        write(out / "cert_parse", f"{name}.xfcc",
              f'By=spiffe://a/b;Hash={hashlib.sha256(der).hexdigest()};Cert="{quoted}"')
    for name, hexd in v["sha256_hex"].items():
        write(out / "cert_parse", f"{name}.hex", hexd)
        write(out / "cert_parse", f"{name}.hex.colons",
              ":".join(hexd[i:i + 2] for i in range(0, len(hexd), 2)).upper())
    for addr in ("10.1.2.3:443", "[fd00::1]:8443", "192.168.1.7", "::ffff:10.0.0.1", "10.0.0.0/8"):
        write(out / "cert_parse", "addr_" + addr.replace("/", "_").replace(":", "_"), addr)
    for name, x5t in v["x5t"].items():
        write(out / "cert_parse", f"{name}.x5t", x5t)

    # config_parse: configurations in the style of the tests and the docs.
    iss, aud = v["issuer"], v["audience"]
    jwks = json.dumps(v["jwks"])

    def prov(**extra):
        p = {"issuer": iss, "audiences": [aud], "local_jwks": {"environment_variable": "JWKS"}}
        p.update(extra)
        return p

    configs = {
        "minimal_env": {"providers": {"idp": prov()}},
        "minimal_inline": {"providers": {"idp": prov(local_jwks={"inline_string": jwks})}},
        "everything": {
            "max_token_bytes": 4096,
            "providers": {
                "idp": prov(
                    from_headers=[{"name": "Authorization", "value_prefix": "Bearer "}, {"name": "x-token"}],
                    from_params=["access_token"],
                    from_cookies=["at"],
                    clock_skew_seconds=30,
                    certificate_binding="required",
                    forward=False,
                    claim_to_headers=[{"claim_name": "org.id", "header_name": "x-org"}],
                    forward_payload_header="x-jwt-payload",
                    thumbprint_header="x-client-thumbprint",
                    require_expiration=True,
                    max_lifetime_seconds=3600,
                    token_types=["at+jwt", "application/jwt"],
                    algorithms=["ES256", "RS256", "EdDSA"],
                ),
                "other": {
                    "issuer": "https://other.example.com",
                    "local_jwks": {"environment_variable": "OTHER"},
                    "certificate_binding": "when_present",
                    "require_expiration": False,
                },
            },
            "rules": [
                {"match": {"path": "/health"}},
                {"match": {"prefix": "/orders"}, "requires": {"provider_name": "idp"},
                 "required_scopes": ["orders:read"]},
                {"match": {"prefix": "/any"}, "requires": {"requires_any": {"requirements": [
                    {"provider_name": "other"}, {"provider_name": "idp"}]}}},
                {"match": {"prefix": "/all"}, "requires": {"requires_all": [
                    {"provider_name": "idp"}, {"allow_missing": {}}]}},
                {"match": {"prefix": "/optional"}, "requires": {"allow_missing": {}}},
                {"match": {"prefix": "/lenient"}, "requires": {"allow_missing_or_failed": {}}},
            ],
        },
        "bad_unknown_field": {"providers": {"idp": prov(isuer="x")}},
        "bad_no_providers": {"providers": {}},
        "bad_rule_provider": {"providers": {"idp": prov()},
                              "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "nope"}}]},
        "bad_clash": {"providers": {"idp": prov(from_headers=[{"name": "x-a"}], thumbprint_header="X-A")}},
        "bad_skew": {"providers": {"idp": prov(clock_skew_seconds=-1)}},
    }
    for name, cfg in configs.items():
        write(out / "config_parse", name, json.dumps(cfg, indent=1))

    for d in sorted(out.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} seeds")


if __name__ == "__main__":
    main()
