"""The adversarial corpus (adversarial_corpus.py) against the real Envoy 1.40
over real mTLS: every row must be refused with its exact status, RFC 6750
error code and error_description, must not reach the backend, must count as
exactly one `certbound.denied`, and must not be logged with its token.

One Envoy for the module: the shipped plugin JSON (provider ``idp``, local
JWKS from CERTBOUND_JWKS, binding required, forward: true) plus

* a second provider ``partner`` (its own issuer and P-256 key, tokens in
  ``Authorization`` or the ``access_token`` query parameter), so that a
  token signed by a key the filter *does* trust, but for another issuer, can
  be tried against ``idp``, and a request can carry two tokens (400);
* rules: ``/scoped`` needs ``idp`` and scope ``orders:read`` (the 403 rows);
  everything else needs a valid token from either provider.

Order (pytest keeps file order): control requests that must pass, then every
row, then a check that a valid request still passes, the VM never failed and
/stats moved by exactly what was sent. Run only this file with
``make e2e PYTEST_ARGS='tests/e2e/test_adversarial.py'``; one row with
``-k 'test_adversarial and psychic'`` (the ledger check then counts only
what ran).

Stats: proxy-wasm metrics are in /stats as ``wasmcustom.certbound.*``.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt as pyjwt
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

import harness
from adversarial_corpus import (
    ANY, AUD, CASES, PARTNER_ISS, PARTNER_KID, PARTNER_PARAM, SCOPE, SCOPED_PATH, SKEW, Attempt, Case,
    Kit,
)

STAT = harness.STAT_NAMESPACE + "certbound."


# ---------------------------------------------------------------------------
# the Envoy under attack
# ---------------------------------------------------------------------------


def adversarial_plugin(kit: Kit) -> dict[str, Any]:
    pj = harness.plugin_json(harness.load_shipped_config())
    pj["providers"]["partner"] = {
        "issuer": PARTNER_ISS,
        "audiences": [AUD],
        "local_jwks": {"inline_string": json.dumps(kit.partner_jwks)},
        "certificate_binding": "required",
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "from_params": [PARTNER_PARAM],
    }
    pj["rules"] = [
        {"match": {"prefix": SCOPED_PATH}, "requires": {"provider_name": "idp"},
         "required_scopes": [SCOPE]},
        {"match": {"prefix": "/"},
         "requires": {"requires_any": [{"provider_name": "idp"}, {"provider_name": "partner"}]}},
    ]
    return pj


@pytest.fixture(scope="module")
def kit(pki) -> Kit:
    return Kit(pki)


@pytest.fixture(scope="module")
def envoy(envoy_factory, kit) -> harness.Envoy:
    return envoy_factory("adversarial", plugin=adversarial_plugin(kit))


def certbound_stats(envoy: harness.Envoy) -> dict[str, int]:
    return envoy.stats(re.escape(STAT))


def wasm_stats(envoy: harness.Envoy) -> dict[str, int]:
    return envoy.stats(r"^wasm\.")


@dataclass
class Ledger:
    """What this module sent, to compare with /stats at the end."""

    baseline: dict[str, int]
    wasm_baseline: dict[str, int]
    allowed: int = 0
    denied: int = 0
    cases: int = 0


@pytest.fixture(scope="module")
def ledger(envoy) -> Ledger:
    return Ledger(certbound_stats(envoy), wasm_stats(envoy))


# ---------------------------------------------------------------------------
# raw requests: any headers, repeated headers, bytes, any client certificate
# ---------------------------------------------------------------------------


@dataclass
class Sent:
    status: int
    headers: dict[str, str]
    body: bytes
    upstream: list[dict[str, Any]]
    path: str

    @property
    def www_authenticate(self) -> str | None:
        return self.headers.get("www-authenticate")


def send(envoy: harness.Envoy, backend: harness.Backend, pki: harness.Pki, attempt: Attempt,
         path: str) -> Sent:
    """One request on a fresh mTLS connection (the certificate is the attempt's)."""
    full = f"{path}/{uuid.uuid4().hex}" + (f"?{attempt.query}" if attempt.query else "")
    client = {"a": pki.client_a, "b": pki.client_b, None: None}[attempt.client]
    conn = http.client.HTTPSConnection("127.0.0.1", envoy.port, timeout=harness.HTTP_TIMEOUT,
                                       context=harness.tls_context(pki.ca, client))
    try:
        conn.putrequest("GET", full, skip_host=True, skip_accept_encoding=True)
        conn.putheader("host", "localhost")
        for name, value in attempt.header_list():
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        headers: dict[str, str] = {}
        for k, v in resp.getheaders():
            k = k.lower()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        status = resp.status
    finally:
        conn.close()
    return Sent(status, headers, body, backend.seen(full), full)


def expected_challenge(c: Case) -> str | None:
    """The exact WWW-Authenticate, or None when the description may vary."""
    if c.error is None:
        return "Bearer"
    if isinstance(c.description, str):
        extra = f', scope="{SCOPE}"' if c.error == "insufficient_scope" else ""
        return f'Bearer error="{c.error}", error_description="{c.description}"{extra}'
    return None


def _short(headers: list[tuple[str, str | bytes]]) -> str:
    """Headers for a failure message; a long value is cut in the middle
    (the full token is in the test's locals with --showlocals)."""
    out = []
    for n, v in headers:
        r = repr(v)
        out.append(f"{n}: {r if len(r) <= 1200 else r[:900] + f' ...({len(r)} chars)... ' + r[-200:]}")
    return "; ".join(out)


def describe(c: Case, attempt: Attempt, sent: Sent, log: str) -> str:
    return (f"\ncase {c.id} [{c.source}]\n"
            f"  client cert: {attempt.client}, path {sent.path}\n"
            f"  request headers: {_short(attempt.header_list())}\n"
            f"  response: {sent.status} www-authenticate={sent.www_authenticate!r} "
            f"body={sent.body[:200]!r} upstream={len(sent.upstream)}\n"
            f"  envoy log while it ran:\n    " + "\n    ".join(log.splitlines()[-15:]))


def check_response(c: Case, sent: Sent) -> list[str]:
    problems = []
    if sent.status != c.status:
        problems.append(f"status {sent.status}, expected {c.status}")
    wa = sent.www_authenticate or ""
    exact = expected_challenge(c)
    if exact is not None:
        if wa != exact:
            problems.append(f"WWW-Authenticate {wa!r}, expected {exact!r}")
    else:
        if not wa.startswith(f'Bearer error="{c.error}", error_description="'):
            problems.append(f"WWW-Authenticate {wa!r}, expected error=\"{c.error}\"")
        if isinstance(c.description, tuple):
            m = re.search(r'error_description="([^"]*)"', wa)
            if not m or m.group(1) not in c.description:
                problems.append(f"error_description not one of {c.description}")
        else:
            assert c.description is ANY
    if sent.upstream:
        problems.append(f"the backend received it ({len(sent.upstream)} request(s))")
    return problems


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------


def test_corpus_is_large_and_cited():
    assert len(CASES) >= 40
    for c in CASES:
        assert re.search(r"RFC \d+|CVE-\d{4}-\d+|Wycheproof", c.source), c
        assert c.status in (400, 401, 403), c


def test_control_requests_pass(envoy, backend, pki, kit, ledger):
    """The corpus is only meaningful if the same requests without the defect pass."""
    partner_token = kit.token(kit.header("ES256", PARTNER_KID), kit.claims(iss=PARTNER_ISS),
                              key=kit.partner)
    for attempt, path in [
        (Attempt(token=kit.valid()), "/api"),
        (Attempt(token=partner_token), "/api"),
        (Attempt(token=kit.valid(scope=f"orders:write {SCOPE}")), SCOPED_PATH),
        (Attempt(token=kit.token(kit.header("EdDSA", kit.ed_kid), alg="EdDSA", key=kit.ed)), "/api"),
        (Attempt(token=kit.token(kit.header("RS256", kit.rsa_kid), alg="RS256", key=kit.rsa)), "/api"),
    ]:
        sent = send(envoy, backend, pki, attempt, path)
        ledger.allowed += 1
        assert sent.status == 200, (attempt, sent)
        assert len(sent.upstream) == 1, sent


def _lax_b64(seg: str) -> bytes:
    """Python's forgiving base64: padding optional, either alphabet, any trailing bits."""
    seg = seg.rstrip("=")
    return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))


