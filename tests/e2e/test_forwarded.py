"""End to end: the client certificate forwarded by a TLS-terminating
proxy (``client_certificate`` with ``source: xfcc | header``), behind a real
trust boundary, in real Envoys 1.40.

Topology (everything on loopback; the echo backend shows what arrived)::

    client --mTLS--> front Envoy (no wasm; XFCC: SANITIZE_SET, cert + uri)
                       /      --TLS from 127.0.0.1-->               back-addr --> echo
                       /san/  --mTLS as spiffe://.../front-proxy--> back-san  --> echo
                       /raw/  -------------------------------------------------> echo
    attacker (127.0.0.3, or 127.0.0.1 with another cert) ---> back-addr / back-san / back-hdr
    trusted hop "nginx" (this process, 127.0.0.1) ----------> back-hdr --> echo

The back Envoys are the shipped envoy.yaml with ports and plugin JSON
rewritten and, for XFCC, ``forward_client_cert_details: ALWAYS_FORWARD_ONLY``
(Envoy's default SANITIZE would delete the header before the filter sees
it; ALWAYS_FORWARD_ONLY hands it to the filter from *anyone*, so what is
tested here is the filter's own trust boundary, not Envoy's).

Why these are real trust boundaries although every process shares one host:

* ``addr``: ``trusted_proxies: ["127.0.0.1/32"]``. The front connects from
  127.0.0.1 (its cluster binds that source address explicitly); the attacker's
  socket is bound to 127.0.0.3. Linux routes all of 127.0.0.0/8 to ``lo``, so
  127.0.0.3 is a distinct TCP peer address, and that is what Envoy reports.
  A positive control sends the very same forged request from 127.0.0.1 and
  is accepted: the address alone makes the difference.
* ``san``: ``trusted_peer_uri_sans: ["spiffe://certbound.test/front-proxy"]``.
  The front proves that identity with a client certificate (session CA) on
  its mTLS connection to the back; attackers connect from 127.0.0.1 too —
  the same address as the front — with other certificates or none.
* ``hdr`` (nginx / RFC 9440 style, the "trusted hop" is this test process on
  127.0.0.1): ``trusted_proxies`` again, with ``use_remote_address: true``
  on its connection manager (see test_x_forwarded_for_* below for why).
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse

import pytest

import harness
from harness import demo
from support_policy import (  # noqa: F401 (echo, fleet: shared fixtures)
    echo, fleet,
    Stats, assert_invalid_token, assert_passed, back_config, can_bind,
    cert_der, front_config, issue_client_cert, rfc9440, send, unique, url_encoded_pem, xfcc_naming,
)

TRUSTED = "127.0.0.1"
ATTACKER = "127.0.0.3"
FRONT_SAN = "spiffe://certbound.test/front-proxy"
RFC_ISSUER = "https://rfc9440.example.com"
XFCC = "x-forwarded-client-cert"
CACHE = ("certbound.cache_hit", "certbound.cache_miss")
UNTRUSTED = "certbound.untrusted_certificate_header"

from_attacker_address = pytest.mark.skipif(
    not can_bind(ATTACKER), reason=f"{ATTACKER} is not a local address on this host")


def shipped_idp() -> dict:
    return harness.plugin_json(harness.load_shipped_config())["providers"]["idp"]


def plugins() -> dict[str, dict]:
    idp = shipped_idp()  # forward: true, binding required, CERTBOUND_JWKS
    return {
        "addr": {"providers": {"idp": idp}, "client_certificate": {
            "source": "xfcc", "trusted_proxies": [f"{TRUSTED}/32"]}},
        "san": {"providers": {"idp": idp}, "client_certificate": {
            "source": "xfcc", "trusted_peer_uri_sans": [FRONT_SAN]}},
        "hdr": {
            "providers": {
                "idp": idp,
                # per-provider override: RFC 9440 Client-Cert, kept upstream
                "rfc": {**idp, "issuer": RFC_ISSUER, "client_certificate": {
                    "source": "header", "name": "client-cert", "encoding": "rfc9440",
                    "trusted_proxies": [f"{TRUSTED}/32"], "forward_certificate_header": True}},
            },
            # nginx: proxy_set_header X-SSL-Cert $ssl_client_escaped_cert;
            "client_certificate": {
                "source": "header", "name": "x-ssl-cert", "encoding": "url_encoded_pem",
                "trusted_proxies": [f"{TRUSTED}/32"]},
        },
    }


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def front_cert(pki):
    return issue_client_cert(pki, "front-proxy", uri_sans=[FRONT_SAN])


@pytest.fixture(scope="module")
def intruder(pki):
    """Same CA, but another workload's URI SAN."""
    return issue_client_cert(pki, "intruder", uri_sans=["spiffe://certbound.test/intruder"])


