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
