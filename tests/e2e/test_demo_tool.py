"""envoy/demo.py as a command: gen writes the files envoy.yaml needs, mint
prints a token bound to the given certificate."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import harness

DEMO = str(harness.REPO / "envoy" / "demo.py")


def run(*args: str) -> str:
    return subprocess.run([sys.executable, DEMO, *args], check=True, capture_output=True,
                          text=True, timeout=60).stdout


def test_gen_and_mint(tmp_path):
    run("gen", "--dir", str(tmp_path))
    for name in ("ca.pem", "server.pem", "server-key.pem", "client-a.pem", "client-a-key.pem",
                 "client-b.pem", "client-b-key.pem", "idp-key.pem", "jwks.json", "demo.env"):
        assert (tmp_path / name).is_file(), name
    server = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)

    token = run("mint", "--dir", str(tmp_path), "--cert", str(tmp_path / "client-a.pem")).strip()
    jwk = json.loads((tmp_path / "jwks.json").read_text())["keys"][0]
    assert jwt.get_unverified_header(token)["kid"] == jwk["kid"]
    key = jwt.PyJWK(jwk).key
    claims = jwt.decode(token, key, algorithms=["ES256"], audience=harness.demo.AUDIENCE,
                        issuer=harness.demo.ISSUER)
    assert abs(claims["exp"] - (time.time() + 300)) < 30
    der = x509.load_pem_x509_certificate((tmp_path / "client-a.pem").read_bytes()).public_bytes(
        serialization.Encoding.DER)
    assert claims["cnf"]["x5t#S256"] == harness.demo.b64url(hashlib.sha256(der).digest())
    assert "=" not in claims["cnf"]["x5t#S256"]

    unbound = run("mint", "--dir", str(tmp_path), "--unbound").strip()
    assert "cnf" not in jwt.decode(unbound, key, algorithms=["ES256"],
                                   audience=harness.demo.AUDIENCE)


def test_self_signed(tmp_path):
    """`demo.py self-signed`: a fresh self-signed client certificate, each run
    a new key; mint binds a token to it like to any other certificate."""
    run("gen", "--dir", str(tmp_path))
    certs = []
    for name in ("app-1", "app-2"):
        cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}-key.pem"
        run("self-signed", "--cert", str(cert_path), "--key", str(key_path), "--cn", name)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert cert.issuer == cert.subject
        cert.verify_directly_issued_by(cert)  # signed by its own key
        assert cert.public_key() == key.public_key()
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert (key_path.stat().st_mode & 0o077) == 0, "the private key is the client's alone"
        certs.append(cert)
    assert certs[0].public_key() != certs[1].public_key()

    token = run("mint", "--dir", str(tmp_path), "--cert", str(tmp_path / "app-1.pem")).strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["cnf"]["x5t#S256"] == harness.demo.thumbprint(tmp_path / "app-1.pem")
    assert claims["cnf"]["x5t#S256"] != harness.demo.thumbprint(tmp_path / "app-2.pem")


def test_server_certificate_names_the_sni_hosts(tmp_path):
    harness.demo.generate(tmp_path)
    server = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {
        "localhost", harness.demo.PLAIN_HOST, harness.demo.MTLS_HOST}
