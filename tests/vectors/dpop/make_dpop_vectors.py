#!/usr/bin/env python3
"""Writes tests/vectors/dpop/dpop.json: DPoP proofs (RFC 9449) for the fixed
clock NOW, one valid proof per key type and one proof per check that must
fail, with the DpopError reason each must yield (tests/dpop.rs).

Run it from the repository root with Python `cryptography`:

    python3 tests/vectors/dpop/make_dpop_vectors.py

The output is committed; rerunning it makes new keys and signatures, so
the tests depend only on the case names and expectations below. The JWK
thumbprints (RFC 7638) and server nonces are computed here independently
of the Rust code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

NOW = 1_800_000_000
ORIGIN = "https://api.example.com"
PATH = "/orders/42?expand=items"
HTU = "https://api.example.com/orders/42"
ACCESS_TOKEN = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
# Server nonce secrets (RFC 9449 §9), as the Rust NonceConfig holds them.
NONCE_SECRET = b"certbound-dpop-vectors-nonce-key"
OTHER_SECRET = b"another-server-nonce-secret-0000"
NONCE_STEP = 5
NONCE_LABEL = b"certbound dpop nonce v1"
OUT = Path(__file__).resolve().parent / "dpop.json"


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64u_json(obj) -> str:
    return b64u(json.dumps(obj, separators=(",", ":")).encode())


def int_b64u(n: int, length: int | None = None) -> str:
    length = length or (n.bit_length() + 7) // 8
    return b64u(n.to_bytes(length, "big"))


def nonce(secret: bytes, now: int) -> str:
    counter = (now // NONCE_STEP).to_bytes(8, "big")
    tag = hmac.new(secret, NONCE_LABEL + counter, hashlib.sha256).digest()[:16]
    return b64u(counter + tag)


# ---------------------------------------------------------------- keys


class Key:
    def __init__(self, alg, private):
        self.alg = alg
        self.private = private

    def public_jwk(self) -> dict:
        pub = self.private.public_key()
        if isinstance(pub, ec.EllipticCurvePublicKey):
            n = pub.public_numbers()
            size = (pub.curve.key_size + 7) // 8
            crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[pub.curve.name]
            return {"kty": "EC", "crv": crv, "x": int_b64u(n.x, size), "y": int_b64u(n.y, size)}
        if isinstance(pub, rsa.RSAPublicKey):
            n = pub.public_numbers()
            return {"kty": "RSA", "n": int_b64u(n.n), "e": int_b64u(n.e)}
        raw = pub.public_bytes_raw()
        return {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}

    def private_jwk(self) -> dict:
        jwk = self.public_jwk()
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            size = (self.private.curve.key_size + 7) // 8
            jwk["d"] = int_b64u(self.private.private_numbers().private_value, size)
        elif isinstance(self.private, ed25519.Ed25519PrivateKey):
            jwk["d"] = b64u(self.private.private_bytes_raw())
        else:
            jwk["d"] = int_b64u(self.private.private_numbers().d)
        return jwk

    def thumbprint(self) -> str:
        """RFC 7638: the required members, sorted, no whitespace."""
        jwk = self.public_jwk()
        required = {"EC": ["crv", "kty", "x", "y"], "RSA": ["e", "kty", "n"], "OKP": ["crv", "kty", "x"]}
        members = {k: jwk[k] for k in required[jwk["kty"]]}
        text = json.dumps(members, separators=(",", ":"), sort_keys=True)
        return b64u(hashlib.sha256(text.encode()).digest())

    def sign(self, data: bytes) -> bytes:
        k = self.private
        if self.alg in ("ES256", "ES384"):
            h = hashes.SHA256() if self.alg == "ES256" else hashes.SHA384()
            r, s = decode_dss_signature(k.sign(data, ec.ECDSA(h)))
            size = (k.curve.key_size + 7) // 8
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        if self.alg == "PS256":
            return k.sign(
                data,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                hashes.SHA256(),
            )
        if self.alg == "RS256":
            return k.sign(data, padding.PKCS1v15(), hashes.SHA256())
        if self.alg == "EdDSA":
            return k.sign(data)
        raise ValueError(self.alg)


es256 = Key("ES256", ec.generate_private_key(ec.SECP256R1()))
es256_other = Key("ES256", ec.generate_private_key(ec.SECP256R1()))
es384 = Key("ES384", ec.generate_private_key(ec.SECP384R1()))
ps256 = Key("PS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))
eddsa = Key("EdDSA", ed25519.Ed25519PrivateKey.generate())

_jti = 0


def next_jti() -> str:
    global _jti
    _jti += 1
    return f"vector-jti-{_jti:04d}"


def claims(**overrides) -> dict:
    c = {
        "jti": next_jti(),
        "htm": "GET",
        "htu": HTU,
        "iat": NOW - 2,
        "ath": b64u(hashlib.sha256(ACCESS_TOKEN.encode()).digest()),
    }
    for k, v in overrides.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def proof(key: Key, header_overrides=None, jwk=None, **claim_overrides) -> str:
    header = {"typ": "dpop+jwt", "alg": key.alg, "jwk": jwk or key.public_jwk()}
    for k, v in (header_overrides or {}).items():
        if v is None:
            header.pop(k, None)
        else:
            header[k] = v
    signing_input = f"{b64u_json(header)}.{b64u_json(claims(**claim_overrides))}"
    return f"{signing_input}.{b64u(key.sign(signing_input.encode()))}"


def hs256_proof() -> str:
    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": b64u(b"k" * 32)}}
    signing_input = f"{b64u_json(header)}.{b64u_json(claims())}"
    mac = hmac.new(b"k" * 32, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64u(mac)}"


def none_proof() -> str:
    header = {"typ": "dpop+jwt", "alg": "none", "jwk": es256.public_jwk()}
    return f"{b64u_json(header)}.{b64u_json(claims())}."


def bad_signature(p: str) -> str:
    head, sig = p.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[-1] ^= 0x01
    raw[0] ^= 0x80
    return f"{head}.{b64u(bytes(raw))}"


def case(name, proofs, expect, key=None, *, method="GET", path=PATH, access_token=ACCESS_TOKEN,
         token_jkt="key", algorithms=None, nonce=False, required=False):
    if isinstance(proofs, str):
        proofs = [proofs]
    if token_jkt == "key":
        token_jkt = key.thumbprint() if key else es256.thumbprint()
    return {
        "name": name,
        "proofs": proofs,
        "method": method,
        "origin": ORIGIN,
        "path": path,
        "access_token": access_token,
        "token_jkt": token_jkt,
        "config": {
            "algorithms": algorithms or ["ES256", "PS256", "EdDSA"],
            "nonce": nonce,
            "required": required,
        },
        "expect": expect,
        "jkt": key.thumbprint() if key and expect == "ok" else None,
    }


big = "x" * (9 * 1024)
cases = [
    # Valid proofs, each key type.
    case("valid_es256", proof(es256), "ok", es256),
    case("valid_ps256", proof(ps256), "ok", ps256),
    case("valid_eddsa", proof(eddsa), "ok", eddsa),
    case("valid_es384", proof(es384), "ok", es384, algorithms=["ES384"]),
    case("valid_htu_normalised", proof(es256, htu="HTTPS://API.Example.com:443/orders/%34%32?q#f"), "ok", es256),
    case("valid_without_token", proof(es256, ath=None), "ok", es256, access_token=None, token_jkt=None),
    case("valid_post", proof(es256, htm="POST"), "ok", es256, method="POST"),
    case("valid_fractional_iat", proof(es256, iat=NOW - 1.5), "ok", es256),
    case("valid_nonce", proof(es256, nonce=nonce(NONCE_SECRET, NOW - 20)), "ok", es256, nonce=True),
    # Header count and size.
    case("missing", [], "dpop_missing"),
    case("multiple", [proof(es256), proof(es256)], "dpop_multiple"),
    case("folded", proof(es256) + ", " + proof(es256), "dpop_multiple"),
    case("too_large", proof(es256, pad=big), "dpop_too_large"),
    case("not_a_jws", "not.a-jws", "dpop_malformed"),
    case("five_segments", proof(es256) + ".a.b", "dpop_malformed"),
    # Header.
    case("missing_typ", proof(es256, header_overrides={"typ": None}), "dpop_wrong_type"),
    case("typ_jwt", proof(es256, header_overrides={"typ": "JWT"}), "dpop_wrong_type"),
    case("typ_case", proof(es256, header_overrides={"typ": "DPoP+JWT"}), "dpop_wrong_type"),
    case("hs256", hs256_proof(), "dpop_unsupported_algorithm"),
    case("alg_none", none_proof(), "dpop_unsupported_algorithm"),
    case("es384_not_allowed", proof(es384), "dpop_algorithm_not_allowed"),
    case("crit", proof(es256, header_overrides={"crit": ["exp"]}), "dpop_malformed"),
    case("no_jwk", proof(es256, header_overrides={"jwk": None}), "dpop_key_invalid"),
    case("private_key_in_jwk", proof(es256, jwk=es256.private_jwk()), "dpop_private_key"),
    case("private_key_in_rsa_jwk", proof(ps256, jwk=ps256.private_jwk()), "dpop_private_key"),
    case("oct_jwk", proof(es256, jwk={"kty": "oct", "k": b64u(b"k" * 32)}), "dpop_symmetric_key"),
    case("rsa_jwk_with_es256", proof(es256, jwk=ps256.public_jwk()), "dpop_key_algorithm_mismatch"),
    case("p384_jwk_with_es256", proof(es256, jwk=es384.public_jwk()), "dpop_key_algorithm_mismatch"),
    case("bad_signature", bad_signature(proof(es256)), "dpop_bad_signature"),
    case("other_key_signed", proof(es256_other, jwk=es256.public_jwk()), "dpop_bad_signature"),
    case("bad_signature_ps256", bad_signature(proof(ps256)), "dpop_bad_signature", ps256),
    case("bad_signature_eddsa", bad_signature(proof(eddsa)), "dpop_bad_signature", eddsa),
    # Claims.
    case("missing_jti", proof(es256, jti=None), "dpop_malformed"),
    case("long_jti", proof(es256, jti="j" * 257), "dpop_malformed"),
    case("missing_htm", proof(es256, htm=None), "dpop_malformed"),
    case("missing_iat", proof(es256, iat=None), "dpop_malformed"),
    case("string_iat", proof(es256, iat=str(NOW)), "dpop_malformed"),
    case("wrong_method", proof(es256, htm="POST"), "dpop_method_mismatch"),
    case("method_case", proof(es256, htm="get"), "dpop_method_mismatch"),
    case("wrong_uri", proof(es256, htu="https://api.example.com/orders/43"), "dpop_uri_mismatch"),
    case("wrong_host", proof(es256, htu="https://evil.example.com/orders/42"), "dpop_uri_mismatch"),
    case("wrong_scheme", proof(es256, htu="http://api.example.com/orders/42"), "dpop_uri_mismatch"),
    case("stale", proof(es256, iat=NOW - 120), "dpop_stale"),
    case("future", proof(es256, iat=NOW + 60), "dpop_issued_in_future"),
    case("missing_ath", proof(es256, ath=None), "dpop_missing_ath"),
    case("wrong_ath", proof(es256, ath=b64u(hashlib.sha256(b"another token").digest())), "dpop_ath_mismatch"),
    case("jkt_mismatch", proof(es256), "dpop_key_mismatch", token_jkt=es256_other.thumbprint()),
    case("unbound_token_required", proof(es256), "dpop_unbound_token", token_jkt=None, required=True),
    # Nonces.
    case("nonce_required", proof(es256), "dpop_nonce_required", nonce=True),
    case("nonce_other_secret", proof(es256, nonce=nonce(OTHER_SECRET, NOW)), "dpop_nonce_invalid", nonce=True),
    case("nonce_expired", proof(es256, nonce=nonce(NONCE_SECRET, NOW - 400)), "dpop_nonce_invalid", nonce=True),
]

doc = {
    "now": NOW,
    "nonce_secret": b64u(NONCE_SECRET),
    "nonce_lifetime_secs": 300,
    "cases": cases,
}
OUT.write_text(json.dumps(doc, indent=1) + "\n")
print(f"wrote {OUT} ({len(cases)} cases)")
