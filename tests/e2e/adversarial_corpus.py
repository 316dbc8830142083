"""The adversarial token corpus: one data row per attack, each citing where
the attack comes from, run against the real Envoy by test_adversarial.py.

Every row builds an otherwise *valid* request (right issuer, audience,
lifetime, binding to the presenting client's certificate, signed by the
right key) with exactly one defect, so a lax verifier would let it through
and a 401 really means the defect was caught. Where the attack is a
well-formed token the signature covers (duplicate members, non-canonical
base64url, `crit`, nested JSON ...), the signature is computed over the exact
bytes sent.

Expectations: the HTTP status, the RFC 6750 error code (``None``: a bare
``Bearer`` challenge, i.e. "no token"), and the ``error_description`` the
filter must give (one of a tuple when the verification order legitimately
decides which check fires first; ``ANY`` when only the code matters).

Sources cited:
  RFC 6750 (bearer usage), RFC 7515 (JWS), RFC 7516 §9 (JWS vs JWE), RFC 7518
  (JWA), RFC 7519 (JWT), RFC 7797 (b64), RFC 8032 (EdDSA), RFC 8017 (RSA),
  RFC 8259 (JSON), RFC 8705 (mTLS-bound tokens), RFC 8725 (JWT BCP),
  RFC 9440 (Client-Cert header), RFC 9449 (DPoP);
  CVE-2015-9235 (jsonwebtoken: HS* verified with the RS public key),
  CVE-2016-10555 (jwt-simple: same, alg not enforced),
  CVE-2018-0114 (node-jose: key taken from the embedded `jwk` header),
  CVE-2020-28042 (ServiceStack: empty / short signatures accepted),
  CVE-2022-21449 (Java "psychic signatures": ECDSA r = s = 0);
  Project Wycheproof families ecdsa_secp256r1_sha256_p1363_test,
  eddsa_test, rsa_signature_2048_sha256_test.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import itertools
import json
import os
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

import harness
from harness import demo

ISS = demo.ISSUER
AUD = demo.AUDIENCE
KID = demo.IDP_KID  # the IdP's P-256 key (ES256)
PARTNER_ISS = "https://partner.example.com"
PARTNER_KID = "partner-es256"
PARTNER_PARAM = "access_token"  # partner also reads tokens from this query parameter
SKEW = 60  # clock_skew_seconds of the shipped config
SCOPE = "orders:read"  # required on SCOPED_PATH by test_adversarial's rules
SCOPED_PATH = "/scoped"

N_P256 = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
L_ED25519 = 2**252 + 27742317777372353535851937790883648493

ANY = object()  # error_description not checked


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_json(obj: Any) -> str:
    return b64u(json.dumps(obj, separators=(",", ":")).encode())


def unb64u(seg: str) -> bytes:
    return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))


# ---------------------------------------------------------------------------
# what a row sends
# ---------------------------------------------------------------------------


@dataclass
class Attempt:
    """One request: the token (as ``Authorization: Bearer``) unless
    ``authorization`` is given (``[]``: no Authorization header at all),
    extra headers, and the client certificate ("a", "b" or None)."""

    token: str | None = None
    client: str | None = "a"
    authorization: list[str | bytes] | None = None
    headers: list[tuple[str, str | bytes]] = field(default_factory=list)
    query: str = ""

    def header_list(self) -> list[tuple[str, str | bytes]]:
        if self.authorization is not None:
            auth: list[tuple[str, str | bytes]] = [("authorization", v) for v in self.authorization]
        elif self.token is not None:
            auth = [("authorization", f"Bearer {self.token}")]
        else:
            auth = []
        return auth + list(self.headers)


@dataclass(frozen=True)
class Case:
    id: str
    source: str
    build: Callable[["Kit"], Attempt | str]
    description: Any = ANY  # str, tuple of str, or ANY
    status: int = 401
    error: str | None = "invalid_token"
    path: str = "/api"
    # The signature is valid over exactly what is sent: a verifier that
    # ignores this row's defect (PyJWT, for one) accepts the token.
    lax: bool = False

    def attempt(self, kit: "Kit") -> Attempt:
        a = self.build(kit)
        return Attempt(token=a) if isinstance(a, str) else a


# ---------------------------------------------------------------------------
# the toolbox rows build with
# ---------------------------------------------------------------------------


class Kit:
    """Keys, certificates and token builders over the e2e session PKI."""

    def __init__(self, pki: harness.Pki) -> None:
        self.pki = pki
        self.idp = pki.idp_key
        self.rsa, self.rsa_kid = pki.keys["RS256"]  # kid test-rs256, JWK alg RS256
        self.ed, self.ed_kid = pki.keys["EdDSA"]
        self.es384, self.es384_kid = pki.keys["ES384"]
        self.partner = demo.new_signing_key("ES256")
        self.attacker = demo.new_signing_key("ES256")
        self.attacker_rsa = demo.new_signing_key("RS256")
        self.cert_a = demo.load_cert(pki.client_a.cert)
        self.cert_b = demo.load_cert(pki.client_b.cert)
        self.ca = demo.load_cert(pki.ca)
        self.pem_a = self.cert_a.public_bytes(serialization.Encoding.PEM)
        self.der_a = self.cert_a.public_bytes(serialization.Encoding.DER)

    # -- configuration the corpus needs ------------------------------------
    @property
    def partner_jwks(self) -> dict[str, Any]:
        return demo.jwks(demo.public_jwk(self.partner, PARTNER_KID, "ES256"))

    # -- claims and segments ----------------------------------------------
    @staticmethod
    def now() -> int:
        return int(time.time())

    def claims(self, **over: Any) -> dict[str, Any]:
        """Valid claims bound to client-a; a None value removes a claim."""
        now = self.now()
        c: dict[str, Any] = {
            "iss": ISS, "sub": "client-a", "aud": AUD, "iat": now, "exp": now + 300,
            "jti": b64u(os.urandom(12)), "cnf": {"x5t#S256": self.x5t(self.cert_a)},
        }
        for k, v in over.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    @staticmethod
    def header(alg: str = "ES256", kid: str | None = KID, **over: Any) -> dict[str, Any]:
        h: dict[str, Any] = {"alg": alg, "typ": "JWT"}
        if kid is not None:
            h["kid"] = kid
        for k, v in over.items():
            if v is None:
                h.pop(k, None)
            else:
                h[k] = v
        return h

    @staticmethod
    def x5t(cert: x509.Certificate) -> str:
        return b64u(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest())

    # -- signatures (JWS form: raw r||s for ECDSA) --------------------------
    @staticmethod
    def es_raw(key: Any, data: bytes, alg: str = "ES256") -> bytes:
        h, size = {"ES256": (hashes.SHA256(), 32), "ES384": (hashes.SHA384(), 48)}[alg]
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(h)))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    def sign(self, alg: str, key: Any, data: bytes) -> bytes:
        if alg in ("ES256", "ES384"):
            return self.es_raw(key, data, alg)
        if alg in ("RS256", "RS384", "RS512"):
            h = {"RS256": hashes.SHA256(), "RS384": hashes.SHA384(), "RS512": hashes.SHA512()}[alg]
            return key.sign(data, padding.PKCS1v15(), h)
        if alg == "PS256":
            return key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
        if alg == "EdDSA":
            return key.sign(data)
        raise ValueError(alg)

    def token(self, header: dict[str, Any] | None = None, claims: dict[str, Any] | None = None,
              *, raw_header: str | None = None, raw_payload: str | None = None,
              alg: str | None = None, key: Any = None,
              sig: bytes | Callable[[bytes], bytes] | None = None) -> str:
        """header.payload.signature. Segments are given as objects or as the
        exact text to send (``raw_*``, already base64url'd or deliberately
        not); the signature is over the text sent, by ``key`` with ``alg``
        (default the IdP key, ES256), or ``sig`` (bytes, or a function of the
        signing input)."""
        h = raw_header if raw_header is not None else b64u_json(header or self.header())
        p = raw_payload if raw_payload is not None else b64u_json(claims or self.claims())
        signing_input = f"{h}.{p}".encode()
        if sig is None:
            s = self.sign(alg or "ES256", key if key is not None else self.idp, signing_input)
        elif callable(sig):
            s = sig(signing_input)
        else:
            s = sig
        return f"{h}.{p}.{b64u(s)}"

    def valid(self, **claims: Any) -> str:
        return self.token(claims=self.claims(**claims))

    def signed_raw(self, header_json: str | None = None, payload_json: str | None = None) -> str:
        """A token whose header / payload are the given JSON *text*, verbatim."""
        h = b64u(header_json.encode()) if header_json is not None else None
        p = b64u(payload_json.encode()) if payload_json is not None else None
        return self.token(raw_header=h, raw_payload=p)

    def payload_json(self, **over: Any) -> str:
        """The valid claims as JSON text, without the closing brace removed."""
        return json.dumps(self.claims(**over), separators=(",", ":"))

    # -- certificates in forwarded headers --------------------------------
    @property
    def xfcc_a(self) -> str:
        sha = hashlib.sha256(self.der_a).hexdigest()
        return f'Hash={sha};Cert="{urllib.parse.quote(self.pem_a.decode(), safe="")}";Subject="CN=client-a"'


# ---------------------------------------------------------------------------
# builders shared by several rows
# ---------------------------------------------------------------------------


def _alg_none(alg: str) -> Callable[[Kit], str]:
    return lambda k: f"{b64u_json(k.header(alg))}.{b64u_json(k.claims())}."


def _hmac(alg: str, secret: Callable[[Kit], bytes], kid: Callable[[Kit], str]) -> Callable[[Kit], str]:
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]

    def build(k: Kit) -> str:
        return k.token(k.header(alg, kid(k)), sig=lambda d: hmac.new(secret(k), d, digest).digest())

    return build


def _rsa_spki_pem(k: Kit) -> bytes:
    return k.rsa.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)


def _rsa_pkcs1_pem(k: Kit) -> bytes:
    return k.rsa.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.PKCS1)


def _rsa_jwk_bytes(k: Kit) -> bytes:
    (jwk,) = [j for j in k.pki.jwks["keys"] if j.get("kid") == k.rsa_kid]
    return json.dumps(jwk).encode()


def _ec_jwk_bytes(k: Kit) -> bytes:
    return json.dumps(demo.public_jwk(k.idp, KID, "ES256")).encode()


def _ecdsa(r: Callable[[int], int] | None = None, s: Callable[[int], int] | None = None
           ) -> Callable[[Kit], str]:
    """A valid ES256 signature with r and/or s replaced (functions of the real value)."""

    def build(k: Kit) -> str:
        def sig(d: bytes) -> bytes:
            raw = k.es_raw(k.idp, d)
            rr, ss = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
            rr = r(rr) if r else rr
            ss = s(ss) if s else ss
            return rr.to_bytes(32, "big") + ss.to_bytes(32, "big")
        return k.token(sig=sig)

    return build


def _sig_bytes(f: Callable[[Kit, bytes], bytes], alg: str = "ES256",
               kid: Callable[[Kit], str] = lambda k: KID) -> Callable[[Kit], str]:
    return lambda k: k.token(k.header(alg, kid(k)), sig=lambda d: f(k, d))


def _ed25519_s_plus_l(k: Kit, d: bytes) -> bytes:
    sig = k.ed.sign(d)
    s = int.from_bytes(sig[32:], "little") + L_ED25519
    return sig[:32] + s.to_bytes(32, "little")


def _embedded(header_extra: Callable[[Kit], dict[str, Any]], kid: str | None,
              key: Callable[[Kit], Any] = lambda k: k.attacker, alg: str = "ES256"
              ) -> Callable[[Kit], str]:
    return lambda k: k.token(k.header(alg, kid, **header_extra(k)), alg=alg, key=key(k))


def _x5c_token(kid: str | None) -> Callable[[Kit], str]:
    """Signed by a fresh self-signed attacker certificate's key, the
    certificate in `x5c` (standard base64 DER, RFC 7515 §4.1.6)."""

    def build(k: Kit) -> str:
        key, cert = demo.make_ca("attacker")
        x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        return k.token(k.header("ES256", kid, x5c=x5c), key=key)

    return build


def _until(build: Callable[[], str], ok: Callable[[str], bool], tries: int = 200) -> str:
    for _ in range(tries):
        t = build()
        if ok(t):
            return t
    raise AssertionError("could not build the case")


def _std_alphabet(segment: int) -> Callable[[Kit], str]:
    """Segment ``segment`` (0 header, 1 payload, 2 signature) in the standard
    base64 alphabet (``+`` ``/``), signature over the text sent."""

    def build(k: Kit) -> str:
        def once(i: int) -> str:
            hdr = b64u_json(k.header(x="?" * (i % 3 + 1) if segment == 0 else None))
            pl = b64u_json(k.claims(x="?>" * (i % 3 + 1)) if segment == 1 else k.claims())
            if segment == 0:
                hdr = hdr.replace("-", "+").replace("_", "/")
            if segment == 1:
                pl = pl.replace("-", "+").replace("_", "/")
            t = k.token(raw_header=hdr, raw_payload=pl)
            if segment == 2:
                h, p, s = t.split(".")
                t = f"{h}.{p}.{s.replace('-', '+').replace('_', '/')}"
            return t

        counter = itertools.count()
        return _until(lambda: once(next(counter)),
                      lambda t: any(c in t.split(".")[segment] for c in "+/"))

    return build


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _flip_unused_bits(seg: str) -> str:
    """Same bytes, non-canonical text: set an unused low bit of the last char."""
    assert len(seg) % 4 in (2, 3), "segment has no unused bits"
    last = ALPHABET.index(seg[-1])
    return seg[:-1] + ALPHABET[last | 1 if last & 1 == 0 else last ^ 1]


def _padded(segment: int) -> Callable[[Kit], str]:
    """Header (0) or payload (1) with its base64 padding kept, signed as sent."""

    def build(k: Kit) -> str:
        def once(i: int) -> str:
            data = json.dumps(k.header(x="x" * i) if segment == 0 else k.claims(x="x" * i),
                              separators=(",", ":")).encode()
            seg = base64.urlsafe_b64encode(data).decode()
            if not seg.endswith("="):
                return ""
            return k.token(raw_header=seg) if segment == 0 else k.token(raw_payload=seg)
        counter = itertools.count()
        return _until(lambda: once(next(counter)), bool)

    return build


def _noncanonical_header(k: Kit) -> str:
    def once(i: int) -> str:
        hdr = b64u_json(k.header(x="x" * i))
        if len(hdr) % 4 not in (2, 3):
            return ""
        return k.token(raw_header=_flip_unused_bits(hdr))
    counter = itertools.count()
    return _until(lambda: once(next(counter)), bool)


def _noncanonical_signature(k: Kit) -> str:
    h, p, s = k.valid().split(".")
    assert len(s) == 86  # 64 bytes: 4 unused bits
    return f"{h}.{p}.{_flip_unused_bits(s)}"


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _client_cert_rfc9440(k: Kit) -> str:
    return f":{base64.b64encode(k.der_a).decode()}:"


def _bound(k: Kit, cert: x509.Certificate | None = None, value: Any = ...) -> str:
    """A valid token whose cnf is {"x5t#S256": value} (default: client-a's thumbprint)."""
    v = k.x5t(cert or k.cert_a) if value is ... else value
    return k.valid(cnf={"x5t#S256": v})


def _sha256_b64(data: bytes, alphabet: str = "url", pad: bool = False) -> str:
    d = hashlib.sha256(data).digest()
    s = base64.urlsafe_b64encode(d) if alphabet == "url" else base64.b64encode(d)
    s = s.decode()
    return s if pad else s.rstrip("=")


# ---------------------------------------------------------------------------
# the corpus
# ---------------------------------------------------------------------------

SIG_FAILED = "signature verification failed"
UNSUPPORTED = "unsupported algorithm"
UNKNOWN_KID = "unknown signing key"
KEY_MISMATCH = "algorithm does not match key"
BAD_HEADER = "malformed token header"
BAD_PAYLOAD = "malformed token payload"
BAD_SIG = "malformed token signature"
NOT_JWS = "not a JWS compact serialization"
BAD_CHARS = "token has invalid characters"
WRONG_TYPE = "registered claim has the wrong type"
TOO_LARGE = "token too large"
MISMATCH = "certificate binding mismatch"
BAD_X5T = "malformed x5t#S256 confirmation"
NOT_BOUND = "token is not certificate-bound"
NO_CERT = "client certificate required"
ISSUER = "issuer not accepted"
EXPIRED = "token expired"
NOT_YET = "token not yet valid"

CASES: list[Case] = []


def case(id: str, source: str, build: Callable[[Kit], Attempt | str], description: Any = ANY,
         **kw: Any) -> None:
    CASES.append(Case(id, source, build, description, **kw))


# -- alg "none", every letter case (RFC 8725 §2.1, §3.1; RFC 7518 §3.6) ------
for _variant in ("".join(c) for c in itertools.product(*zip("none", "NONE"))):
    case(f"alg-{_variant}-empty-signature", "RFC 7518 §3.6; RFC 8725 §2.1, §3.1",
         _alg_none(_variant), (BAD_SIG, UNSUPPORTED))
case("alg-none-with-a-real-signature-kept", "RFC 7518 §3.6; RFC 8725 §3.1",
     lambda k: k.token(k.header("none"), sig=lambda d: k.es_raw(k.idp, d)), UNSUPPORTED)
case("alg-missing", "RFC 7515 §4.1.1", lambda k: k.token(k.header(alg=None)), "missing alg")
case("alg-empty-string", "RFC 7515 §4.1.1; RFC 8725 §3.1", lambda k: k.token(k.header("")), UNSUPPORTED)
case("alg-not-a-string", "RFC 7515 §4.1.1", lambda k: k.token(k.header(["ES256"])),
     ("missing alg", UNSUPPORTED))

# -- HMAC keyed with the public key (alg confusion) -------------------------
case("hs256-with-rsa-spki-pem", "CVE-2016-10555; CVE-2015-9235; RFC 8725 §2.1",
     _hmac("HS256", _rsa_spki_pem, lambda k: k.rsa_kid), UNSUPPORTED)
case("hs384-with-rsa-spki-pem", "CVE-2015-9235; RFC 8725 §3.1",
     _hmac("HS384", _rsa_spki_pem, lambda k: k.rsa_kid), UNSUPPORTED)
case("hs512-with-rsa-spki-pem", "CVE-2015-9235; RFC 8725 §3.1",
     _hmac("HS512", _rsa_spki_pem, lambda k: k.rsa_kid), UNSUPPORTED)
case("hs256-with-rsa-pkcs1-pem", "CVE-2016-10555; RFC 8725 §2.1",
     _hmac("HS256", _rsa_pkcs1_pem, lambda k: k.rsa_kid), UNSUPPORTED)
case("hs256-with-rsa-jwk-bytes", "CVE-2016-10555; RFC 8725 §3.1",
     _hmac("HS256", _rsa_jwk_bytes, lambda k: k.rsa_kid), UNSUPPORTED)
case("hs512-with-rsa-jwk-bytes", "CVE-2015-9235; RFC 8725 §3.1",
     _hmac("HS512", _rsa_jwk_bytes, lambda k: k.rsa_kid), UNSUPPORTED)
case("hs256-with-ec-jwk-bytes", "CVE-2015-9235; RFC 8725 §3.1",
     _hmac("HS256", _ec_jwk_bytes, lambda k: KID), UNSUPPORTED)
case("hs256-with-empty-key", "RFC 8725 §3.5", _hmac("HS256", lambda k: b"", lambda k: KID), UNSUPPORTED)

# -- keys embedded in, or pointed at by, the header -------------------------
case("jwk-header-attacker-key-own-kid", "CVE-2018-0114; RFC 7515 §4.1.3",
     _embedded(lambda k: {"jwk": demo.public_jwk(k.attacker, "attacker", "ES256")}, "attacker"),
     UNKNOWN_KID)
case("jwk-header-attacker-key-our-kid", "CVE-2018-0114; RFC 8725 §3.10",
     _embedded(lambda k: {"jwk": demo.public_jwk(k.attacker, KID, "ES256")}, KID), SIG_FAILED)
case("jwk-header-attacker-key-no-kid", "CVE-2018-0114; RFC 7515 §4.1.3",
     _embedded(lambda k: {"jwk": demo.public_jwk(k.attacker, None, "ES256")}, None), UNKNOWN_KID)
case("jwk-header-attacker-rsa-our-rsa-kid", "CVE-2018-0114; RFC 7515 §4.1.3",
     _embedded(lambda k: {"jwk": demo.public_jwk(k.attacker_rsa, k.rsa_kid, "RS256")}, "test-rs256",
               key=lambda k: k.attacker_rsa, alg="RS256"), SIG_FAILED)
case("jku-header-attacker-url", "RFC 8725 §3.10; RFC 7515 §4.1.2",
     _embedded(lambda k: {"jku": "https://attacker.example/jwks.json"}, "attacker"), UNKNOWN_KID)
case("jku-header-attacker-url-our-kid", "RFC 8725 §3.10; RFC 7515 §4.1.2",
     _embedded(lambda k: {"jku": "https://attacker.example/jwks.json"}, KID), SIG_FAILED)
case("x5u-header-attacker-url", "RFC 8725 §3.10; RFC 7515 §4.1.5",
     _embedded(lambda k: {"x5u": "https://attacker.example/cert.pem"}, KID), SIG_FAILED)
case("x5c-header-attacker-self-signed", "RFC 7515 §4.1.6; CVE-2018-0114 (same class)",
     _x5c_token(KID), SIG_FAILED)
case("x5c-header-attacker-no-kid", "RFC 7515 §4.1.6", _x5c_token(None), UNKNOWN_KID)

# -- ECDSA: P1363 r||s out of range, DER, psychic signatures ----------------
P1363 = "Wycheproof ecdsa_secp256r1_sha256_p1363_test"
case("ecdsa-r-zero", f"{P1363}; RFC 7518 §3.4", _ecdsa(r=lambda r: 0), SIG_FAILED)
case("ecdsa-s-zero", f"{P1363}; RFC 7518 §3.4", _ecdsa(s=lambda s: 0), SIG_FAILED)
case("ecdsa-r-s-zero-psychic", "CVE-2022-21449", _ecdsa(r=lambda r: 0, s=lambda s: 0), SIG_FAILED)
case("ecdsa-r-equals-n", P1363, _ecdsa(r=lambda r: N_P256), SIG_FAILED)
case("ecdsa-s-equals-n", P1363, _ecdsa(s=lambda s: N_P256), SIG_FAILED)
case("ecdsa-r-s-equal-n", "CVE-2022-21449 (r = s = n variant); " + P1363,
     _ecdsa(r=lambda r: N_P256, s=lambda s: N_P256), SIG_FAILED)
case("ecdsa-r-plus-n-overflow", P1363, _ecdsa(r=lambda r: (r + N_P256) % 2**256), SIG_FAILED)
case("ecdsa-s-all-ones", P1363, _ecdsa(s=lambda s: 2**256 - 1), SIG_FAILED)
case("ecdsa-der-valid-signature", "RFC 7518 §3.4 (raw R||S, not DER); " + P1363,
     _sig_bytes(lambda k, d: k.idp.sign(d, ec.ECDSA(hashes.SHA256()))), SIG_FAILED)
case("ecdsa-der-r-s-zero-psychic", "CVE-2022-21449 (DER form MAYCAQACAQA)",
     _sig_bytes(lambda k, d: encode_dss_signature(0, 0)), SIG_FAILED)
case("ecdsa-signature-truncated-63-bytes", f"{P1363}; CVE-2020-28042",
     _sig_bytes(lambda k, d: k.es_raw(k.idp, d)[:63]), SIG_FAILED)
case("ecdsa-signature-65-bytes", P1363,
     _sig_bytes(lambda k, d: b"\x00" + k.es_raw(k.idp, d)), SIG_FAILED)
case("ecdsa-es384-length-signature", "RFC 7518 §3.4",
     _sig_bytes(lambda k, d: k.es_raw(k.idp, d) + bytes(32)), SIG_FAILED)
case("ecdsa-signature-of-another-token", "RFC 7515 §5.2 step 8",
     lambda k: ".".join(k.valid().split(".")[:2] + [k.valid(sub="admin").split(".")[2]]), SIG_FAILED)
case("empty-signature-segment", "CVE-2020-28042",
     lambda k: k.valid().rsplit(".", 1)[0] + ".", (BAD_SIG, SIG_FAILED))
case("one-byte-signature", "CVE-2020-28042", _sig_bytes(lambda k, d: b"\x00"), SIG_FAILED)

# -- RSA and EdDSA signature values -----------------------------------------
RSA_W = "Wycheproof rsa_signature_2048_sha256_test; RFC 8017 §5.2.2"
case("rsa-signature-zero", RSA_W, _sig_bytes(lambda k, d: bytes(256), "RS256", lambda k: k.rsa_kid),
     SIG_FAILED)
case("rsa-signature-equals-n", RSA_W,
     _sig_bytes(lambda k, d: k.rsa.public_key().public_numbers().n.to_bytes(256, "big"), "RS256",
                lambda k: k.rsa_kid), SIG_FAILED)
case("rsa-signature-leading-byte-dropped", RSA_W,
     _sig_bytes(lambda k, d: k.sign("RS256", k.rsa, d)[1:], "RS256", lambda k: k.rsa_kid), SIG_FAILED)
case("rsa-signature-extra-leading-zero", RSA_W,
     _sig_bytes(lambda k, d: b"\x00" + k.sign("RS256", k.rsa, d), "RS256", lambda k: k.rsa_kid),
     SIG_FAILED)
case("ed25519-signature-all-zero", "Wycheproof eddsa_test; RFC 8032 §5.1.7",
     _sig_bytes(lambda k, d: bytes(64), "EdDSA", lambda k: k.ed_kid), SIG_FAILED)
case("ed25519-s-plus-l-malleated", "Wycheproof eddsa_test (non-canonical S); RFC 8032 §5.1.7",
     _sig_bytes(_ed25519_s_plus_l, "EdDSA", lambda k: k.ed_kid), SIG_FAILED)

# -- key / algorithm binding (RFC 8725 §3.1: one key, one algorithm) -----------
case("ps256-with-rs256-only-key", "RFC 8725 §3.1; RFC 7517 §4.4",
     lambda k: k.token(k.header("PS256", k.rsa_kid), alg="PS256", key=k.rsa), KEY_MISMATCH)
case("es256-kid-of-rsa-key", "RFC 8725 §3.1",
     lambda k: k.token(k.header("ES256", k.rsa_kid)), KEY_MISMATCH)
case("es384-kid-of-p256-key", "RFC 8725 §3.1; RFC 7518 §3.4",
     lambda k: k.token(k.header("ES384", KID), alg="ES384", key=k.es384), KEY_MISMATCH)
case("eddsa-kid-of-p256-key", "RFC 8725 §3.1",
     lambda k: k.token(k.header("EdDSA", KID), alg="EdDSA", key=k.ed), KEY_MISMATCH)
case("rs256-kid-of-eddsa-key", "RFC 8725 §3.1",
     lambda k: k.token(k.header("RS256", k.ed_kid), alg="RS256", key=k.rsa), KEY_MISMATCH)
case("alg-es512-unsupported", "RFC 8725 §3.2", lambda k: k.token(k.header("ES512")), UNSUPPORTED)
case("alg-es256k-unsupported", "RFC 8725 §3.2", lambda k: k.token(k.header("ES256K")), UNSUPPORTED)
case("alg-lowercase-es256", "RFC 7515 §4.1.1 (case-sensitive)", lambda k: k.token(k.header("es256")),
     UNSUPPORTED)
case("alg-rsa-oaep-in-a-jws", "RFC 7516 §9; RFC 8725 §3.1",
     lambda k: k.token(k.header("RSA-OAEP", enc="A256GCM")), UNSUPPORTED)

# -- serialization shape (RFC 7515 §7.1; RFC 7516 §9) -------------------------
case("jwe-shaped-five-segments", "RFC 7516 §9",
     lambda k: ".".join([b64u_json({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": KID}),
                         b64u(os.urandom(256)), b64u(os.urandom(12)), b64u(os.urandom(64)),
                         b64u(os.urandom(16))]),
     "encrypted tokens are not accepted")
case("jws-plus-two-segments", "RFC 7516 §9", lambda k: k.valid() + ".AAAA.AAAA",
     "encrypted tokens are not accepted")
case("two-segments", "RFC 7515 §7.1", lambda k: k.valid().rsplit(".", 1)[0], NOT_JWS)
case("four-segments", "RFC 7515 §7.1", lambda k: k.valid() + ".AAAA", NOT_JWS)
case("six-segments", "RFC 7515 §7.1", lambda k: k.valid() + ".A.A.A", NOT_JWS)
case("one-segment", "RFC 7515 §7.1", lambda k: k.valid().split(".")[0], NOT_JWS)
case("only-dots", "RFC 7515 §7.1", lambda k: "..", (BAD_SIG, BAD_HEADER, NOT_JWS))

# -- non-canonical base64url (RFC 7515 §2; RFC 4648 §3.5; RFC 6750 §2.1) ------
case("header-padded", "RFC 7515 §2; RFC 6750 §2.1 b64token", _padded(0), (BAD_CHARS, BAD_HEADER))
case("payload-padded", "RFC 7515 §2", _padded(1), (BAD_CHARS, BAD_PAYLOAD))
case("signature-padded", "RFC 7515 §2", lambda k: k.valid() + "==", BAD_SIG)
case("header-standard-alphabet", "RFC 7515 §2; RFC 4648 §5", _std_alphabet(0), BAD_HEADER)
case("payload-standard-alphabet", "RFC 7515 §2; RFC 4648 §5", _std_alphabet(1), BAD_PAYLOAD)
case("signature-standard-alphabet", "RFC 7515 §2; RFC 4648 §5", _std_alphabet(2), BAD_SIG)
case("header-noncanonical-trailing-bits", "RFC 4648 §3.5; RFC 7515 §2", _noncanonical_header,
     BAD_HEADER)
case("signature-noncanonical-trailing-bits", "RFC 4648 §3.5; RFC 7515 §2", _noncanonical_signature,
     BAD_SIG)
case("space-inside-token", "RFC 7515 §7.1; RFC 6750 §2.1",
     lambda k: Attempt(authorization=["Bearer " + k.valid().replace(".", ". ", 1)]), BAD_CHARS)
case("tab-inside-token", "RFC 7515 §7.1; RFC 6750 §2.1",
     lambda k: Attempt(authorization=["Bearer " + k.valid().replace(".", ".\t", 1)]), BAD_CHARS)
case("non-ascii-byte-in-token", "RFC 6750 §2.1; RFC 8725 §3.7",
     lambda k: Attempt(authorization=[b"Bearer " + k.valid().encode() + b"\xff"]), BAD_CHARS)
case("percent-encoded-token", "RFC 6750 §2.1",
     lambda k: Attempt(authorization=["Bearer " + k.valid().replace(".", "%2E")]), BAD_CHARS)

# -- JSON: duplicates, encodings, nesting, size (RFC 7515 §4, RFC 7519 §4, RFC 8259) --
case("header-duplicate-alg-none-first", "RFC 7515 §4 (duplicate Header Parameter names)",
     lambda k: k.signed_raw(header_json=f'{{"alg":"none","typ":"JWT","kid":"{KID}","alg":"ES256"}}'),
     BAD_HEADER)
case("header-duplicate-alg-escaped-name", "RFC 7515 §4; RFC 8259 §7",
     lambda k: k.signed_raw(header_json=f'{{"alg":"ES256","typ":"JWT","kid":"{KID}","al\\u0067":"HS256"}}'),
     BAD_HEADER)
case("header-duplicate-kid", "RFC 7515 §4",
     lambda k: k.signed_raw(header_json=f'{{"alg":"ES256","kid":"attacker","kid":"{KID}"}}'), BAD_HEADER)
case("payload-duplicate-iss", "RFC 7519 §4 (duplicate Claim Names)",
     lambda k: k.signed_raw(payload_json='{"iss":"https://evil.example.com",' + k.payload_json()[1:]),
     BAD_PAYLOAD)
case("payload-duplicate-cnf", "RFC 7519 §4; RFC 8705 §3.1",
     lambda k: k.signed_raw(payload_json='{"cnf":{"x5t#S256":"%s"},' % k.x5t(k.cert_b)
                            + k.payload_json()[1:]), BAD_PAYLOAD)
case("payload-duplicate-x5t-inside-cnf", "RFC 7519 §4; RFC 8705 §3.1",
     lambda k: k.signed_raw(payload_json=k.payload_json(cnf=None)[:-1]
                            + ',"cnf":{"x5t#S256":"%s","x5t#S256":"%s"}}' % (k.x5t(k.cert_b), k.x5t(k.cert_a))),
     BAD_PAYLOAD)
case("payload-duplicate-exp", "RFC 7519 §4",
     lambda k: k.signed_raw(payload_json='{"exp":%d,' % (k.now() - 3600) + k.payload_json()[1:]),
     BAD_PAYLOAD)
case("payload-utf16-with-bom", "RFC 8725 §2.6, §3.7; RFC 8259 §8.1",
     lambda k: k.token(raw_payload=b64u(k.payload_json().encode("utf-16"))), BAD_PAYLOAD)
case("payload-trailing-garbage", "RFC 7519 §7.2 step 10; RFC 8259 §2",
     lambda k: k.signed_raw(payload_json=k.payload_json() + "x"), BAD_PAYLOAD)
case("payload-json-array", "RFC 7519 §7.2 step 10", lambda k: k.signed_raw(payload_json="[1]"),
     BAD_PAYLOAD)
case("header-json-array", "RFC 7515 §5.2 step 3", lambda k: k.signed_raw(header_json='["ES256"]'),
     BAD_HEADER)
case("payload-nested-2000-deep", "RFC 8259 §9 (nesting limits)",
     lambda k: k.signed_raw(payload_json=k.payload_json()[:-1] + ',"x":' + _nested(2000) + "}"),
     BAD_PAYLOAD)
case("header-nested-2000-deep", "RFC 8259 §9 (nesting limits)",
     lambda k: k.signed_raw(header_json=f'{{"alg":"ES256","kid":"{KID}","x":{_nested(2000)}}}'),
     BAD_HEADER)
case("huge-token-over-max-token-bytes", "RFC 8259 §9 (size limits); max_token_bytes",
     lambda k: k.valid(pad="A" * 9000), TOO_LARGE)
case("huge-header-over-max-token-bytes", "RFC 8259 §9 (size limits); max_token_bytes",
     lambda k: k.token(k.header(pad="B" * 12000)), TOO_LARGE)
case("big-header-300-members-attacker-signed", "RFC 8259 §9",
     lambda k: k.token(k.header(**{f"m{i}": i for i in range(300)}), key=k.attacker), SIG_FAILED)

# -- crit (RFC 7515 §4.1.11) --------------------------------------------------
case("crit-unknown-extension", "RFC 7515 §4.1.11",
     lambda k: k.token(k.header(crit=["exp"], exp=k.now() + 300)), "unknown critical header")
case("crit-b64-false", "RFC 7797 §6; RFC 7515 §4.1.11",
     lambda k: k.token(k.header(crit=["b64"], b64=False)), "unknown critical header")
case("crit-empty-list", "RFC 7515 §4.1.11 (MUST NOT be empty)",
     lambda k: k.token(k.header(crit=[])), "unknown critical header")

# -- issuer, key routing and kid (RFC 8725 §2.7, §3.8, §3.10) -------------------
case("partner-key-our-iss-partner-kid", "RFC 8725 §2.7, §3.8",
     lambda k: k.token(k.header("ES256", PARTNER_KID), key=k.partner), UNKNOWN_KID)
case("partner-key-our-iss-our-kid", "RFC 8725 §2.7, §3.8",
     lambda k: k.token(k.header("ES256", KID), key=k.partner), SIG_FAILED)
case("our-key-partner-iss", "RFC 8725 §3.8",
     lambda k: k.token(claims=k.claims(iss=PARTNER_ISS)), UNKNOWN_KID)
case("iss-trailing-slash", "RFC 8725 §3.8; RFC 7519 §4.1.1 (StringOrURI compared exactly)",
     lambda k: k.valid(iss=ISS + "/"), ISSUER)
case("iss-array", "RFC 7519 §4.1.1", lambda k: k.valid(iss=[ISS]), (ISSUER, WRONG_TYPE))
case("kid-path-traversal", "RFC 8725 §3.10",
     lambda k: k.token(k.header("ES256", "../../../../../../dev/null")), UNKNOWN_KID)
case("kid-sql-injection", "RFC 8725 §3.10",
     lambda k: k.token(k.header("ES256", "x' UNION SELECT 'key' --")), UNKNOWN_KID)
case("kid-not-a-string", "RFC 7515 §4.1.4", lambda k: k.token(k.header("ES256", 1)),
     "kid is not a string")
case("kid-empty", "RFC 7515 §4.1.4", lambda k: k.token(k.header("ES256", "")), UNKNOWN_KID)

# -- time (RFC 7519 §2 NumericDate, §4.1.4-6) ----------------------------------
case("exp-exactly-now-minus-skew", "RFC 7519 §4.1.4",
     lambda k: k.valid(exp=k.now() - SKEW), EXPIRED)
# A NumericDate before the epoch (or after 2^32 s) is refused as malformed
# before the signature is checked, never wrapped or saturated.
case("exp-negative", "RFC 7519 §2, §4.1.4", lambda k: k.valid(exp=-1), WRONG_TYPE)
case("exp-zero", "RFC 7519 §4.1.4", lambda k: k.valid(exp=0), EXPIRED)
case("exp-as-string", "RFC 7519 §2 (NumericDate is a number)",
     lambda k: k.valid(exp=str(k.now() + 300)), WRONG_TYPE)
case("exp-1e300", "RFC 7519 §2; RFC 8259 §6", lambda k: k.valid(exp=1e300), WRONG_TYPE)
case("exp-2-pow-64", "RFC 7519 §2; RFC 8259 §6", lambda k: k.valid(exp=2**64), WRONG_TYPE)
case("exp-true", "RFC 7519 §2", lambda k: k.valid(exp=True), WRONG_TYPE)
case("exp-array", "RFC 7519 §2", lambda k: k.valid(exp=[k.now() + 300]), WRONG_TYPE)
case("exp-null", "RFC 7519 §2",
     lambda k: k.signed_raw(payload_json=k.payload_json(exp=None)[:-1] + ',"exp":null}'), WRONG_TYPE)
case("exp-nan-literal", "RFC 8259 §6 (no NaN)",
     lambda k: k.signed_raw(payload_json=k.payload_json(exp=None)[:-1] + ',"exp":NaN}'), BAD_PAYLOAD)
case("exp-missing", "RFC 7519 §4.1.4; require_expiration", lambda k: k.valid(exp=None),
     "token has no expiration")
case("nbf-far-future", "RFC 7519 §4.1.5", lambda k: k.valid(nbf=k.now() + 10 * 365 * 86400), NOT_YET)
case("nbf-as-string", "RFC 7519 §2", lambda k: k.valid(nbf=str(k.now())), WRONG_TYPE)
case("iat-future", "RFC 7519 §4.1.6", lambda k: k.valid(iat=k.now() + 3600), NOT_YET)
case("iat-as-string", "RFC 7519 §2", lambda k: k.valid(iat=str(k.now())), WRONG_TYPE)

# -- audience and type (RFC 8725 §3.9, §3.11) -----------------------------------
case("aud-trailing-slash", "RFC 8725 §3.9", lambda k: k.valid(aud=AUD + "/"), "audience not accepted")
case("aud-as-number", "RFC 7519 §4.1.3", lambda k: k.valid(aud=1), WRONG_TYPE)
case("typ-jwe", "RFC 8725 §3.11", lambda k: k.token(k.header(typ="JWE")), "wrong token type")
case("typ-not-a-string", "RFC 7515 §4.1.9", lambda k: k.token(k.header(typ=1)), "typ is not a string")

# -- the thumbprint (RFC 8705 §3.1) ----------------------------------------------
R8705 = "RFC 8705 §3.1"
case("x5t-hex", R8705, lambda k: _bound(k, value=hashlib.sha256(k.der_a).hexdigest()), BAD_X5T)
case("x5t-padded", R8705, lambda k: _bound(k, value=_sha256_b64(k.der_a, pad=True)), BAD_X5T)
case("x5t-standard-base64", R8705,
     lambda k: _bound(k, value=_sha256_b64(k.der_a, alphabet="std", pad=True)), BAD_X5T)
case("x5t-noncanonical-trailing-bits", f"{R8705}; RFC 4648 §3.5",
     lambda k: _bound(k, value=_flip_unused_bits(k.x5t(k.cert_a))), BAD_X5T)
case("x5t-leading-space", R8705, lambda k: _bound(k, value=" " + k.x5t(k.cert_a)), BAD_X5T)
case("x5t-over-pem-text", R8705, lambda k: _bound(k, value=_sha256_b64(k.pem_a)), MISMATCH)
case("x5t-over-public-key", R8705,
     lambda k: _bound(k, value=_sha256_b64(k.cert_a.public_key().public_bytes(
         serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))), MISMATCH)
case("x5t-of-the-ca", R8705, lambda k: _bound(k, cert=k.ca), MISMATCH)
case("x5t-sha384", R8705,
     lambda k: _bound(k, value=b64u(hashlib.sha384(k.der_a).digest())), BAD_X5T)
case("x5t-empty", R8705, lambda k: _bound(k, value=""), BAD_X5T)
case("x5t-as-array", R8705, lambda k: _bound(k, value=[k.x5t(k.cert_a)]), BAD_X5T)
case("cnf-missing", "RFC 8705 §3", lambda k: k.valid(cnf=None), NOT_BOUND)
case("cnf-as-string", "RFC 7800 §3.1; RFC 8705 §3.1", lambda k: k.valid(cnf=k.x5t(k.cert_a)), BAD_X5T)
case("cnf-sha1-x5t-only", "RFC 8705 §3.1 (only x5t#S256 is defined)",
     lambda k: k.valid(cnf={"x5t": b64u(hashlib.sha1(k.der_a).digest())}), NOT_BOUND)
case("cnf-x5t-name-uppercase", R8705,
     lambda k: k.valid(cnf={"X5T#S256": k.x5t(k.cert_a)}), NOT_BOUND)
case("cnf-dpop-jkt-only", "RFC 9449 §6.1; RFC 8705 §3",
     lambda k: k.valid(cnf={"jkt": b64u(os.urandom(32))}), NOT_BOUND)
case("bound-to-b-sent-by-a", "RFC 8705 §3", lambda k: _bound(k, cert=k.cert_b), MISMATCH)
case("bound-token-without-client-cert", "RFC 8705 §3",
     lambda k: Attempt(token=k.valid(), client=None), NO_CERT)

# -- forged forwarded certificates under source = connection (RFC 9440 §2.4, §4) --
F = "RFC 8705 §3; RFC 9440 §2.4, §4 (forwarded certificates only from a trusted hop)"
case("xfcc-victim-cert-from-other-client", F,
     lambda k: Attempt(token=k.valid(), client="b",
                       headers=[("x-forwarded-client-cert", k.xfcc_a)]), MISMATCH)
case("xfcc-victim-cert-without-client-cert", F,
     lambda k: Attempt(token=k.valid(), client=None,
                       headers=[("x-forwarded-client-cert", k.xfcc_a)]), NO_CERT)
case("xfcc-two-copies-without-client-cert", F,
     lambda k: Attempt(token=k.valid(), client=None,
                       headers=[("x-forwarded-client-cert", k.xfcc_a)] * 2), NO_CERT)
case("x-ssl-cert-url-encoded-victim-cert", F,
     lambda k: Attempt(token=k.valid(), client="b",
                       headers=[("x-ssl-cert", urllib.parse.quote(k.pem_a.decode(), safe=""))]),
     MISMATCH)
case("x-ssl-cert-pem-victim-cert-without-client-cert", F,
     lambda k: Attempt(token=k.valid(), client=None,
                       headers=[("x-ssl-cert", k.pem_a.decode().replace("\n", " ").strip())]), NO_CERT)
case("client-cert-rfc9440-victim-cert", F,
     lambda k: Attempt(token=k.valid(), client="b",
                       headers=[("client-cert", _client_cert_rfc9440(k))]), MISMATCH)
case("all-forwarded-headers-at-once", F,
     lambda k: Attempt(token=k.valid(), client=None, headers=[
         ("x-forwarded-client-cert", k.xfcc_a),
         ("x-ssl-cert", urllib.parse.quote(k.pem_a.decode(), safe="")),
         ("client-cert", _client_cert_rfc9440(k)),
         ("x-amzn-mtls-clientcert", urllib.parse.quote(k.pem_a.decode(), safe="")),
         ("x-client-cert-sha256", hashlib.sha256(k.der_a).hexdigest())]), NO_CERT)

# -- where the token is (RFC 6750 §2, §3.1) --------------------------------------
case("two-tokens-header-and-query", "RFC 6750 §2 (one method), §3.1 invalid_request",
     lambda k: Attempt(token=k.valid(), query=f"{PARTNER_PARAM}={k.valid()}"),
     "more than one token in the request", status=400, error="invalid_request")
# Envoy joins repeated Authorization headers into one value ("Bearer a,Bearer b");
# the filter splits it again: two tokens.
case("two-authorization-headers", "RFC 6750 §2; RFC 9110 §5.3",
     lambda k: Attempt(authorization=[f"Bearer {k.valid()}", f"Bearer {k.valid()}"]),
     "more than one token in the request", status=400, error="invalid_request")
case("two-tokens-folded-in-one-header", "RFC 6750 §2; RFC 9110 §5.3",
     lambda k: Attempt(authorization=[f"Bearer {k.valid()},Bearer {k.valid()}"]),
     "more than one token in the request", status=400, error="invalid_request")
case("no-token", "RFC 6750 §3.1 (no error code)", lambda k: Attempt(authorization=[]),
     status=401, error=None)
case("basic-scheme-only", "RFC 6750 §3.1; RFC 7617",
     lambda k: Attempt(authorization=["Basic " + base64.b64encode(b"admin:admin").decode()]),
     status=401, error=None)
case("bearer-without-token", "RFC 6750 §2.1", lambda k: Attempt(authorization=["Bearer"]),
     status=401, error=None)
case("dpop-scheme-with-a-valid-token", "RFC 9449 §7.1",
     lambda k: Attempt(authorization=[f"DPoP {k.valid()}"]), status=401, error=None)
case("valid-token-in-unconfigured-query-param", "RFC 6750 §2.3 (not configured: ignored)",
     lambda k: Attempt(authorization=[], query=f"token={k.valid()}"), status=401, error=None)
case("idp-token-where-only-partner-looks", "RFC 6750 §2.3; from_params is per provider",
     lambda k: Attempt(authorization=[], query=f"{PARTNER_PARAM}={k.valid()}"), status=401, error=None)
case("valid-token-in-unconfigured-cookie", "RFC 6750 §2 (only configured locations)",
     lambda k: Attempt(authorization=[], headers=[("cookie", f"access_token={k.valid()}")]),
     status=401, error=None)

# -- scopes (RFC 6750 §3.1 insufficient_scope; binding before scope) --------------
S = "RFC 6750 §3.1"
case("scope-missing", S, lambda k: k.valid(), "insufficient scope", status=403,
     error="insufficient_scope", path=SCOPED_PATH)
case("scope-prefix-only", S, lambda k: k.valid(scope="orders:readonly orders"), "insufficient scope",
     status=403, error="insufficient_scope", path=SCOPED_PATH)
case("scope-tab-separated", f"{S}; RFC 6749 §3.3 (space-delimited)",
     lambda k: k.valid(scope="orders:write\torders:read"), "insufficient scope", status=403,
     error="insufficient_scope", path=SCOPED_PATH)
case("scope-case-differs", f"{S}; RFC 6749 §3.3 (case-sensitive)",
     lambda k: k.valid(scope="ORDERS:READ"), "insufficient scope", status=403,
     error="insufficient_scope", path=SCOPED_PATH)
case("scoped-token-replayed-by-other-client", "RFC 8705 §3 (binding checked before scope)",
     lambda k: Attempt(token=k.valid(scope=SCOPE), client="b"), MISMATCH, path=SCOPED_PATH)

# -- the scoped rule reached by a path in another spelling: the shipped HCM
#    normalises (normalize_path, merge_slashes) before the filter matches rules --
for _id, _path, _src in [
    ("dot-segment", "/api/.." + SCOPED_PATH, "RFC 3986 §5.2.4"),
    ("single-dot-segment", "/." + SCOPED_PATH, "RFC 3986 §5.2.4"),
    ("encoded-dot-segment", "/api/%2e%2e" + SCOPED_PATH, "RFC 3986 §2.3, §5.2.4"),
    ("double-slash", "/" + SCOPED_PATH, "RFC 3986 §3.3; merge_slashes"),
    ("percent-encoded-letter", "/%73" + SCOPED_PATH[2:], "RFC 3986 §6.2.2.2"),
    ("path-parameter", SCOPED_PATH + ";x=1", "RFC 3986 §3.3"),
]:
    case(f"scope-rule-via-{_id}", f"{_src}; RFC 6750 §3.1", lambda k: k.valid(), "insufficient scope",
         status=403, error="insufficient_scope", path=_path)


# Rows whose token a lax verifier accepts: the defect is all that is wrong.
# test_adversarial.py checks this with PyJWT, without Envoy, trying every key
# it can find (the JWKS, the partner's, a `jwk` or `x5c` in the header) and
# checking neither iss, aud nor cnf.
LAX_ACCEPTS = {
    "header-duplicate-alg-none-first", "header-duplicate-kid", "payload-duplicate-iss",
    "payload-duplicate-cnf", "payload-duplicate-x5t-inside-cnf", "payload-duplicate-exp",
    "header-padded", "payload-padded", "signature-padded", "header-standard-alphabet",
    "payload-standard-alphabet", "signature-standard-alphabet",
    "header-noncanonical-trailing-bits", "signature-noncanonical-trailing-bits",
    "huge-token-over-max-token-bytes", "huge-header-over-max-token-bytes",
    "iss-trailing-slash", "aud-trailing-slash",
    "x5t-hex", "x5t-padded", "x5t-standard-base64", "x5t-noncanonical-trailing-bits",
    "x5t-leading-space", "x5t-over-pem-text", "x5t-over-public-key", "x5t-of-the-ca",
    "x5t-sha384", "x5t-empty", "x5t-as-array", "cnf-missing", "cnf-as-string",
    "cnf-sha1-x5t-only", "cnf-x5t-name-uppercase", "cnf-dpop-jkt-only", "bound-to-b-sent-by-a",
    "bound-token-without-client-cert", "xfcc-victim-cert-from-other-client",
    "xfcc-victim-cert-without-client-cert", "xfcc-two-copies-without-client-cert",
    "x-ssl-cert-url-encoded-victim-cert", "x-ssl-cert-pem-victim-cert-without-client-cert",
    "client-cert-rfc9440-victim-cert", "all-forwarded-headers-at-once",
    "scope-missing", "scope-prefix-only", "scope-tab-separated", "scope-case-differs",
    "scoped-token-replayed-by-other-client",
    # ... and one that takes keys from the header or from another issuer
    "jwk-header-attacker-key-own-kid", "jwk-header-attacker-key-our-kid",
    "jwk-header-attacker-key-no-kid", "jwk-header-attacker-rsa-our-rsa-kid",
    "x5c-header-attacker-self-signed", "x5c-header-attacker-no-kid",
    "partner-key-our-iss-partner-kid", "partner-key-our-iss-our-kid",
}
CASES = [dataclasses.replace(c, lax=c.id in LAX_ACCEPTS) for c in CASES]


def by_id() -> dict[str, Case]:
    out: dict[str, Case] = {}
    for c in CASES:
        assert c.id not in out, f"duplicate case id {c.id}"
        out[c.id] = c
    return out


assert LAX_ACCEPTS <= set(by_id())  # ids are unique and known
