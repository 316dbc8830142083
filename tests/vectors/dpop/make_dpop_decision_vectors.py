#!/usr/bin/env python3
"""Writes tests/vectors/dpop/decision.json: signed access tokens with every
shape of `cnf` DPoP cares about and DPoP proofs for them, for the decision
tests (tests/core.rs) and the native-shim tests (tests/filter_shim.rs), at
the fixed clock NOW of tests/vectors/vectors.json.

Run it from the repository root with Python `cryptography`:

    python3 tests/vectors/dpop/make_dpop_decision_vectors.py

It reads tests/vectors/vectors.json for NOW, the issuer, the audience and
the `x5t#S256` of its client certificates (so a token here can be bound
to `client_a` as the tests there present it), and makes its own IdP key
(`jwks`, kid `dpop-idp`) and client DPoP keys. The output is committed;
rerunning it makes new keys and signatures, so the tests depend only on
the names below. Every proof is a GET of REQUEST_URI (origin and path
below), issued at NOW - 2, its `ath` over the token of the same name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

HERE = Path(__file__).resolve().parent
VECTORS = json.loads((HERE.parent / "vectors.json").read_text())
OUT = HERE / "decision.json"

NOW = VECTORS["now"]
ISS = VECTORS["issuer"]
AUD = VECTORS["audience"]
X5T_A = VECTORS["x5t"]["client_a"]
ORIGIN = "https://api.example.com"
PATH = "/api/orders"
# Server nonces (src/binding/dpop/nonce.rs), as the plugin JSON's
# `dpop.nonce.secret` (a plain string of 32 bytes or more).
NONCE_SECRET = "certbound decision vectors nonce secret"
NONCE_STEP = 5
NONCE_LABEL = b"certbound dpop nonce v1"
KID = "dpop-idp"


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64u_json(obj) -> str:
    return b64u(json.dumps(obj, separators=(",", ":")).encode())


def es256(key, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def ec_jwk(key) -> dict:
    n = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64u(n.x.to_bytes(32, "big")),
            "y": b64u(n.y.to_bytes(32, "big"))}


def thumbprint(jwk: dict) -> str:
    """RFC 7638: the required members, sorted, no whitespace."""
    members = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    text = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64u(hashlib.sha256(text.encode()).digest())


def nonce(secret: bytes, now: int) -> str:
    counter = (now // NONCE_STEP).to_bytes(8, "big")
    tag = hmac.new(secret, NONCE_LABEL + counter, hashlib.sha256).digest()[:16]
    return b64u(counter + tag)


idp = ec.generate_private_key(ec.SECP256R1())
client = ec.generate_private_key(ec.SECP256R1())
other = ec.generate_private_key(ec.SECP256R1())
JKT = thumbprint(ec_jwk(client))


def token(cnf) -> str:
    claims = {"iss": ISS, "aud": AUD, "sub": "dpop-client", "iat": NOW - 10,
              "exp": NOW + 300, "jti": hashlib.sha256(json.dumps(cnf).encode()).hexdigest()[:16]}
    if cnf is not None:
        claims["cnf"] = cnf
    signing_input = f"{b64u_json({'alg': 'ES256', 'typ': 'at+jwt', 'kid': KID})}.{b64u_json(claims)}"
    return f"{signing_input}.{b64u(es256(idp, signing_input.encode()))}"


_jti = 0


def proof(key, access_token: str | None, **overrides) -> str:
    global _jti
    _jti += 1
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": ec_jwk(key)}
    claims = {"jti": f"decision-jti-{_jti:03d}", "htm": "GET", "htu": ORIGIN + PATH,
              "iat": NOW - 2}
    if access_token is not None:
        claims["ath"] = b64u(hashlib.sha256(access_token.encode()).digest())
    for k, v in overrides.items():
        if v is None:
            claims.pop(k, None)
        else:
            claims[k] = v
    signing_input = f"{b64u_json(header)}.{b64u_json(claims)}"
    return f"{signing_input}.{b64u(es256(key, signing_input.encode()))}"


tokens = {
    "jkt": token({"jkt": JKT}),
    "jkt_and_x5t": token({"jkt": JKT, "x5t#S256": X5T_A}),
    "x5t": token({"x5t#S256": X5T_A}),
    "unbound": token(None),
    # `jkt` that is no thumbprint, beside a good `x5t#S256`
    "x5t_and_bad_jkt": token({"x5t#S256": X5T_A, "jkt": "not-a-thumbprint"}),
    "x5t_and_numeric_jkt": token({"x5t#S256": X5T_A, "jkt": 5}),
    "bad_jkt": token({"jkt": "not-a-thumbprint"}),
}
current = NONCE_SECRET.encode()
proofs = {
    "jkt": proof(client, tokens["jkt"]),
    "jkt_again": proof(client, tokens["jkt"]),
    "jkt_post": proof(client, tokens["jkt"], htm="POST"),
    "jkt_other_key": proof(other, tokens["jkt"]),
    "jkt_nonce": proof(client, tokens["jkt"], nonce=nonce(current, NOW)),
    "jkt_and_x5t": proof(client, tokens["jkt_and_x5t"]),
    "x5t": proof(client, tokens["x5t"]),
    "unbound": proof(client, tokens["unbound"]),
    "x5t_and_bad_jkt": proof(client, tokens["x5t_and_bad_jkt"]),
}

doc = {
    "_comment": "Generated by tests/vectors/dpop/make_dpop_decision_vectors.py; "
                "do not edit by hand.",
    "now": NOW,
    "origin": ORIGIN,
    "path": PATH,
    "jwks": {"keys": [{**ec_jwk(idp), "kid": KID, "alg": "ES256", "use": "sig"}]},
    "jkt": JKT,
    "nonce_secret": NONCE_SECRET,
    "nonce_now": nonce(current, NOW),
    "tokens": tokens,
    "proofs": proofs,
}
OUT.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
print(f"wrote {OUT} ({len(tokens)} tokens, {len(proofs)} proofs)")