def _verify_sig(alg: str, key: Any, data: bytes, sig: bytes) -> bool:
    try:
        if alg in ("ES256", "ES384") and isinstance(key, ec.EllipticCurvePublicKey):
            half = len(sig) // 2
            der = encode_dss_signature(int.from_bytes(sig[:half], "big"),
                                       int.from_bytes(sig[half:], "big"))
            key.verify(der, data, ec.ECDSA(hashes.SHA256() if alg == "ES256" else hashes.SHA384()))
        elif alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def lax_verify(kit: Kit, token: str) -> dict[str, Any]:
    """What a careless verifier does: forgiving base64, `json.loads` (the
    last duplicate wins), any key it can find (the JWKS, the partner's, a
    `jwk` or `x5c` in the header), only `exp` checked: no iss, aud or cnf."""
    h, p, sig = token.split(".")
    header = json.loads(_lax_b64(h))
    keys = [kit.idp.public_key(), kit.rsa.public_key(), kit.ed.public_key(),
            kit.es384.public_key(), kit.partner.public_key()]
    if isinstance(header.get("jwk"), dict):
        keys.append(pyjwt.PyJWK(header["jwk"], header["alg"]).key)
    if header.get("x5c"):
        der = base64.b64decode(header["x5c"][0])
        keys.append(x509.load_der_x509_certificate(der).public_key())
    data = f"{h}.{p}".encode()
    if not any(_verify_sig(header["alg"], k, data, _lax_b64(sig)) for k in keys):
        raise AssertionError("no key verifies the signature")
    claims = json.loads(_lax_b64(p))
    assert claims["exp"] > time.time() - SKEW, "expired"
    return claims


