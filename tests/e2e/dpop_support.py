"""DPoP (RFC 9449) helpers for test_dpop.py and test_dpop_interop.py, on
top of harness.py: client keys and their RFC 7638 thumbprints, proofs with
full control over every header member and claim, the stateless server
nonces certbound issues (to make one under a given secret), and ``send``,
one request that keeps every response header (two ``WWW-Authenticate``
challenges stay two).

Everything is computed here independently of the filter: the thumbprint
from the JWK's required members, ``ath`` as SHA-256 of the token, the
nonce as HMAC-SHA256 over certbound's label and the issue window.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

import harness
from harness import Client, Envoy

# The request origin certbound sees through the test client: https (TLS
# listener) and the Host header harness.request and send() use.
ORIGIN = "https://localhost"
# The algorithms of a `dpop` block without `algorithms`, in challenge order.
DEFAULT_ALGS = ("ES256", "PS256", "EdDSA", "Ed25519")
# Server nonces (src/binding/dpop/nonce.rs): 5 s windows, HMAC label.
NONCE_STEP = 5
NONCE_LABEL = b"certbound dpop nonce v1"


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64u_json(obj: Any) -> str:
    return b64u(json.dumps(obj, separators=(",", ":")).encode())


def _int(n: int, length: int | None = None) -> str:
    return b64u(n.to_bytes(length or (n.bit_length() + 7) // 8, "big"))


def ath(token: str) -> str:
    """RFC 9449 §4.2: base64url SHA-256 of the access token."""
    return b64u(hashlib.sha256(token.encode()).digest())


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, no whitespace."""
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"),
                "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    text = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return b64u(hashlib.sha256(text.encode()).digest())


def nonce(secret: bytes, now: int | None = None) -> str:
    """The nonce certbound issues at ``now`` under ``secret``."""
    now = int(time.time()) if now is None else now
    counter = (now // NONCE_STEP).to_bytes(8, "big")
    tag = hmac.new(secret, NONCE_LABEL + counter, hashlib.sha256).digest()[:16]
    return b64u(counter + tag)


# ---------------------------------------------------------------------------
# client keys
# ---------------------------------------------------------------------------


class DpopKey:
    """A client's proof key: ES256 (P-256), PS256 (RSA 2048), EdDSA or
    Ed25519 (both an Ed25519 key; the JOSE names differ)."""

    def __init__(self, alg: str) -> None:
        self.alg = alg
        if alg == "ES256":
            self.private: Any = ec.generate_private_key(ec.SECP256R1())
        elif alg == "PS256":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg in ("EdDSA", "Ed25519"):
            self.private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(alg)

    def public_jwk(self) -> dict[str, Any]:
        pub = self.private.public_key()
        if isinstance(pub, ec.EllipticCurvePublicKey):
            n = pub.public_numbers()
            return {"kty": "EC", "crv": "P-256", "x": _int(n.x, 32), "y": _int(n.y, 32)}
        if isinstance(pub, rsa.RSAPublicKey):
            n = pub.public_numbers()
            return {"kty": "RSA", "n": _int(n.n), "e": _int(n.e)}
        return {"kty": "OKP", "crv": "Ed25519", "x": b64u(pub.public_bytes_raw())}

    def private_jwk(self) -> dict[str, Any]:
        jwk = self.public_jwk()
        k = self.private
        if isinstance(k, ec.EllipticCurvePrivateKey):
            jwk["d"] = _int(k.private_numbers().private_value, 32)
        elif isinstance(k, rsa.RSAPrivateKey):
            jwk["d"] = _int(k.private_numbers().d)
        else:
            jwk["d"] = b64u(k.private_bytes_raw())
        return jwk

    @property
    def jkt(self) -> str:
        return jwk_thumbprint(self.public_jwk())

    def sign(self, data: bytes) -> bytes:
        k = self.private
        if self.alg == "ES256":
            r, s = decode_dss_signature(k.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        if self.alg == "PS256":
            return k.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                          hashes.SHA256())
        return k.sign(data)


def proof(key: DpopKey, method: str, htu: str, *, token: str | None = None,
          header: Mapping[str, Any] | None = None, **claims: Any) -> str:
    """A DPoP proof signed by ``key``: ``typ`` dpop+jwt, ``alg`` the key's,
    ``jwk`` its public key; claims ``jti`` (fresh), ``htm``, ``htu``, ``iat``
    (now) and, with ``token``, ``ath``. ``header`` and ``claims`` override
    members; a None value removes one."""
    hdr: dict[str, Any] = {"typ": "dpop+jwt", "alg": key.alg, "jwk": key.public_jwk()}
    body: dict[str, Any] = {"jti": uuid.uuid4().hex, "htm": method, "htu": htu,
                            "iat": int(time.time())}
    if token is not None:
        body["ath"] = ath(token)
    for target, overrides in ((hdr, header or {}), (body, claims)):
        for k, v in overrides.items():
            if v is None:
                target.pop(k, None)
            else:
                target[k] = v
    signing_input = f"{b64u_json(hdr)}.{b64u_json(body)}"
    return f"{signing_input}.{b64u(key.sign(signing_input.encode()))}"


def hs256_proof(method: str, htu: str, token: str) -> str:
    """A proof MACed with HS256 under a symmetric ``jwk`` (RFC 9449 §4.3
    step 5 refuses it)."""
    secret = b"k" * 32
    hdr = {"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": b64u(secret)}}
    body = {"jti": uuid.uuid4().hex, "htm": method, "htu": htu, "iat": int(time.time()),
            "ath": ath(token)}
    signing_input = f"{b64u_json(hdr)}.{b64u_json(body)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64u(mac)}"


# ---------------------------------------------------------------------------
# requests
# ---------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]  # every response header, names lowercase, in order
    body: bytes
    path: str
    upstream: list[dict[str, Any]]  # what the backend received for this path

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    @property
    def challenges(self) -> list[str]:
        """Each ``WWW-Authenticate`` header, in order."""
        return self.all("www-authenticate")

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return (f"Reply({self.path} -> {self.status}, challenges={self.challenges!r}, "
                f"dpop-nonce={self.header('dpop-nonce')!r}, body={self.body[:160]!r}, "
                f"upstream={len(self.upstream)})")


def new_path(prefix: str = "/dpop") -> str:
    return f"{prefix}/{uuid.uuid4().hex}"


def send(envoy: Envoy, backend: harness.Backend, ca: Path, path: str, *,
         method: str = "GET", client: Client | None = None,
         headers: Iterable[tuple[str, str]] = (), host: str = "localhost") -> Reply:
    """One HTTP/1.1 request on a fresh (m)TLS connection to 127.0.0.1
    with Host ``host``; ``headers`` as pairs, so a name can be sent twice."""
    conn = http.client.HTTPSConnection("127.0.0.1", envoy.port, timeout=harness.HTTP_TIMEOUT,
                                       context=harness.tls_context(ca, client))
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("host", host)
        for k, v in headers:
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        got = [(k.lower(), v) for k, v in resp.getheaders()]
        status = resp.status
    finally:
        conn.close()
    return Reply(status, got, body, path, backend.seen(path))
