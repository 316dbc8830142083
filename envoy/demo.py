#!/usr/bin/env python3
"""certbound demo helper: PKI, token minting and an echo backend.

Sub-commands (run with the project venv, ``target/venv/bin/python``)::

    demo.py gen     [--dir envoy/certs]
        Write a demo CA, a server certificate for localhost/127.0.0.1, two
        client certificates (client-a, client-b) signed by the same CA, an
        ES256 IdP signing key, its JWKS (jwks.json) and demo.env (the JWKS as
        CERTBOUND_JWKS=..., for `docker compose` and for sourcing in a shell).

    demo.py mint    --cert envoy/certs/client-a.pem [--unbound] [--expires-in 300]
                    [--iss ...] [--aud ...] [--kid ...] [--dir envoy/certs]
        Print a JWT signed by the IdP key, bound to the certificate's SHA-256
        thumbprint (cnf.x5t#S256, RFC 8705) unless --unbound is given.

    demo.py backend [--host 127.0.0.1] [--port 8080]
        Run a tiny HTTP server that answers every request with 200 and a JSON
        echo of the method, path and request headers.

    demo.py thumbprint --cert envoy/certs/client-a.pem
        Print base64url-nopad(SHA-256(DER of the certificate)).

    demo.py self-signed --cert app.pem --key app-key.pem [--cn app]
        Write a fresh self-signed client certificate and its key, as an
        application using RFC 8705's self-signed method (section 2.2) makes
        one: no CA involved; the token bound to it is the only trust.

The module is importable: tests/e2e reuses the PKI and minting helpers.
``gen``/``mint``/``thumbprint`` need ``cryptography`` and ``PyJWT`` (both in
the venv); ``backend`` needs only the standard library, so a stock Python
container can run it (see envoy/docker-compose.yaml).
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import hashlib
import http.server
import ipaddress
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

try:
    import jwt
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ModuleNotFoundError as _exc:  # `backend` needs only the standard library
    _MISSING_DEPENDENCY: ModuleNotFoundError | None = _exc
else:
    _MISSING_DEPENDENCY = None

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CERT_DIR = Path("envoy") / "certs"

ISSUER = "https://idp.example.com"
AUDIENCE = "https://api.example.com"
IDP_KID = "demo-es256"
IDP_ALG = "ES256"
# envoy/host-scoped.yaml: one listener, two hosts told apart by SNI.
PLAIN_HOST = "api.example.com"
MTLS_HOST = "mtls.api.example.com"
SNI_HOSTS = (PLAIN_HOST, MTLS_HOST)

# ---------------------------------------------------------------------------
# small encoders
# ---------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


# ---------------------------------------------------------------------------
# X.509
# ---------------------------------------------------------------------------


def new_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certbound demo"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make_ca(cn: str = "certbound demo CA", days: int = 30):
    """Return (key, certificate) of a self-signed CA."""
    key = new_ec_key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_cert(
    ca_key,
    ca_cert: x509.Certificate,
    cn: str,
    *,
    server: bool = False,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    days: int = 30,
    key=None,
):
    """Issue a leaf certificate signed by the CA; return (key, certificate)."""
    key = key or new_ec_key()
    now = _now()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def self_signed(cn: str, *, days: int = 30, key=None, not_before: _dt.datetime | None = None):
    """A self-signed client certificate (RFC 8705 section 2.2); return (key, certificate).

    Not a CA: subject = issuer, signed by its own key, clientAuth usage.
    ``not_before`` (default: 5 minutes ago) and ``days`` set the validity.
    """
    key = key or new_ec_key()
    start = not_before or _now() - _dt.timedelta(minutes=5)
    name = _name(cn)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_cert(path: str | os.PathLike) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def load_key(path: str | os.PathLike):
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


def thumbprint(cert: x509.Certificate | bytes | str | os.PathLike) -> str:
    """RFC 8705 x5t#S256: base64url-nopad(SHA-256(DER of the certificate)).

    Accepts a certificate object, DER/PEM bytes or a path to a PEM file.
    """
    if isinstance(cert, (str, os.PathLike)):
        cert = load_cert(cert)
    if isinstance(cert, bytes):
        cert = (
            x509.load_pem_x509_certificate(cert)
            if cert.lstrip().startswith(b"-----")
            else x509.load_der_x509_certificate(cert)
        )
    der = cert.public_bytes(serialization.Encoding.DER)
    return b64url(hashlib.sha256(der).digest())


# ---------------------------------------------------------------------------
# JOSE: signing keys, JWKS, tokens
# ---------------------------------------------------------------------------


def new_signing_key(alg: str):
    """Generate a private key suitable for the JWS algorithm ``alg``."""
    if alg.startswith(("RS", "PS")):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    curves = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
    if alg in curves:
        return ec.generate_private_key(curves[alg]())
    if alg in ("EdDSA", "Ed25519"):
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported algorithm {alg!r}")


def public_jwk(key, kid: str | None, alg: str | None = None) -> dict[str, Any]:
    """Public JWK (RFC 7517) of a private or public key."""
    pub = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(pub, rsa.RSAPublicKey):
        nums = pub.public_numbers()
        size = (nums.n.bit_length() + 7) // 8
        jwk: dict[str, Any] = {
            "kty": "RSA",
            "n": b64url(nums.n.to_bytes(size, "big")),
            "e": b64url(nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")),
        }
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[pub.curve.name]
        size = (pub.curve.key_size + 7) // 8
        nums = pub.public_numbers()
        jwk = {
            "kty": "EC",
            "crv": crv,
            "x": b64url(nums.x.to_bytes(size, "big")),
            "y": b64url(nums.y.to_bytes(size, "big")),
        }
    elif isinstance(pub, ed25519.Ed25519PublicKey):
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    else:
        raise ValueError(f"unsupported key type {type(pub).__name__}")
    jwk["use"] = "sig"
    if alg:
        jwk["alg"] = alg
    if kid is not None:
        jwk["kid"] = kid
    return jwk


def jwks(*jwk_list: dict[str, Any]) -> dict[str, Any]:
    return {"keys": list(jwk_list)}


def mint(
    key,
    alg: str,
    *,
    kid: str | None = IDP_KID,
    cert: x509.Certificate | bytes | str | os.PathLike | None = None,
    iss: str | None = ISSUER,
    aud: str | list[str] | None = AUDIENCE,
    sub: str = "demo-client",
    expires_in: int | None = 300,
    not_before: int | None = None,
    now: int | None = None,
    cnf: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Sign a JWT access token.

    With ``cert`` the token carries ``cnf: {"x5t#S256": thumbprint(cert)}``;
    ``cnf`` overrides that verbatim.  Claims whose argument is ``None`` are
    left out.  ``not_before`` is relative to ``now`` (seconds).
    """
    now = int(time.time()) if now is None else now
    claims: dict[str, Any] = {"sub": sub, "iat": now, "jti": b64url(os.urandom(12))}
    if iss is not None:
        claims["iss"] = iss
    if aud is not None:
        claims["aud"] = aud
    if expires_in is not None:
        claims["exp"] = now + expires_in
    if not_before is not None:
        claims["nbf"] = now + not_before
    if cnf is not None:
        claims["cnf"] = cnf
    elif cert is not None:
        claims["cnf"] = {"x5t#S256": thumbprint(cert)}
    claims.update(extra or {})
    headers = {"kid": kid} if kid is not None else {}
    if alg == "Ed25519":
        # RFC 9864's fully-specified name for the EdDSA signature with an
        # Ed25519 key, which PyJWT does not know: a compact JWS by hand.
        header = {"alg": alg, "typ": "JWT", **headers}
        compact = lambda obj: b64url(json.dumps(obj, separators=(",", ":")).encode())  # noqa: E731
        signing_input = f"{compact(header)}.{compact(claims)}"
        return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


