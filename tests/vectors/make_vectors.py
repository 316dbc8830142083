#!/usr/bin/env python3
"""Writes tests/vectors/vectors.json: the fixed keys, certificates and tokens
that certbound's Rust unit and native-shim tests run against.

Run it from the repository root with the project venv (make venv):

    target/venv/bin/python tests/vectors/make_vectors.py

The output is committed; rerunning it makes new keys and signatures (ECDSA
is randomized), so the tests never depend on a particular run, only on the
names below. Every token is minted for the fixed clock NOW; the Rust tests
pass NOW as `now` and never read the system clock.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import NameOID

NOW = 1_800_000_000
ISS = "https://idp.example.com"
AUD = "https://api.example.com"
OUT = Path(__file__).resolve().parent / "vectors.json"


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64u_json(obj) -> str:
    return b64u(json.dumps(obj, separators=(",", ":")).encode())


def int_b64u(n: int) -> str:
    return b64u(n.to_bytes((n.bit_length() + 7) // 8, "big"))


# ---------------------------------------------------------------- keys

rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
rsa_weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
p256 = ec.generate_private_key(ec.SECP256R1())
p256_other = ec.generate_private_key(ec.SECP256R1())
p384 = ec.generate_private_key(ec.SECP384R1())
ed = ed25519.Ed25519PrivateKey.generate()


def rsa_jwk(k, kid, alg=None):
    n = k.public_key().public_numbers()
    j = {"kty": "RSA", "kid": kid, "use": "sig", "n": int_b64u(n.n), "e": int_b64u(n.e)}
    if alg:
        j["alg"] = alg
    return j


def ec_jwk(k, kid, crv, size):
    n = k.public_key().public_numbers()
    return {
        "kty": "EC",
        "kid": kid,
        "crv": crv,
        "x": b64u(n.x.to_bytes(size, "big")),
        "y": b64u(n.y.to_bytes(size, "big")),
    }


def ed_jwk(k, kid):
    raw = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64u(raw)}


jwks = {
    "keys": [
        rsa_jwk(rsa_key, "rsa"),
        ec_jwk(p256, "es256", "P-256", 32),
        ec_jwk(p384, "es384", "P-384", 48),
        ed_jwk(ed, "ed25519"),
    ]
}
single_jwks = {"keys": [{k: v for k, v in ec_jwk(p256, "x", "P-256", 32).items() if k != "kid"}]}
weak_jwks = {"keys": [rsa_jwk(rsa_weak, "weak"), ec_jwk(p256, "es256", "P-256", 32)]}
messy_jwks = {
    "keys": [
        rsa_jwk(rsa_weak, "weak"),
        {**ec_jwk(p256, "enc", "P-256", 32), "use": "enc"},
        {"kty": "oct", "kid": "hmac", "k": b64u(b"secret")},
        {**ec_jwk(p256, "secp256k1", "P-256", 32), "crv": "secp256k1"},
        ec_jwk(p256, "es256", "P-256", 32),
        ec_jwk(p256_other, "es256", "P-256", 32),
        rsa_jwk(rsa_key, "rs256-only", "RS256"),
        {**ed_jwk(ed, "eddsa-only"), "alg": "EdDSA"},
        {**ed_jwk(ed, "ed25519-only"), "alg": "Ed25519"},
    ]
}

# ---------------------------------------------------------------- certificates


def make_cert(cn: str, key, issuer_cn: str, issuer_key, ca: bool = False) -> x509.Certificate:
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
        .not_valid_after(dt.datetime(2036, 1, 1, tzinfo=dt.timezone.utc))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return b.sign(issuer_key, hashes.SHA256())


ca_key = ec.generate_private_key(ec.SECP256R1())
ca = make_cert("certbound test CA", ca_key, "certbound test CA", ca_key, ca=True)
client_a_key = ec.generate_private_key(ec.SECP256R1())
client_a = make_cert("client-a", client_a_key, "certbound test CA", ca_key)
client_b_key = ec.generate_private_key(ec.SECP256R1())
client_b = make_cert("client-b", client_b_key, "certbound test CA", ca_key)


def pem(c: x509.Certificate) -> str:
    return c.public_bytes(serialization.Encoding.PEM).decode()


def der(c: x509.Certificate) -> bytes:
    return c.public_bytes(serialization.Encoding.DER)


def x5t(c: x509.Certificate) -> str:
    return b64u(hashlib.sha256(der(c)).digest())


# ---------------------------------------------------------------- signing


def sign(alg: str, data: bytes) -> bytes:
    if alg in ("RS256", "RS384", "RS512"):
        h = {"RS256": hashes.SHA256(), "RS384": hashes.SHA384(), "RS512": hashes.SHA512()}[alg]
        return rsa_key.sign(data, padding.PKCS1v15(), h)
    if alg in ("PS256", "PS384", "PS512"):
        h = {"PS256": hashes.SHA256(), "PS384": hashes.SHA384(), "PS512": hashes.SHA512()}[alg]
        return rsa_key.sign(data, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h)
    if alg == "ES256":
        r, s = decode_dss_signature(p256.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg == "ES384":
        r, s = decode_dss_signature(p384.sign(data, ec.ECDSA(hashes.SHA384())))
        return r.to_bytes(48, "big") + s.to_bytes(48, "big")
    if alg in ("EdDSA", "Ed25519"):  # RFC 9864 §2.2: the same signature
        return ed.sign(data)
    raise ValueError(alg)


KID = {
    "RS256": "rsa", "RS384": "rsa", "RS512": "rsa",
    "PS256": "rsa", "PS384": "rsa", "PS512": "rsa",
    "ES256": "es256", "ES384": "es384", "EdDSA": "ed25519", "Ed25519": "ed25519",
}


def claims(**over):
    c = {
        "iss": ISS,
        "sub": "client-a",
        "aud": AUD,
        "iat": NOW - 10,
        "exp": NOW + 300,
        "cnf": {"x5t#S256": x5t(client_a)},
    }
    for k, v in over.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def token(alg="ES256", header=None, payload=None, raw_payload=None, signer=None):
    h = {"alg": alg, "typ": "JWT", "kid": KID.get(alg, "es256")}
    for k, v in (header or {}).items():
        if v is None:
            h.pop(k, None)
        else:
            h[k] = v
    hp = b64u_json(h)
    pp = b64u(raw_payload) if raw_payload is not None else b64u_json(payload or claims())
    signing_input = f"{hp}.{pp}".encode()
    sig = (signer or (lambda d: sign(alg, d)))(signing_input)
    return f"{hp}.{pp}.{b64u(sig)}"


def p256_der_sign(d: bytes) -> bytes:
    return p256.sign(d, ec.ECDSA(hashes.SHA256()))


def p256_other_sign(d: bytes) -> bytes:
    r, s = decode_dss_signature(p256_other.sign(d, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


N_P256 = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

tokens = {}
for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
            "Ed25519"]:
    tokens[f"good_{alg}"] = token(alg)

tokens.update(
    {
        "unbound": token(payload=claims(cnf=None)),
        "bound_to_b": token(payload=claims(cnf={"x5t#S256": x5t(client_b)})),
        "expired": token(payload=claims(exp=NOW - 61)),
        "expired_within_skew": token(payload=claims(exp=NOW - 30)),
        "expired_at_skew_edge": token(payload=claims(exp=NOW - 60)),
        "nbf_future": token(payload=claims(nbf=NOW + 120)),
        "nbf_within_skew": token(payload=claims(nbf=NOW + 30)),
        "iat_future": token(payload=claims(iat=NOW + 120)),
        "no_exp": token(payload=claims(exp=None)),
        "float_exp": token(payload=claims(exp=NOW + 300.5)),
        "string_exp": token(payload=claims(exp=str(NOW + 300))),
        "negative_iat": token(payload=claims(iat=-1)),
        "negative_exp": token(payload=claims(exp=-5)),
        "exp_after_2106": token(payload=claims(exp=2**32 + 10)),
        "exp_huge_float": token(payload=claims(exp=1e300)),
        "wrong_iss": token(payload=claims(iss="https://evil.example.com")),
        "no_iss": token(payload=claims(iss=None)),
        "wrong_aud": token(payload=claims(aud="https://other.example.com")),
        "aud_array": token(payload=claims(aud=["https://x.example.com", AUD])),
        "no_aud": token(payload=claims(aud=None)),
        "unknown_kid": token(header={"kid": "nope"}),
        "no_kid": token(header={"kid": None}),
        "kid_wrong_alg": token("ES256", header={"kid": "rsa"}),
        "wrong_key": token(signer=p256_other_sign),
        "long_lifetime": token(payload=claims(iat=NOW - 10, exp=NOW + 7200)),
        "typ_at_jwt": token(header={"typ": "at+jwt"}),
        "typ_app_at_jwt": token(header={"typ": "application/AT+JWT"}),
        "typ_jose": token(header={"typ": "JOSE"}),
        "no_typ": token(header={"typ": None}),
        "crit": token(header={"crit": ["exp"], "exp": 1}),
        "embedded_jwk": token(
            header={"kid": "attacker", "jwk": ec_jwk(p256_other, "attacker", "P-256", 32)},
            signer=p256_other_sign,
        ),
        "jku": token(header={"jku": "https://evil.example.com/jwks"}, signer=p256_other_sign),
        "der_signature": token(signer=p256_der_sign),
        "sig_r_zero": token(signer=lambda d: bytes(32) + sign("ES256", d)[32:]),
        "sig_s_zero": token(signer=lambda d: sign("ES256", d)[:32] + bytes(32)),
        "sig_r_n": token(signer=lambda d: N_P256.to_bytes(32, "big") + sign("ES256", d)[32:]),
        "cnf_hex": token(
            payload=claims(cnf={"x5t#S256": hashlib.sha256(der(client_a)).hexdigest()})
        ),
        "cnf_padded": token(payload=claims(cnf={"x5t#S256": x5t(client_a) + "="})),
        "cnf_std_b64": token(
            payload=claims(
                cnf={"x5t#S256": base64.b64encode(hashlib.sha256(der(client_a)).digest()).decode()}
            )
        ),
        "cnf_over_pem": token(
            payload=claims(cnf={"x5t#S256": b64u(hashlib.sha256(pem(client_a).encode()).digest())})
        ),
        "cnf_ca": token(payload=claims(cnf={"x5t#S256": x5t(ca)})),
        "cnf_jkt_only": token(payload=claims(cnf={"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})),
        "cnf_not_object": token(payload=claims(cnf="x")),
        "scoped": token(payload=claims(scope="orders:read orders:write", org={"id": "acme"})),
        "scp_array": token(payload=claims(scp=["orders:read"])),
        "dup_iss": token(
            raw_payload=(
                '{"iss":"https://evil.example.com","iss":"%s","aud":"%s","exp":%d,"cnf":{"x5t#S256":"%s"}}'
                % (ISS, AUD, NOW + 300, x5t(client_a))
            ).encode()
        ),
        "single_no_kid": token(header={"kid": None}),
    }
)

# Unsigned and wrong-family tokens.
for name, alg in [("none", "none"), ("None", "None"), ("NONE", "NONE"), ("nOnE", "nOnE")]:
    tokens[f"alg_{name}"] = f"{b64u_json({'alg': alg, 'typ': 'JWT'})}.{b64u_json(claims())}."
rsa_pub_pem = rsa_key.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
import hmac  # noqa: E402

tokens["hs256_with_public_key"] = token(
    "HS256",
    header={"kid": "rsa"},
    signer=lambda d: hmac.new(rsa_pub_pem, d, hashlib.sha256).digest(),
)
tokens["jwe_shaped"] = (
    f"{b64u_json({'alg': 'RSA-OAEP', 'enc': 'A256GCM'})}.{b64u(b'k' * 32)}.{b64u(b'iv')}.{b64u(b'ct')}.{b64u(b'tag')}"
)
good = tokens["good_ES256"]
tokens["two_segments"] = good.rsplit(".", 1)[0]
tokens["four_segments"] = good + ".AAAA"
h, p, s = good.split(".")
tokens["tampered_payload"] = f"{h}.{b64u_json(claims(sub='admin'))}.{s}"
tokens["padded_signature"] = f"{h}.{p}.{s}=="
# Flip the unused low bits of the last base64url char of the signature
# (64 bytes -> 86 chars, 4 unused bits): same bytes, non-canonical text.
alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
last = alphabet.index(s[-1])
tokens["noncanonical_signature"] = f"{h}.{p}.{s[:-1]}{alphabet[last ^ 1]}"

vectors = {
    "_comment": "Generated by tests/vectors/make_vectors.py; do not edit by hand.",
    "now": NOW,
    "issuer": ISS,
    "audience": AUD,
    "jwks": jwks,
    "single_jwks": single_jwks,
    "weak_jwks": weak_jwks,
    "messy_jwks": messy_jwks,
    "certs": {
        "ca": pem(ca),
        "client_a": pem(client_a),
        "client_b": pem(client_b),
    },
    "x5t": {"ca": x5t(ca), "client_a": x5t(client_a), "client_b": x5t(client_b)},
    "sha256_hex": {"client_a": hashlib.sha256(der(client_a)).hexdigest()},
    "tokens": tokens,
}
OUT.write_text(json.dumps(vectors, indent=1, sort_keys=True) + "\n")
print(f"wrote {OUT} ({len(tokens)} tokens)")