@pytest.fixture(scope="module")
def envoys(fleet, echo, pki, front_cert):
    p = plugins()
    backs = fleet.start({
        "back-addr": (back_config(echo.port, p["addr"], xfcc="ALWAYS_FORWARD_ONLY"), pki.jwks_text),
        "back-san": (back_config(echo.port, p["san"], xfcc="ALWAYS_FORWARD_ONLY"), pki.jwks_text),
        "back-hdr": (back_config(echo.port, p["hdr"], use_remote_address=True), pki.jwks_text),
    })
    front = front_config(pki, echo.port, [
        ("/raw/", None, None),
        ("/san/", backs["back-san"].port, front_cert),
        ("/", backs["back-addr"].port, None),
    ])
    return {**backs, **fleet.start({"front": (front, None)})}


@pytest.fixture
def via_front(envoys, echo, pki):
    def _send(prefix: str, **kw):
        return send(envoys["front"].port, echo, pki.ca, unique(prefix), **kw)
    return _send


@pytest.fixture
def direct(envoys, echo, pki):
    """direct(back_name, client=..., token=..., headers=..., source=...)."""
    def _send(name: str, **kw):
        kw.setdefault("source", TRUSTED)
        return send(envoys[name].port, echo, pki.ca, unique("/direct"), **kw)
    return _send


def stats_of(envoys, name: str) -> Stats:
    return Stats(envoys[name])


# ---------------------------------------------------------------------------
# the front Envoy's XFCC, as it really is
# ---------------------------------------------------------------------------


def test_front_envoy_writes_url_encoded_pem_in_quotes(via_front, pki):
    a = pki.client_a
    # the client's own (forged) XFCC is replaced, not appended to (SANITIZE_SET)
    r = via_front("/raw", client=a, headers={XFCC: xfcc_naming(pki.client_b)})
    xfcc = assert_passed(r)[XFCC]
    m = re.fullmatch(r'Hash=([0-9a-f]{64});Cert="([^"]+)";URI=', xfcc)
    assert m, f"unexpected XFCC shape from Envoy 1.40: {xfcc!r}"
    assert m[1] == hashlib.sha256(cert_der(a)).hexdigest()
    assert "%0A" in m[2] and "-----BEGIN%20CERTIFICATE-----" in m[2], m[2][:60]
    pem = urllib.parse.unquote(m[2]).encode()
    assert demo.thumbprint(pem) == a.thumbprint
    # no client certificate: no XFCC at all, a forged one included
    r = via_front("/raw", client=None, headers={XFCC: xfcc_naming(pki.client_b)})
    assert XFCC not in assert_passed(r)


# ---------------------------------------------------------------------------
# through the front, both trust modes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/api", "/san"], ids=["trusted_proxies", "trusted_peer_uri_sans"])
def test_bound_token_through_the_front_is_accepted(via_front, pki, route):
    t = pki.token(pki.client_a)
    seen = assert_passed(via_front(route, client=pki.client_a, token=t))
    assert seen.get("authorization") == f"Bearer {t}", seen
    assert XFCC not in seen, "the forwarded certificate header must be removed upstream"