@pytest.mark.parametrize("c", [c for c in CASES if c.lax], ids=[c.id for c in CASES if c.lax])
def test_row_is_otherwise_valid(pki, kit, c: Case):
    """The row's token passes a lax verifier: its defect is what certbound
    must catch, not an accident of how the row was built."""
    attempt = c.attempt(kit)
    token = attempt.token
    if token is None:
        (auth,) = [v for n, v in attempt.header_list() if n == "authorization"]
        token = auth.removeprefix("Bearer ")
    assert lax_verify(kit, token)["sub"]


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_adversarial(envoy, backend, pki, kit, ledger, c: Case):
    attempt = c.attempt(kit)
    before = certbound_stats(envoy)
    log_at = envoy.log_size()
    sent = send(envoy, backend, pki, attempt, c.path)
    after = certbound_stats(envoy)
    ledger.denied += 1
    ledger.cases += 1
    log = envoy.log_text(log_at)

    problems = check_response(c, sent)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    if delta.get(STAT + "denied") != 1 or delta.get(STAT + "allowed", 0) != 0:
        problems.append(f"certbound.denied moved by {delta.get(STAT + 'denied')}, "
                        f"allowed by {delta.get(STAT + 'allowed', 0)} (expected 1 and 0)")
    reasons = {k: v for k, v in delta.items() if k.startswith(STAT + "denied.") and v}
    if sum(reasons.values()) != 1:
        problems.append(f"denial reasons moved: {reasons}")
    token = attempt.token or next((v for n, v in attempt.header_list() if n == "authorization"
                                   and isinstance(v, str)), None)
    if token and len(token) > 40:
        for seg in token.removeprefix("Bearer ").split("."):
            if len(seg) > 20 and seg in log:
                problems.append("the token (or a segment of it) appears in Envoy's log")
                break
    if harness.VM_FAILURE.search(log):
        problems.append("Envoy logged a VM failure")
    assert not problems, "; ".join(problems) + describe(c, attempt, sent, log)


def test_after_the_corpus_the_filter_is_intact(envoy, backend, pki, kit, ledger):
    """A valid request still passes; /stats moved by exactly what was sent;
    the VM never failed, was never reloaded, and Envoy is still the same process."""
    sent = send(envoy, backend, pki, Attempt(token=kit.valid()), "/api")
    ledger.allowed += 1
    assert sent.status == 200 and len(sent.upstream) == 1, sent
    sent = send(envoy, backend, pki, Attempt(token=kit.valid(), client="b"), "/api")
    ledger.denied += 1
    assert sent.status == 401, sent

    now = certbound_stats(envoy)
    allowed = now[STAT + "allowed"] - ledger.baseline.get(STAT + "allowed", 0)
    denied = now[STAT + "denied"] - ledger.baseline.get(STAT + "denied", 0)
    assert (allowed, denied) == (ledger.allowed, ledger.denied), (
        f"/stats: allowed +{allowed}, denied +{denied}; sent: {ledger.allowed} valid, "
        f"{ledger.denied} refused ({ledger.cases} corpus rows)")
    by_reason = sum(v - ledger.baseline.get(k, 0) for k, v in now.items()
                    if k.startswith(STAT + "denied."))
    assert by_reason == denied, "every denial is counted under exactly one reason"

    assert envoy.proc is not None and envoy.proc.poll() is None, "Envoy exited"
    assert envoy.vm_failures() == [], envoy.vm_failures()
    if harness.BUILD == "wasm":
        # The native build has no VM to reload or count.
        wasm = wasm_stats(envoy)
        for name in ("wasm.certbound.vm_reload", "wasm.certbound.vm_reload_success",
                     "wasm.certbound.vm_reload_failure"):
            assert wasm.get(name, 0) == ledger.wasm_baseline.get(name, 0), (name, wasm)
        assert wasm["wasm.wasm_vm_count"] == ledger.wasm_baseline["wasm.wasm_vm_count"], wasm
    # The admin /stats text and the prometheus view agree on the denials.
    prom = envoy.admin_get("/stats?format=prometheus&filter=certbound\\.denied$")
    assert re.search(rf"^{harness.PROM_PREFIX}certbound_denied\{{\}} {now[STAT + 'denied']}$", prom, re.M), prom