# ---------------------------------------------------------------------------
# gen: the demo PKI on disk
# ---------------------------------------------------------------------------


def generate(out_dir: str | os.PathLike = DEFAULT_CERT_DIR) -> dict[str, Path]:
    """Write the demo PKI, IdP key, jwks.json and demo.env into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = make_ca()
    files: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        path = files[name] = out / name
        path.write_bytes(data)
        # World-readable on purpose, keys included: the official Envoy image
        # drops to its own `envoy` user, which must read server-key.pem.
        # This is throwaway demo material: never reuse these keys.
        path.chmod(0o644)

    put("ca.pem", cert_pem(ca_cert))
    put("ca-key.pem", key_pem(ca_key))
    # localhost for envoy.yaml and self-signed.yaml; the two host names
    # host-scoped.yaml serves by SNI.
    srv_key, srv_cert = issue_cert(
        ca_key, ca_cert, "localhost", server=True,
        dns_names=("localhost",) + SNI_HOSTS, ip_addresses=("127.0.0.1", "::1"),
    )
    put("server.pem", cert_pem(srv_cert))
    put("server-key.pem", key_pem(srv_key))
    for name in ("client-a", "client-b"):
        k, c = issue_cert(ca_key, ca_cert, name)
        put(f"{name}.pem", cert_pem(c))
        put(f"{name}-key.pem", key_pem(k))
    idp_key = new_signing_key(IDP_ALG)
    put("idp-key.pem", key_pem(idp_key))
    jwks_text = json.dumps(jwks(public_jwk(idp_key, IDP_KID, IDP_ALG)), separators=(",", ":"))
    put("jwks.json", (jwks_text + "\n").encode())
    # One line, single-quoted: read literally by docker compose's env_file
    # parser and by a POSIX shell (`set -a; . envoy/certs/demo.env`).
    put("demo.env", f"CERTBOUND_JWKS='{jwks_text}'\n".encode())
    return files


# ---------------------------------------------------------------------------
# backend: an echo server
# ---------------------------------------------------------------------------


class EchoHandler(http.server.BaseHTTPRequestHandler):
    """Answers any request with 200 and a JSON echo of it."""

    protocol_version = "HTTP/1.1"
    server_version = "certbound-echo"
    #: called with the echoed dict for every request (set per server)
    on_request: Callable[[dict[str, Any]], None] | None = None

    def _echo(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_bytes": len(body),
        }
        hook = getattr(self.server, "on_request", None)
        if hook:
            hook(seen)
        data = (json.dumps(seen, indent=2) + "\n").encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _echo

    def log_message(self, fmt: str, *args: Any) -> None:  # quieter than stderr spam
        if getattr(self.server, "verbose", False):
            super().log_message(fmt, *args)


def make_backend(
    host: str = "127.0.0.1",
    port: int = 8080,
    on_request: Callable[[dict[str, Any]], None] | None = None,
    verbose: bool = False,
) -> http.server.ThreadingHTTPServer:
    """Bind (but do not start) an echo server; port 0 picks a free port."""
    srv = http.server.ThreadingHTTPServer((host, port), EchoHandler)
    srv.daemon_threads = True
    srv.on_request = on_request  # type: ignore[attr-defined]
    srv.verbose = verbose  # type: ignore[attr-defined]
    return srv


def start_backend_thread(**kwargs: Any) -> http.server.ThreadingHTTPServer:
    srv = make_backend(**kwargs)
    threading.Thread(target=srv.serve_forever, name="echo-backend", daemon=True).start()
    return srv


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def _cmd_gen(args: argparse.Namespace) -> int:
    files = generate(args.dir)
    print(f"wrote {len(files)} files to {args.dir}: " + " ".join(sorted(p.name for p in files.values())))
    return 0


def _cmd_mint(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    key = load_key(args.key or d / "idp-key.pem")
    token = mint(
        key,
        args.alg,
        kid=None if args.no_kid else args.kid,
        cert=None if args.unbound else args.cert,
        iss=args.iss,
        aud=args.aud,
        expires_in=args.expires_in,
    )
    print(token)
    return 0


def _cmd_backend(args: argparse.Namespace) -> int:
    srv = make_backend(args.host, args.port, verbose=args.verbose)
    print(f"echo backend listening on http://{args.host}:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


def _cmd_self_signed(args: argparse.Namespace) -> int:
    key, cert = self_signed(args.cn, days=args.days)
    for path, data in ((args.cert, cert_pem(cert)), (args.key, key_pem(key))):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    Path(args.key).chmod(0o600)
    return 0


def _cmd_thumbprint(args: argparse.Namespace) -> int:
    print(thumbprint(args.cert))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("gen", help="write demo CA, server/client certs, IdP key, JWKS")
    g.add_argument("--dir", default=str(DEFAULT_CERT_DIR))
    g.set_defaults(func=_cmd_gen)

    m = sub.add_parser("mint", help="print a (certificate-bound) access token")
    m.add_argument("--cert", help="client certificate (PEM) to bind the token to")
    m.add_argument("--unbound", action="store_true", help="omit the cnf claim")
    m.add_argument("--dir", default=str(DEFAULT_CERT_DIR))
    m.add_argument("--key", help="signing key (PEM); default DIR/idp-key.pem")
    m.add_argument("--alg", default=IDP_ALG)
    m.add_argument("--kid", default=IDP_KID)
    m.add_argument("--no-kid", action="store_true", help="omit the kid header")
    m.add_argument("--iss", default=ISSUER)
    m.add_argument("--aud", default=AUDIENCE)
    m.add_argument("--expires-in", type=int, default=300, metavar="SECONDS")
    m.set_defaults(func=_cmd_mint)

    b = sub.add_parser("backend", help="run the echo HTTP backend")
    b.add_argument("--host", default="127.0.0.1")
    b.add_argument("--port", type=int, default=8080)
    b.add_argument("-v", "--verbose", action="store_true")
    b.set_defaults(func=_cmd_backend)

    t = sub.add_parser("thumbprint", help="print a certificate's x5t#S256")
    t.add_argument("--cert", required=True)
    t.set_defaults(func=_cmd_thumbprint)

    s = sub.add_parser("self-signed", help="write a fresh self-signed client certificate")
    s.add_argument("--cert", required=True, help="where to write the certificate (PEM)")
    s.add_argument("--key", required=True, help="where to write its private key (PEM)")
    s.add_argument("--cn", default="self-signed client")
    s.add_argument("--days", type=int, default=30)
    s.set_defaults(func=_cmd_self_signed)

    args = p.parse_args(argv)
    if args.cmd != "backend" and _MISSING_DEPENDENCY is not None:
        p.error(
            f"{args.cmd}: {_MISSING_DEPENDENCY}; run me with the project venv "
            "(make venv; target/venv/bin/python envoy/demo.py ...)"
        )
    if args.cmd == "mint" and not args.unbound and not args.cert:
        p.error("mint: --cert is required unless --unbound is given")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