@pytest.mark.parametrize("route", ["/api", "/san"], ids=["trusted_proxies", "trusted_peer_uri_sans"])
def test_token_bound_to_another_certificate_through_the_front_is_rejected(via_front, pki, route):
    assert_invalid_token(via_front(route, client=pki.client_b, token=pki.token(pki.client_a)),
                         "certificate binding mismatch")
    assert_invalid_token(via_front(route, client=pki.client_a, token=pki.token(pki.client_b)),
                         "certificate binding mismatch")


@pytest.mark.parametrize("route", ["/api", "/san"], ids=["trusted_proxies", "trusted_peer_uri_sans"])
def test_client_without_certificate_through_the_front_is_rejected(via_front, pki, route):
    """The front drops the client's forged XFCC; the back has no certificate."""
    r = via_front(route, client=None, token=pki.token(pki.client_a),
                  headers={XFCC: xfcc_naming(pki.client_a)})
    assert_invalid_token(r, "client certificate required")


# ---------------------------------------------------------------------------
# attackers connecting to the back Envoys directly
# ---------------------------------------------------------------------------


def _forged(pki, victim=None) -> dict:
    """A stolen token of the victim (client-a) and an XFCC naming its certificate."""
    victim = victim or pki.client_a
    return {"token": pki.token(victim), "headers": {XFCC: xfcc_naming(victim)}}


def _untrusted_denial(reason: str = "no_client_certificate") -> dict[str, int]:
    return {UNTRUSTED: 1, "certbound.denied": 1, f"certbound.denied.{reason}": 1,
            "certbound.provider.idp.denied": 1}


@from_attacker_address
@pytest.mark.parametrize("own_cert", ["client_b", None], ids=["attacker-cert", "no-cert"])
def test_forged_xfcc_from_an_untrusted_address_is_ignored(direct, envoys, pki, own_cert):
    stats = stats_of(envoys, "back-addr")
    before = stats.read()
    r = direct("back-addr", source=ATTACKER,
               client=getattr(pki, own_cert) if own_cert else None, **_forged(pki))
    assert_invalid_token(r, "client certificate required")
    stats.expect(before, _untrusted_denial(), ignore=CACHE)


def test_the_same_forged_xfcc_from_the_trusted_address_is_believed(direct, envoys, pki):
    """Positive control for the test above: only the peer address differs."""
    stats = stats_of(envoys, "back-addr")
    before = stats.read()
    assert_passed(direct("back-addr", source=TRUSTED, client=pki.client_b, **_forged(pki)))
    stats.expect(before, {"certbound.allowed": 1, "certbound.provider.idp.allowed": 1},
                 ignore=CACHE)


def test_xfcc_source_ignores_the_connection_certificate(direct, pki):
    """With source xfcc, the TLS connection's own certificate is not a fallback."""
    r = direct("back-addr", client=pki.client_a, token=pki.token(pki.client_a))
    assert_invalid_token(r, "client certificate required")


@from_attacker_address
def test_x_forwarded_for_cannot_fake_a_trusted_address_with_shipped_hcm(direct, pki):
    kw = _forged(pki)
    kw["headers"]["x-forwarded-for"] = TRUSTED
    assert_invalid_token(direct("back-addr", source=ATTACKER, client=pki.client_b, **kw),
                         "client certificate required")


@from_attacker_address
def test_x_forwarded_for_cannot_fake_a_trusted_address_with_use_remote_address(direct, envoys, pki):
    """Same attack against the back Envoy whose connection manager has
    use_remote_address: true: source.address is the TCP peer."""
    stats = stats_of(envoys, "back-hdr")
    before = stats.read()
    r = direct("back-hdr", source=ATTACKER, token=pki.token(pki.client_a),
               headers={"x-ssl-cert": url_encoded_pem(pki.client_a), "x-forwarded-for": TRUSTED})
    assert_invalid_token(r, "client certificate required")
    stats.expect(before, _untrusted_denial(), ignore=CACHE)


