"""DPoP (RFC 9449) and protected-resource metadata (RFC 9728) end to end:
the real Envoy 1.40, real TLS, access tokens from the session IdP and
proofs minted here (dpop_support.py) per request.

Envoys (the shipped config, the plugin JSON changed; one each, reused):

* ``dpop``: ``certificate_binding: required`` and a ``dpop`` block with the
  default algorithms, ``resource_metadata`` served at its well-known path;
* ``dpop_required``: the same with ``dpop.required: true``;
* ``dpop_nonce``: server nonces, the secret from a VM environment variable
  and a ``previous_secret`` inline;
* ``required`` (conftest): the shipped config, no ``dpop`` block.

Every refusal is checked for its status, each ``WWW-Authenticate`` header
exactly, the ``certbound.denied.<reason>`` counter, and that nothing
reached the backend.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable, Mapping

import pytest

import harness
from dpop_support import (
    DEFAULT_ALGS, ORIGIN, DpopKey, Reply, hs256_proof, new_path, nonce, proof, send,
)

RESOURCE = "https://api.example.com"
METADATA_PATH = "/.well-known/oauth-protected-resource"
METADATA_URL = RESOURCE + METADATA_PATH
SCOPES = ["orders:read", "orders:write"]
RESOURCE_NAME = "certbound e2e API"
ALGS = " ".join(DEFAULT_ALGS)

NONCE_ENV = "CERTBOUND_DPOP_NONCE_KEY"
NONCE_SECRET = "the current DPoP nonce secret, 32+ bytes"
PREVIOUS_SECRET = "the previous DPoP nonce secret, 32+ bytes"

STATS = harness.STAT_NAMESPACE + "certbound."


# ---------------------------------------------------------------------------
# configurations
# ---------------------------------------------------------------------------


def plugin(dpop: Mapping[str, Any] | None, **idp: Any) -> dict[str, Any]:
    """The shipped plugin JSON with ``idp.dpop`` (and other ``idp``
    members) set and the RFC 9728 metadata of the API."""
    pj = copy.deepcopy(harness.plugin_json(harness.load_shipped_config()))
    provider = pj["providers"]["idp"]
    provider.update(idp)
    if dpop is not None:
        provider["dpop"] = dict(dpop)
    pj["resource_metadata"] = {
        "resource": RESOURCE,
        "authorization_servers": [harness.demo.ISSUER],
        "scopes_supported": SCOPES,
        "resource_name": RESOURCE_NAME,
    }
    return pj


@pytest.fixture(scope="module")
def dpop_envoy(envoy_factory) -> harness.Envoy:
    return envoy_factory("dpop", plugin=plugin({"max_age": "60s",
                                                "algorithms": list(DEFAULT_ALGS)}))


@pytest.fixture(scope="module")
def required_envoy(envoy_factory) -> harness.Envoy:
    return envoy_factory("dpop_required", plugin=plugin({"required": True}))


@pytest.fixture(scope="module")
def nonce_envoy(envoy_factory) -> harness.Envoy:
    cfg = plugin({"nonce": {"secret": {"environment_variable": NONCE_ENV},
                            "previous_secret": PREVIOUS_SECRET, "lifetime": "300s"}})
    return envoy_factory("dpop_nonce", plugin=cfg, env={NONCE_ENV: NONCE_SECRET})


# ---------------------------------------------------------------------------
# expected challenges and counters
# ---------------------------------------------------------------------------

BEARER_BARE = f'Bearer resource_metadata="{METADATA_URL}"'
DPOP_BARE = f'DPoP algs="{ALGS}", resource_metadata="{METADATA_URL}"'


def dpop_error(code: str, description: str) -> str:
    return (f'DPoP algs="{ALGS}", error="{code}", error_description="{description}", '
            f'resource_metadata="{METADATA_URL}"')


def bearer_error(description: str) -> str:
    return (f'Bearer error="invalid_token", error_description="{description}", '
            f'resource_metadata="{METADATA_URL}"')


class Counters:
    """certbound's counters of one Envoy, before and after."""

    def __init__(self, envoy: harness.Envoy) -> None:
        self.envoy = envoy
        self.before = self.read()

    def read(self) -> dict[str, int]:
        return {k[len(STATS):]: v for k, v in self.envoy.stats("^" + STATS.replace(".", "\\.")).items()}

    def delta(self) -> dict[str, int]:
        after = self.read()
        return {k: v - self.before.get(k, 0) for k, v in after.items()
                if v != self.before.get(k, 0) and not k.startswith("cache_")}


def denied(reason: str, provider: bool = True) -> dict[str, int]:
    out = {"denied": 1, f"denied.{reason}": 1}
    if provider:
        out["provider.idp.denied"] = 1
    return out


ACCEPTED = {"allowed": 1, "provider.idp.allowed": 1, "dpop.accepted": 1}


def assert_refused(r: Reply, challenges: list[str], *, status: int = 401,
                   seen_before: int = 0) -> None:
    """Refused, nothing reached the backend (``seen_before``: requests to
    the same path that were accepted earlier)."""
    assert r.status == status, r
    assert r.challenges == challenges, r
    assert len(r.upstream) == seen_before, f"a refused request reached the backend: {r!r}"


def assert_proof_refused(r: Reply, code: str, description: str, seen_before: int = 0) -> None:
    """A failed DPoP check: the error on the DPoP challenge, Bearer bare."""
    assert_refused(r, [BEARER_BARE, dpop_error(code, description)], seen_before=seen_before)


def assert_accepted(r: Reply, token: str, scheme: str = "DPoP") -> None:
    assert r.status == 200, r
    assert len(r.upstream) == 1, r
    assert r.upstream[0]["headers"].get("authorization") == f"{scheme} {token}", r.upstream


# ---------------------------------------------------------------------------
# a DPoP client
# ---------------------------------------------------------------------------


class Client:
    """Calls one Envoy with a DPoP-bound token and a fresh proof per request."""

    def __init__(self, envoy: harness.Envoy, pki: harness.Pki, backend: harness.Backend,
                 key: DpopKey, token: str) -> None:
        self.envoy, self.pki, self.backend = envoy, pki, backend
        self.key, self.token = key, token

    def send(self, path: str, *, proofs: list[str] | None = None, method: str = "GET",
             scheme: str = "DPoP", token: str | None = None,
             cert: harness.Client | None = None, extra: list[tuple[str, str]] = ()
             ) -> Reply:
        headers = [("authorization", f"{scheme} {token or self.token}")]
        headers += [("dpop", p) for p in (proofs or [])]
        headers += list(extra)
        return send(self.envoy, self.backend, self.pki.ca, path, method=method, client=cert,
                    headers=headers)

    def proof(self, path: str, method: str = "GET", **kw: Any) -> str:
        kw.setdefault("token", self.token)
        return proof(self.key, method, ORIGIN + path.split("?")[0], **kw)

    def call(self, path: str | None = None, method: str = "GET", **kw: Any) -> Reply:
        path = path or new_path()
        return self.send(path, proofs=[self.proof(path, method)], method=method, **kw)


def bound_token(pki: harness.Pki, key: DpopKey, **cnf: str) -> str:
    return pki.token(None, cnf={"jkt": key.jkt, **cnf})


@pytest.fixture(scope="module")
def es256_key() -> DpopKey:
    return DpopKey("ES256")


@pytest.fixture
def client(dpop_envoy, pki, backend, es256_key) -> Client:
    return Client(dpop_envoy, pki, backend, es256_key, bound_token(pki, es256_key))


# ---------------------------------------------------------------------------
# accepted
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "PS256", "EdDSA", "Ed25519"])
def test_dpop_bound_token_with_a_fresh_proof_is_accepted(alg, dpop_envoy, pki, backend):
    key = DpopKey(alg)
    c = Client(dpop_envoy, pki, backend, key, bound_token(pki, key))
    counters = Counters(dpop_envoy)
    r = c.call()
    assert_accepted(r, c.token)
    assert counters.delta() == ACCEPTED
    # a new proof per request: the same token again is fine
    assert_accepted(c.call(), c.token)