@pytest.mark.parametrize("who", ["client_b", "intruder", None],
                         ids=["no-uri-san", "other-uri-san", "no-cert"])
def test_forged_xfcc_from_a_peer_without_the_trusted_uri_san_is_ignored(
        direct, envoys, pki, intruder, who):
    """From 127.0.0.1 — the front's own address — but not the front's identity."""
    client = {"client_b": pki.client_b, "intruder": intruder, None: None}[who]
    stats = stats_of(envoys, "back-san")
    before = stats.read()
    assert_invalid_token(direct("back-san", source=TRUSTED, client=client, **_forged(pki)),
                         "client certificate required")
    stats.expect(before, _untrusted_denial(), ignore=CACHE)


def test_the_front_identity_is_what_the_san_back_trusts(direct, pki, front_cert):
    """Positive control: the same forged request with the front's certificate."""
    assert_passed(direct("back-san", client=front_cert, **_forged(pki)))


# ---------------------------------------------------------------------------
# header sources: nginx-style URL-encoded PEM, RFC 9440 Client-Cert
# ---------------------------------------------------------------------------


def test_url_encoded_pem_from_a_trusted_hop(direct, pki):
    t = pki.token(pki.client_a)
    seen = assert_passed(direct("back-hdr", token=t,
                                headers={"x-ssl-cert": url_encoded_pem(pki.client_a)}))
    assert "x-ssl-cert" not in seen, "the certificate header must be removed upstream"
    assert seen.get("authorization") == f"Bearer {t}"
    assert_invalid_token(direct("back-hdr", token=pki.token(pki.client_b),
                                headers={"x-ssl-cert": url_encoded_pem(pki.client_a)}),
                         "certificate binding mismatch")
    # the hop's own TLS connection is not what counts
    assert_invalid_token(direct("back-hdr", client=pki.client_a, token=t),
                         "client certificate required")


@from_attacker_address
def test_forged_url_encoded_pem_from_an_untrusted_address(direct, envoys, pki):
    stats = stats_of(envoys, "back-hdr")
    before = stats.read()
    r = direct("back-hdr", source=ATTACKER, token=pki.token(pki.client_a),
               headers={"x-ssl-cert": url_encoded_pem(pki.client_a)})
    assert_invalid_token(r, "client certificate required")
    stats.expect(before, _untrusted_denial(), ignore=CACHE)


def test_two_copies_of_the_certificate_header_are_not_believed(direct, pki):
    h = url_encoded_pem(pki.client_a)
    r = direct("back-hdr", token=pki.token(pki.client_a), headers=[("x-ssl-cert", h), ("x-ssl-cert", h)])
    assert_invalid_token(r, "client certificate required")


def test_rfc9440_client_cert_from_a_trusted_hop_is_kept_upstream(direct, pki):
    def rfc_token(client):
        return demo.mint(pki.idp_key, demo.IDP_ALG, iss=RFC_ISSUER, cert=client.cert)

    value = rfc9440(pki.client_a)
    seen = assert_passed(direct("back-hdr", token=rfc_token(pki.client_a),
                                headers={"client-cert": value, "x-ssl-cert": "junk"}))
    # forward_certificate_header: true for this provider's source ...
    assert seen.get("client-cert") == value, seen
    # ... while the top-level (stripped) source's header is removed regardless
    assert "x-ssl-cert" not in seen, seen
    assert_invalid_token(direct("back-hdr", token=rfc_token(pki.client_b),
                                headers={"client-cert": value}),
                         "certificate binding mismatch")
    # the provider override applies: x-ssl-cert is not this provider's source
    assert_invalid_token(direct("back-hdr", token=rfc_token(pki.client_a),
                                headers={"x-ssl-cert": url_encoded_pem(pki.client_a)}),
                         "client certificate required")