def test_proof_htu_has_no_query_and_post_is_checked_too(client):
    path = new_path() + "?page=2&sort=asc"
    assert_accepted(client.send(path, proofs=[client.proof(path)]), client.token)
    assert_accepted(client.call(method="POST"), client.token)


def test_no_token_challenges_both_schemes(dpop_envoy, pki, backend):
    counters = Counters(dpop_envoy)
    r = send(dpop_envoy, backend, pki.ca, new_path(), client=pki.client_a)
    assert_refused(r, [BEARER_BARE, DPOP_BARE])
    assert counters.delta() == denied("missing_token", provider=False)


# ---------------------------------------------------------------------------
# refused proofs
# ---------------------------------------------------------------------------

ProofMaker = Callable[[Client, str], list[str]]

OTHER_KEY = DpopKey("ES256")

# name -> (the DPoP headers for a GET of path, reason, error code, description)
REFUSED: dict[str, tuple[ProofMaker, str, str, str]] = {
    "another_method": (
        lambda c, path: [c.proof(path, "POST")],
        "dpop_method_mismatch", "invalid_dpop_proof",
        "DPoP proof htm does not match the request method"),
    "another_uri": (
        lambda c, path: [c.proof(path + "x")],
        "dpop_uri_mismatch", "invalid_dpop_proof", "DPoP proof htu does not match the request URI"),
    "another_origin": (
        lambda c, path: [proof(c.key, "GET", RESOURCE + path, token=c.token)],
        "dpop_uri_mismatch", "invalid_dpop_proof", "DPoP proof htu does not match the request URI"),
    "stale": (
        # max_age 60 s + clock_skew_seconds 60 s: 5 minutes is too old
        lambda c, path: [c.proof(path, iat=int(time.time()) - 300)],
        "dpop_stale", "invalid_dpop_proof", "DPoP proof is too old"),
    "from_the_future": (
        lambda c, path: [c.proof(path, iat=int(time.time()) + 300)],
        "dpop_issued_in_future", "invalid_dpop_proof", "DPoP proof iat is in the future"),
    "private_key_in_jwk": (
        lambda c, path: [c.proof(path, header={"jwk": c.key.private_jwk()})],
        "dpop_private_key", "invalid_dpop_proof", "DPoP proof jwk holds a private key"),
    "hs256": (
        lambda c, path: [hs256_proof("GET", ORIGIN + path, c.token)],
        "dpop_unsupported_algorithm", "invalid_dpop_proof", "DPoP proof algorithm not supported"),
    "missing_typ": (
        lambda c, path: [c.proof(path, header={"typ": None})],
        "dpop_wrong_type", "invalid_dpop_proof", "DPoP proof typ is not dpop+jwt"),
    "typ_jwt": (
        lambda c, path: [c.proof(path, header={"typ": "JWT"})],
        "dpop_wrong_type", "invalid_dpop_proof", "DPoP proof typ is not dpop+jwt"),
    "two_dpop_headers": (
        lambda c, path: [c.proof(path), c.proof(path)],
        "dpop_multiple", "invalid_dpop_proof", "more than one DPoP proof"),
    "wrong_ath": (
        lambda c, path: [c.proof(path, token=c.token + "x")],
        "dpop_ath_mismatch", "invalid_dpop_proof",
        "DPoP proof ath does not match the access token"),
    "missing_ath": (
        lambda c, path: [c.proof(path, token=None)],
        "dpop_missing_ath", "invalid_dpop_proof", "DPoP proof has no ath"),
    "bad_signature": (
        # the jwk is the bound key, the signature another key's
        lambda c, path: [proof(OTHER_KEY, "GET", ORIGIN + path, token=c.token,
                               header={"jwk": c.key.public_jwk()})],
        "dpop_bad_signature", "invalid_dpop_proof", "DPoP proof signature verification failed"),
    "jkt_mismatch": (
        # a valid proof, by another key than the token's cnf.jkt
        lambda c, path: [proof(OTHER_KEY, "GET", ORIGIN + path, token=c.token)],
        "dpop_key_mismatch", "invalid_token", "DPoP key binding mismatch"),
    "no_proof": (
        lambda c, path: [],
        "dpop_missing", "invalid_dpop_proof", "DPoP proof required"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_proof(case, client, dpop_envoy):
    make, reason, code, description = REFUSED[case]
    path = new_path()
    counters = Counters(dpop_envoy)
    r = client.send(path, proofs=make(client, path))
    assert_proof_refused(r, code, description)
    assert counters.delta() == denied(reason)


def test_replayed_proof_is_refused(client, dpop_envoy, pki):
    path = new_path()
    p = client.proof(path)
    assert_accepted(client.send(path, proofs=[p]), client.token)
    counters = Counters(dpop_envoy)
    r = client.send(path, proofs=[p])
    assert_proof_refused(r, "invalid_dpop_proof", "DPoP proof replayed", seen_before=1)
    assert counters.delta() == denied("dpop_replayed")
    # on another connection, with a client certificate: still the same proof
    r = client.send(path, proofs=[p], cert=pki.client_a)
    assert_proof_refused(r, "invalid_dpop_proof", "DPoP proof replayed", seen_before=1)


def test_token_replayed_by_a_client_without_the_key(client, dpop_envoy, pki, backend):
    """A stolen DPoP-bound token: without the key no proof the filter
    accepts can be made, whatever the thief tries."""
    path = new_path()
    captured = client.proof(path)
    assert_accepted(client.send(path, proofs=[captured]), client.token)
    thief = Client(dpop_envoy, pki, backend, DpopKey("ES256"), client.token)
    counters = Counters(dpop_envoy)
    # its own key
    assert_proof_refused(thief.call(), "invalid_token", "DPoP key binding mismatch")
    # the captured proof, replayed
    assert_proof_refused(thief.send(path, proofs=[captured]), "invalid_dpop_proof",
                         "DPoP proof replayed", seen_before=1)
    # the captured proof for another URI
    assert_proof_refused(thief.send(new_path(), proofs=[captured]), "invalid_dpop_proof",
                         "DPoP proof htu does not match the request URI")
    # no proof at all, and as a bearer token
    assert_proof_refused(thief.send(new_path()), "invalid_dpop_proof", "DPoP proof required")
    assert_proof_refused(thief.send(new_path(), scheme="Bearer"), "invalid_token",
                         "DPoP-bound token sent with the Bearer scheme")
    assert counters.delta() == {
        "denied": 5, "provider.idp.denied": 5, "denied.dpop_key_mismatch": 1,
        "denied.dpop_replayed": 1, "denied.dpop_uri_mismatch": 1, "denied.dpop_missing": 1,
        "denied.dpop_bearer_scheme": 1,
    }


# ---------------------------------------------------------------------------
# schemes
# ---------------------------------------------------------------------------


def test_bearer_scheme_with_a_dpop_bound_token(client, dpop_envoy):
    """RFC 9449 §7.2: refused, even with a valid proof alongside."""
    path = new_path()
    counters = Counters(dpop_envoy)
    r = client.send(path, scheme="Bearer", proofs=[client.proof(path)])
    assert_proof_refused(r, "invalid_token", "DPoP-bound token sent with the Bearer scheme")
    assert counters.delta() == denied("dpop_bearer_scheme")


@pytest.mark.parametrize("bound_to_cert", [False, True], ids=["unbound", "x5t_bound"])
def test_dpop_scheme_with_a_token_that_is_not_dpop_bound(bound_to_cert, dpop_envoy, pki,
                                                         backend, es256_key):
    token = pki.token(pki.client_a if bound_to_cert else None)
    c = Client(dpop_envoy, pki, backend, es256_key, token)
    counters = Counters(dpop_envoy)
    r = c.call(cert=pki.client_a)
    assert_proof_refused(r, "invalid_token", "access token is not DPoP-bound")
    assert counters.delta() == denied("dpop_unbound_token")


def test_certificate_bound_tokens_still_work_with_a_dpop_block(dpop_envoy, pki, backend):
    """certificate_binding required: bound by a certificate (Bearer) or by
    DPoP; a token bound by neither is refused, with both challenges."""
    token = pki.token(pki.client_a)
    r = send(dpop_envoy, backend, pki.ca, new_path(), client=pki.client_a,
             headers=[("authorization", f"Bearer {token}")])
    assert_accepted(r, token, scheme="Bearer")
    r = send(dpop_envoy, backend, pki.ca, new_path(), client=pki.client_b,
             headers=[("authorization", f"Bearer {token}")])
    assert_refused(r, [bearer_error("certificate binding mismatch"), DPOP_BARE])
    counters = Counters(dpop_envoy)
    r = send(dpop_envoy, backend, pki.ca, new_path(), client=pki.client_a,
             headers=[("authorization", f"Bearer {pki.token(None)}")])
    assert_refused(r, [bearer_error("token is not certificate-bound"), DPOP_BARE])
    assert counters.delta() == denied("missing_binding")


class TestBothBindings:
    """A token with both cnf members needs the certificate and the proof."""

    @pytest.fixture
    def both(self, dpop_envoy, pki, backend, es256_key) -> Client:
        token = bound_token(pki, es256_key, **{"x5t#S256": pki.client_a.thumbprint})
        return Client(dpop_envoy, pki, backend, es256_key, token)

    def test_certificate_and_proof(self, both, pki, dpop_envoy):
        counters = Counters(dpop_envoy)
        assert_accepted(both.call(cert=pki.client_a), both.token)
        assert counters.delta() == ACCEPTED

    def test_proof_without_the_certificate(self, both, pki, dpop_envoy):
        counters = Counters(dpop_envoy)
        r = both.call(cert=None)
        assert_refused(r, [BEARER_BARE, dpop_error("invalid_token",
                                                   "client certificate required")])
        assert counters.delta() == denied("no_client_certificate")
        r = both.call(cert=pki.client_b)
        assert_refused(r, [BEARER_BARE, dpop_error("invalid_token",
                                                   "certificate binding mismatch")])

    def test_certificate_without_a_proof(self, both, pki, dpop_envoy):
        counters = Counters(dpop_envoy)
        r = both.send(new_path(), cert=pki.client_a)
        assert_proof_refused(r, "invalid_dpop_proof", "DPoP proof required")
        r = both.send(new_path(), cert=pki.client_a, scheme="Bearer")
        assert_proof_refused(r, "invalid_token", "DPoP-bound token sent with the Bearer scheme")
        assert counters.delta() == {"denied": 2, "provider.idp.denied": 2,
                                    "denied.dpop_missing": 1, "denied.dpop_bearer_scheme": 1}


# ---------------------------------------------------------------------------
# required: true
# ---------------------------------------------------------------------------


def test_required_refuses_a_certificate_bound_token(required_envoy, pki, backend):
    counters = Counters(required_envoy)
    token = pki.token(pki.client_a)
    r = send(required_envoy, backend, pki.ca, new_path(), client=pki.client_a,
             headers=[("authorization", f"Bearer {token}")])
    # only DPoP is accepted: no Bearer challenge
    assert_refused(r, [dpop_error("invalid_token", "access token is not DPoP-bound")])
    assert counters.delta() == denied("dpop_unbound_token")
    r = send(required_envoy, backend, pki.ca, new_path(), client=pki.client_a)
    assert_refused(r, [DPOP_BARE])


def test_required_accepts_a_dpop_bound_token(required_envoy, pki, backend, es256_key):
    c = Client(required_envoy, pki, backend, es256_key, bound_token(pki, es256_key))
    assert_accepted(c.call(), c.token)


# ---------------------------------------------------------------------------
# server nonces
# ---------------------------------------------------------------------------


def test_nonce_flow(nonce_envoy, pki, backend, es256_key):
    c = Client(nonce_envoy, pki, backend, es256_key, bound_token(pki, es256_key))
    path = new_path()
    counters = Counters(nonce_envoy)
    t0 = int(time.time())
    r = c.send(path, proofs=[c.proof(path)])
    t1 = int(time.time())
    assert_proof_refused(r, "use_dpop_nonce", "DPoP proof nonce required")
    issued = r.header("dpop-nonce")
    assert issued, r
    assert len(r.all("dpop-nonce")) == 1, r
    # the filter's nonce, computed independently: its window, its secret
    assert issued in {nonce(NONCE_SECRET.encode(), t) for t in (t0, t1)}, issued
    assert counters.delta() == {**denied("dpop_nonce_required"), "dpop.nonce_issued": 1}
    # the retry carries it
    counters = Counters(nonce_envoy)
    assert_accepted(c.send(path, proofs=[c.proof(path, nonce=issued)]), c.token)
    assert counters.delta() == ACCEPTED


def test_nonce_of_the_previous_secret_is_accepted(nonce_envoy, pki, backend, es256_key):
    c = Client(nonce_envoy, pki, backend, es256_key, bound_token(pki, es256_key))
    path = new_path()
    old = nonce(PREVIOUS_SECRET.encode())
    assert_accepted(c.send(path, proofs=[c.proof(path, nonce=old)]), c.token)


def test_unknown_or_expired_nonce_gets_a_new_one(nonce_envoy, pki, backend, es256_key):
    c = Client(nonce_envoy, pki, backend, es256_key, bound_token(pki, es256_key))
    for bad in (nonce(b"a secret this filter does not know, 32+ bytes"),
                nonce(NONCE_SECRET.encode(), int(time.time()) - 600), "not-a-nonce"):
        path = new_path()
        counters = Counters(nonce_envoy)
        r = c.send(path, proofs=[c.proof(path, nonce=bad)])
        assert_proof_refused(r, "use_dpop_nonce", "DPoP proof nonce invalid or expired")
        assert r.header("dpop-nonce") not in (None, bad), r
        assert counters.delta() == {**denied("dpop_nonce_invalid"), "dpop.nonce_issued": 1}


def test_no_nonce_header_on_other_refusals(nonce_envoy, pki, backend, es256_key):
    c = Client(nonce_envoy, pki, backend, es256_key, bound_token(pki, es256_key))
    path = new_path()
    good = nonce(NONCE_SECRET.encode())
    r = c.send(path, proofs=[c.proof(path, "POST", nonce=good)])
    assert_proof_refused(r, "invalid_dpop_proof",
                         "DPoP proof htm does not match the request method")
    assert r.header("dpop-nonce") is None, r


def test_fresh_nonce_needs_no_new_one(nonce_envoy, pki, backend, es256_key):
    c = Client(nonce_envoy, pki, backend, es256_key, bound_token(pki, es256_key))
    path = new_path()
    r = c.send(path, proofs=[c.proof(path, nonce=nonce(NONCE_SECRET.encode()))])
    assert_accepted(r, c.token)
    assert r.header("dpop-nonce") is None, r


def test_aging_nonce_is_refreshed_on_success(nonce_envoy, pki, backend, es256_key):
    """lifetime 300 s: a nonce 160 s old is still accepted, and the answer
    carries the next one, so the client never runs into use_dpop_nonce."""
    c = Client(nonce_envoy, pki, backend, es256_key, bound_token(pki, es256_key))
    path = new_path()
    aging = nonce(NONCE_SECRET.encode(), int(time.time()) - 160)
    r = c.send(path, proofs=[c.proof(path, nonce=aging)])
    assert_accepted(r, c.token)
    fresh = r.header("dpop-nonce")
    assert fresh is not None and fresh != aging, r


# ---------------------------------------------------------------------------
# RFC 9728 protected-resource metadata
# ---------------------------------------------------------------------------


def expected_metadata(required: bool) -> dict[str, Any]:
    return {
        "resource": RESOURCE,
        "authorization_servers": [harness.demo.ISSUER],
        "bearer_methods_supported": ["header"],
        "tls_client_certificate_bound_access_tokens": not required,
        "dpop_bound_access_tokens_required": required,
        "dpop_signing_alg_values_supported": list(DEFAULT_ALGS),
        "scopes_supported": SCOPES,
        "resource_name": RESOURCE_NAME,
    }


@pytest.mark.parametrize("required", [False, True], ids=["dpop", "dpop_required"])
def test_metadata_document(required, request, pki, backend):
    envoy = request.getfixturevalue("required_envoy" if required else "dpop_envoy")
    counters = Counters(envoy)
    # no token, no client certificate: the document is public
    r = send(envoy, backend, pki.ca, METADATA_PATH)
    assert r.status == 200, r
    assert r.header("content-type") == "application/json", r
    assert r.upstream == [], "the filter answers the metadata itself"
    assert r.json() == expected_metadata(required)
    assert counters.delta() == {}
    r = send(envoy, backend, pki.ca, METADATA_PATH + "?x=1", method="HEAD")
    assert r.status == 200 and r.body == b"", r
    # another method is an API request like any other
    r = send(envoy, backend, pki.ca, METADATA_PATH, method="POST")
    assert r.status == 401, r


def test_challenges_name_the_metadata(dpop_envoy, pki, backend):
    r = send(dpop_envoy, backend, pki.ca, new_path(), client=pki.client_a,
             headers=[("authorization", f"Bearer {pki.token(pki.client_a, expires_in=-3600)}")])
    assert_refused(r, [bearer_error("token expired"), DPOP_BARE])
    for c in r.challenges:
        assert f'resource_metadata="{METADATA_URL}"' in c, c


# ---------------------------------------------------------------------------
# no dpop block: as before
# ---------------------------------------------------------------------------


def test_without_a_dpop_block_a_jkt_only_token_is_not_bound(envoy_required, pki, backend,
                                                            es256_key):
    token = bound_token(pki, es256_key)
    counters = Counters(envoy_required)
    r = send(envoy_required, backend, pki.ca, new_path(), client=pki.client_a,
             headers=[("authorization", f"Bearer {token}")])
    assert_refused(r, ['Bearer error="invalid_token", '
                       'error_description="token is not certificate-bound"'])
    assert counters.delta() == denied("missing_binding")
    # the DPoP scheme is no token location there, a proof changes nothing
    path = new_path()
    r = send(envoy_required, backend, pki.ca, path, client=pki.client_a,
             headers=[("authorization", f"DPoP {token}"),
                      ("dpop", proof(es256_key, "GET", ORIGIN + path, token=token))])
    assert_refused(r, ["Bearer"])
    assert not any("dpop" in name for name in Counters(envoy_required).read()), \
        "no DPoP stats without a dpop block"
    # the metadata path is an API path like any other
    r = send(envoy_required, backend, pki.ca, METADATA_PATH, client=pki.client_a)
    assert_refused(r, ["Bearer"])


def test_envoy_logs_carry_no_proof_or_token(dpop_envoy, client):
    path = new_path()
    p = client.proof(path, "POST")
    client.send(path, proofs=[p])
    log = dpop_envoy.log_text()
    assert p not in log and client.token not in log


@pytest.mark.parametrize("jkt", ["not-a-thumbprint", 5], ids=["short", "number"])
def test_malformed_jkt_beside_x5t(jkt, envoy_required, dpop_envoy, pki, backend):
    """Without a dpop block only x5t#S256 counts; under one a cnf.jkt that
    is no thumbprint fails closed."""
    token = pki.token(None, cnf={"x5t#S256": pki.client_a.thumbprint, "jkt": jkt})
    auth = [("authorization", f"Bearer {token}")]
    r = send(envoy_required, backend, pki.ca, new_path(), client=pki.client_a, headers=auth)
    assert_accepted(r, token, scheme="Bearer")
    counters = Counters(dpop_envoy)
    r = send(dpop_envoy, backend, pki.ca, new_path(), client=pki.client_a, headers=auth)
    assert r.status == 401 and r.upstream == [], r
    # (the description names x5t#S256 whichever cnf member is malformed)
    bearer, dpop = r.challenges
    assert bearer.startswith('Bearer error="invalid_token", error_description="malformed '), r
    assert dpop == DPOP_BARE, r
    assert counters.delta() == denied("missing_binding")
