"""End to end: rules, token locations, what goes upstream, scopes,
claim policy and metrics, in the real Envoy 1.40 over real mTLS.

One Envoy for the whole module: the shipped envoy.yaml with only the ports
and the plugin JSON (``POLICY`` below) rewritten. Four providers with their
own issuers:

* ``idp``     the demo IdP (key set from CERTBOUND_JWKS); tokens from
              ``Authorization: Bearer``, ``x-api-token: Token …``,
              ``?access_token=`` and the ``at`` cookie; ``forward: false``;
              claim, payload and thumbprint headers upstream;
* ``partner`` a second issuer with its own key set (inline JWKS);
              ``forward: true``;
* ``strict``  ``token_types: ["at+jwt"]``, ``max_lifetime_seconds``,
              ``algorithms: ["ES256", "EdDSA"]``;
* ``noexp``   ``require_expiration: false``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Callable

import pytest

import harness
from harness import demo
from support_policy import (  # noqa: F401 (echo, fleet: shared fixtures)
    echo, fleet,
    AUDIENCE, ISSUER, Reply, Stats, assert_invalid_token,
    assert_missing_token, assert_passed, cert_der, claims, payload_segment, send,
    sign, tamper_signature, unique,
)

PARTNER = "https://partner.example.com"
STRICT = "https://strict.example.com"
NOEXP = "https://noexp.example.com"
PARTNER_KID = "partner-1"
ENV_JWKS = {"environment_variable": "CERTBOUND_JWKS"}

# Every header the filter may write upstream (a client must never set them).
OUTPUT_HEADERS = ("x-jwt-sub", "x-org-id", "x-jwt-roles", "x-jwt-payload",
                  "x-client-thumbprint", "x-partner-sub")


def policy(partner_jwks: str) -> dict[str, Any]:
    return {
        "providers": {
            "idp": {
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "local_jwks": ENV_JWKS,
                "from_headers": [
                    {"name": "authorization", "value_prefix": "Bearer "},
                    {"name": "x-api-token", "value_prefix": "Token "},
                ],
                "from_params": ["access_token"],
                "from_cookies": ["at"],
                "forward": False,
                "claim_to_headers": [
                    {"claim_name": "sub", "header_name": "x-jwt-sub"},
                    {"claim_name": "org.id", "header_name": "x-org-id"},
                    {"claim_name": "roles", "header_name": "x-jwt-roles"},
                ],
                "forward_payload_header": "x-jwt-payload",
                "thumbprint_header": "x-client-thumbprint",
            },
            "partner": {
                "issuer": PARTNER,
                "audiences": [AUDIENCE],
                "local_jwks": {"inline_string": partner_jwks},
                "forward": True,
                "claim_to_headers": [{"claim_name": "sub", "header_name": "x-partner-sub"}],
            },
            "strict": {
                "issuer": STRICT,
                "audiences": [AUDIENCE],
                "local_jwks": ENV_JWKS,
                "token_types": ["at+jwt"],
                "max_lifetime_seconds": 600,
                "algorithms": ["ES256", "EdDSA"],
                "forward": True,
            },
            "noexp": {
                "issuer": NOEXP,
                "audiences": [AUDIENCE],
                "local_jwks": ENV_JWKS,
                "require_expiration": False,
                "forward": True,
            },
        },
        "rules": [
            {"match": {"path": "/public"}},
            {"match": {"prefix": "/public/"}},
            # first match wins: the narrower public rule is listed first ...
            {"match": {"prefix": "/first/open"}},
            {"match": {"prefix": "/first"}, "requires": {"provider_name": "idp"}},
            {"match": {"prefix": "/idp"}, "requires": {"provider_name": "idp"}},
            {"match": {"prefix": "/any"}, "requires": {"requires_any": [
                {"provider_name": "idp"}, {"provider_name": "partner"}]}},
            {"match": {"prefix": "/optional"}, "requires": {"allow_missing": {}}},
            {"match": {"prefix": "/lenient"}, "requires": {"allow_missing_or_failed": {}}},
            {"match": {"prefix": "/scoped/read"}, "requires": {"provider_name": "idp"},
             "required_scopes": ["orders:read"]},
            {"match": {"prefix": "/scoped/write"}, "requires": {"provider_name": "idp"},
             "required_scopes": ["orders:read", "orders:write"]},
            {"match": {"prefix": "/strict"}, "requires": {"provider_name": "strict"}},
            {"match": {"prefix": "/noexp"}, "requires": {"provider_name": "noexp"}},
            # ... and here the broader rule comes first, so the later exact
            # public rule for /shadow/public never applies.
            {"match": {"prefix": "/shadow"}, "requires": {"provider_name": "idp"}},
            {"match": {"path": "/shadow/public"}},
            # no catch-all: /elsewhere matches nothing and is not checked
        ],
    }


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def partner_key():
    return demo.new_signing_key("ES256")


@pytest.fixture(scope="module")
def envoy(fleet, echo, pki, partner_key):
    partner_jwks = json.dumps(demo.jwks(demo.public_jwk(partner_key, PARTNER_KID, "ES256")))
    cfg = harness.scenario_config(echo.port, plugin=policy(partner_jwks))
    return fleet.start({"policy": (cfg, pki.jwks_text)})["policy"]


@pytest.fixture(scope="module")
def stats(envoy):
    return Stats(envoy)


_A = object()  # "client-a", the default client


@pytest.fixture
def call(envoy, echo, pki) -> Callable[..., Reply]:
    """call(path, client=<client-a>, token=..., headers=..., unique=True)."""

    def _call(path: str, *, client: Any = _A, fresh: bool = True, **kw: Any) -> Reply:
        if fresh:
            base, _, query = path.partition("?")
            path = unique(base) + (f"?{query}" if query else "")
        return send(envoy.port, echo, pki.ca, path,
                    client=pki.client_a if client is _A else client, **kw)

    return _call


class Tokens:
    def __init__(self, pki, partner_key) -> None:
        self.pki = pki
        self.partner_key = partner_key

    def idp(self, cert: Any = _A, header: dict | None = None, **kw: Any) -> str:
        c = claims(cert=self.pki.client_a if cert is _A else cert, **kw)
        return sign(self.pki.idp_key, "ES256", c, {"kid": demo.IDP_KID, **(header or {})})

    def partner(self, cert: Any = _A, **kw: Any) -> str:
        kw.setdefault("iss", PARTNER)
        c = claims(cert=self.pki.client_a if cert is _A else cert, **kw)
        return sign(self.partner_key, "ES256", c, {"kid": PARTNER_KID})

    def strict(self, alg: str = "ES256", typ: str | None = "at+jwt", **kw: Any) -> str:
        kw.setdefault("iss", STRICT)
        key, kid = (self.pki.idp_key, demo.IDP_KID) if alg == "ES256" else self.pki.keys[alg]
        return sign(key, alg, claims(cert=self.pki.client_a, **kw), {"kid": kid, "typ": typ})

    def noexp(self, **kw: Any) -> str:
        kw.setdefault("iss", NOEXP)
        return self.idp(**kw)


@pytest.fixture(scope="module")
def tokens(pki, partner_key) -> Tokens:
    return Tokens(pki, partner_key)


# ---------------------------------------------------------------------------
# rules
# ---------------------------------------------------------------------------


def test_public_routes_need_no_token_nor_certificate(call):
    assert_passed(call("/public", fresh=False, client=None))  # exact path rule
    assert_passed(call("/public/x", client=None))  # prefix rule


def test_public_route_does_not_look_at_the_token(call, tokens):
    assert_passed(call("/public/x", token=tokens.idp(lifetime=-3600)))
    assert_passed(call("/public/x", headers={"authorization": "Bearer not-a-jwt"}))


def test_provider_name_route(call, tokens):
    assert_passed(call("/idp", token=tokens.idp()))
    assert_missing_token(call("/idp"))
    # a valid token of another provider does not satisfy provider_name: idp
    assert_invalid_token(call("/idp", token=tokens.partner()), "issuer not accepted")


def test_requires_any_accepts_either_provider(call, tokens):
    seen = assert_passed(call("/any", token=tokens.idp(sub="from-idp")))
    assert seen.get("x-jwt-sub") == "from-idp" and "x-partner-sub" not in seen, seen
    seen = assert_passed(call("/any", token=tokens.partner(sub="from-partner")))
    assert seen.get("x-partner-sub") == "from-partner" and "x-jwt-sub" not in seen, seen
    assert_invalid_token(call("/any", token=tokens.idp(iss="https://evil.example.com")),
                         "issuer not accepted")
    assert_missing_token(call("/any"))
    # each provider's binding still holds
    assert_invalid_token(call("/any", token=tokens.partner(cert=None)),
                         "token is not certificate-bound")


def test_each_issuer_has_its_own_key_set(call, tokens, partner_key):
    """Two issuers, two JWKS: keys are chosen by the token's issuer, never
    tried in turn. A token claiming the IdP's iss but signed by the partner's
    key fails, whichever kid it names."""
    c = claims(cert=tokens.pki.client_a)
    assert_invalid_token(call("/any", token=sign(partner_key, "ES256", c, {"kid": PARTNER_KID})),
                         "unknown signing key")
    assert_invalid_token(call("/any", token=sign(partner_key, "ES256", c, {"kid": demo.IDP_KID})),
                         "signature verification failed")


def test_allow_missing(call, tokens, pki):
    assert_passed(call("/optional"))
    assert_passed(call("/optional", client=None))
    seen = assert_passed(call("/optional", token=tokens.idp(sub="opt")))
    assert seen.get("x-jwt-sub") == "opt", seen
    # a token that is there must be valid
    assert_invalid_token(call("/optional", token=tokens.idp(lifetime=-3600)), "token expired")
    assert_invalid_token(call("/optional", token=tokens.idp(cert=pki.client_b)),
                         "certificate binding mismatch")


def test_allow_missing_or_failed(call, tokens, pki):
    spoof = {"x-jwt-sub": "admin"}
    for bad in (None, tokens.idp(lifetime=-3600), tamper_signature(tokens.idp()),
                tokens.idp(cert=pki.client_b), "not-a-jwt"):
        r = call("/lenient", headers={**spoof, **({"authorization": f"Bearer {bad}"} if bad else {})})
        seen = assert_passed(r)
        assert "x-jwt-sub" not in seen, (bad, seen)
    # a valid token still produces its headers
    seen = assert_passed(call("/lenient", token=tokens.idp(sub="lenient"), headers=spoof))
    assert seen.get("x-jwt-sub") == "lenient", seen


def test_unmatched_path_is_not_checked(call, tokens):
    """With rules and no catch-all, a path no rule matches is not checked."""
    assert_passed(call("/elsewhere", client=None))
    assert_passed(call("/elsewhere", token=tokens.idp(lifetime=-3600)))


def test_first_matching_rule_wins(call, tokens):
    assert_passed(call("/first/open/x"))  # public rule listed before /first
    assert_missing_token(call("/first/x"))
    # /shadow (requires idp) is listed before the exact public /shadow/public
    assert_missing_token(call("/shadow/public", fresh=False))
    assert_passed(call("/shadow/public", fresh=False, token=tokens.idp()))


def test_dot_segments_cannot_dodge_a_rule(call):
    """envoy.yaml normalises the path before the filter sees it."""
    assert_missing_token(call("/public/../idp/x", fresh=False))


# ---------------------------------------------------------------------------
# token locations
# ---------------------------------------------------------------------------


def test_custom_header_with_its_prefix(call, tokens):
    seen = assert_passed(call("/idp", headers={"x-api-token": f"Token {tokens.idp()}"}))
    assert "x-api-token" not in seen and "authorization" not in seen, seen
    # the prefix of a custom header is matched exactly
    assert_missing_token(call("/idp", headers={"x-api-token": f"Bearer {tokens.idp()}"}))
    assert_missing_token(call("/idp", headers={"x-api-token": f"token {tokens.idp()}"}))


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_authorization_scheme_is_case_insensitive(call, tokens, scheme):
    seen = assert_passed(call("/idp", headers={"authorization": f"{scheme} {tokens.idp()}"}))
    assert "authorization" not in seen, seen


def test_query_parameter(call, tokens):
    r = call(f"/idp/q?a=1&access_token={tokens.idp()}&b=two")
    assert_passed(r)
    base = r.path.split("?")[0]
    assert r.seen["path"] == f"{base}?a=1&b=two", r.seen  # token removed, the rest kept
    r = call(f"/idp/q?access_token={tokens.idp()}")
    assert_passed(r)
    assert r.seen["path"] == r.path.split("?")[0], r.seen


def test_cookie(call, tokens):
    seen = assert_passed(call("/idp", headers={"cookie": f"theme=dark; at={tokens.idp()}; lang=en"}))
    assert seen.get("cookie") == "theme=dark; lang=en", seen
    seen = assert_passed(call("/idp", headers={"cookie": f"at={tokens.idp()}"}))
    assert "cookie" not in seen, seen
    assert_missing_token(call("/idp", headers={"cookie": f"other={tokens.idp()}"}))


INVALID_REQUEST = ('Bearer error="invalid_request", '
                   'error_description="more than one token in the request"')


@pytest.mark.parametrize("where", ["param", "cookie", "custom-header"])
def test_two_different_tokens_are_an_invalid_request(call, tokens, where):
    t1, t2 = tokens.idp(), tokens.idp()
    headers = [("authorization", f"Bearer {t1}")]
    path = "/idp"
    if where == "param":
        path += f"?access_token={t2}"
    elif where == "cookie":
        headers.append(("cookie", f"at={t2}"))
    else:
        headers.append(("x-api-token", f"Token {t2}"))
    r = call(path, headers=headers)
    assert r.status == 400, r
    assert r.www_authenticate == INVALID_REQUEST, r
    assert r.upstream == [], r


def test_two_authorization_headers_are_refused(call, tokens):
    """Envoy's HTTP/1 codec folds the two into one `Bearer t1,Bearer t2`
    value before the filter runs; the filter splits it and refuses two
    different tokens as an invalid request (RFC 6750 §2)."""
    r = call("/idp", headers=[("authorization", f"Bearer {tokens.idp()}"),
                              ("authorization", f"Bearer {tokens.idp()}")])
    assert r.status == 400, r
    assert r.www_authenticate == INVALID_REQUEST, r
    assert r.upstream == [], r


def test_the_same_token_in_two_places_is_one_token(call, tokens):
    """RFC 6750 §2 forbids two methods, but the filter only refuses two
    *different* tokens: the same token twice is accepted."""
    t = tokens.idp()
    assert_passed(call(f"/idp?access_token={t}", token=t))


def test_forward_false_removes_every_copy_of_the_token(call, tokens):
    t = tokens.idp()
    r = call(f"/idp?access_token={t}&keep=1", token=t,
             headers={"cookie": f"at={t}; theme=dark", "x-api-token": f"Token {t}"})
    seen = assert_passed(r)
    leaked = {k: v[:40] + "..." for k, v in {**seen, "path": r.seen["path"]}.items() if t in v}
    assert not leaked, f"the token reached upstream despite forward: false: {leaked}"
    assert r.seen["path"].endswith("?keep=1") and seen.get("cookie") == "theme=dark", r.seen


# ---------------------------------------------------------------------------
# what goes upstream
# ---------------------------------------------------------------------------


def test_forward_false_removes_the_token(call, tokens):
    seen = assert_passed(call("/idp", token=tokens.idp()))
    assert "authorization" not in seen, seen


def test_forward_true_keeps_the_token(call, tokens):
    t = tokens.partner()
    seen = assert_passed(call("/any", token=t))
    assert seen.get("authorization") == f"Bearer {t}", seen


def test_claim_to_headers(call, tokens):
    t = tokens.idp(sub="alice", org={"id": "org-42", "name": "Acme"}, roles=["admin", "ops"])
    seen = assert_passed(call("/idp", token=t))
    assert seen.get("x-jwt-sub") == "alice", seen
    assert seen.get("x-org-id") == "org-42", seen  # nested claim org.id
    assert seen.get("x-jwt-roles") == "admin,ops", seen  # array joined by ','
    # absent (or object-valued) claims produce no header
    seen = assert_passed(call("/idp", token=tokens.idp(sub="bob", org="not-an-object")))
    assert seen.get("x-jwt-sub") == "bob" and "x-org-id" not in seen and "x-jwt-roles" not in seen


def test_forward_payload_header(call, tokens):
    t = tokens.idp(sub="payload-check")
    seen = assert_passed(call("/idp", token=t))
    assert seen.get("x-jwt-payload") == payload_segment(t), seen
    seg = seen["x-jwt-payload"]
    assert json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))["sub"] == "payload-check"


@pytest.mark.parametrize("who", ["client_a", "client_b"])
def test_thumbprint_header_is_the_client_certificate_x5t_s256(call, tokens, pki, who):
    client = getattr(pki, who)
    expected = demo.b64url(hashlib.sha256(cert_der(client)).digest())
    seen = assert_passed(call("/idp", client=client, token=tokens.idp(cert=client)))
    assert seen.get("x-client-thumbprint") == expected, seen


@pytest.mark.parametrize("path", ["/public/spoof", "/elsewhere", "/lenient", "/idp"])
def test_client_sent_output_headers_never_reach_upstream(call, tokens, path):
    spoof = {h: "spoofed" for h in OUTPUT_HEADERS}
    # on /idp: a valid token without org/roles claims: those stay absent
    r = call(path, headers=spoof, token=tokens.idp(sub="real") if path == "/idp" else None)
    seen = assert_passed(r)
    leaked = {h: seen[h] for h in OUTPUT_HEADERS if seen.get(h) == "spoofed"}
    assert not leaked, f"client-set headers reached upstream on {path}: {leaked}"
    if path == "/idp":
        assert seen.get("x-jwt-sub") == "real"
        assert not {"x-org-id", "x-jwt-roles", "x-partner-sub"} & set(seen), seen
    else:
        assert not set(OUTPUT_HEADERS) & set(seen), seen


# ---------------------------------------------------------------------------
# scopes
# ---------------------------------------------------------------------------


def insufficient(scope: str) -> str:
    return (f'Bearer error="insufficient_scope", error_description="insufficient scope", '
            f'scope="{scope}"')


def test_scope_string_and_scp_array(call, tokens):
    assert_passed(call("/scoped/read", token=tokens.idp(scope="profile orders:read")))
    assert_passed(call("/scoped/write", token=tokens.idp(scope="orders:write orders:read")))
    assert_passed(call("/scoped/read", token=tokens.idp(scp=["orders:read"])))
    assert_passed(call("/scoped/write", token=tokens.idp(scp=["orders:write", "x", "orders:read"])))


@pytest.mark.parametrize("granted", [
    pytest.param({}, id="none"),
    pytest.param({"scope": "orders:read"}, id="scope-one-of-two"),
    pytest.param({"scp": ["orders:write"]}, id="scp-one-of-two"),
    pytest.param({"scope": "orders:readwrite"}, id="no-substring-match"),
])
def test_missing_scope_is_403_insufficient_scope(call, tokens, granted):
    r = call("/scoped/write", token=tokens.idp(**granted))
    assert r.status == 403, r
    assert r.www_authenticate == insufficient("orders:read orders:write"), r
    assert r.upstream == [], r


def test_scoped_route_without_token_is_401(call):
    assert_missing_token(call("/scoped/read"))


def test_binding_is_checked_before_scopes(call, tokens, pki):
    """A bound token without the scope, replayed from another certificate:
    401 invalid_token (binding), not 403 (which would confirm the token is
    valid to whoever stole it)."""
    stolen = tokens.idp(cert=pki.client_a)  # no scopes
    assert call("/scoped/read", token=stolen).status == 403  # its owner: 403
    assert_invalid_token(call("/scoped/read", client=pki.client_b, token=stolen),
                         "certificate binding mismatch")
    assert_invalid_token(call("/scoped/read", client=None, token=stolen),
                         "client certificate required")


# ---------------------------------------------------------------------------
# claim policy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt"])
def test_token_types_accepts_at_jwt(call, tokens, typ):
    assert_passed(call("/strict", token=tokens.strict(typ=typ)))


@pytest.mark.parametrize("typ", ["JWT", None, "jwt+at"])
def test_token_types_refuses_other_types(call, tokens, typ):
    assert_invalid_token(call("/strict", token=tokens.strict(typ=typ)), "wrong token type")


def test_max_lifetime_seconds(call, tokens):
    assert_passed(call("/strict", token=tokens.strict(lifetime=590)))
    assert_invalid_token(call("/strict", token=tokens.strict(lifetime=3600)),
                         "token lifetime too long")


def test_algorithms_allow_list(call, tokens):
    assert_passed(call("/strict", token=tokens.strict(alg="EdDSA")))
    for alg in ("ES384", "RS256", "PS256"):
        assert_invalid_token(call("/strict", token=tokens.strict(alg=alg)), "algorithm not allowed")
    # the same keys are fine for a provider without an allow-list
    assert_passed(call("/noexp", token=sign(tokens.pki.keys["ES384"][0], "ES384",
                                            claims(cert=tokens.pki.client_a, iss=NOEXP),
                                            {"kid": tokens.pki.keys["ES384"][1]})))


def test_crit_header_is_refused(call, tokens):
    t = tokens.idp(header={"crit": ["urn:example:ext"], "urn:example:ext": True})
    assert_invalid_token(call("/idp", token=t), "unknown critical header")


def test_require_expiration(call, tokens):
    assert_passed(call("/noexp", token=tokens.noexp(lifetime=None)))
    assert_invalid_token(call("/idp", token=tokens.idp(lifetime=None)), "token has no expiration")
    # without exp, the other time claims still count
    assert_invalid_token(call("/noexp", token=tokens.noexp(lifetime=None, nbf=3600)),
                         "token not yet valid")


# ---------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------

REASONS = ("missing_token", "invalid_request", "malformed", "disallowed_algorithm",
           "bad_signature", "unknown_kid", "expired", "not_yet_valid", "wrong_issuer",
           "wrong_audience", "wrong_subject", "missing_binding", "no_client_certificate", "binding_mismatch",
           "insufficient_scope", "keys_unavailable", "internal")
CACHE = ("certbound.cache_hit", "certbound.cache_miss")


def test_every_documented_metric_exists(stats):
    have = stats.read()
    expected = {"certbound.allowed", "certbound.denied", *CACHE,
                "certbound.untrusted_certificate_header"}
    expected |= {f"certbound.denied.{r}" for r in REASONS}
    for p in ("idp", "partner", "strict", "noexp"):
        expected |= {f"certbound.provider.{p}.allowed", f"certbound.provider.{p}.denied",
                     f"certbound.provider.{p}.keys_loaded"}
    assert expected <= set(have), sorted(expected - set(have))
    assert have["certbound.provider.partner.keys_loaded"] == 1
    # CERTBOUND_JWKS: the session's key set (demo IdP key + one per algorithm)
    assert have["certbound.provider.idp.keys_loaded"] == len(json.loads(stats.envoy.jwks_text)["keys"])


def _denied(reason: str, provider: str | None = "idp") -> dict[str, int]:
    d = {"certbound.denied": 1, f"certbound.denied.{reason}": 1}
    if provider:
        d[f"certbound.provider.{provider}.denied"] = 1
    return d


def _metric_cases():
    """(id, path, request kwargs from (tokens, pki), status, counter deltas)."""
    A = {"certbound.allowed": 1}
    return [
        ("allowed-idp", "/idp", lambda t, p: {"token": t.idp()}, 200,
         {**A, "certbound.provider.idp.allowed": 1}),
        ("allowed-partner", "/any", lambda t, p: {"token": t.partner()}, 200,
         {**A, "certbound.provider.partner.allowed": 1}),
        ("public-route", "/public/m", lambda t, p: {}, 200, A),
        ("missing_token", "/idp", lambda t, p: {}, 401, _denied("missing_token", None)),
        ("invalid_request", "/idp?access_token=" + "x" * 8,
         lambda t, p: {"token": t.idp()}, 400, _denied("invalid_request", None)),
        ("malformed", "/idp", lambda t, p: {"token": "not-a-jwt"}, 401, _denied("malformed", None)),
        ("bad_signature", "/idp", lambda t, p: {"token": tamper_signature(t.idp())}, 401,
         _denied("bad_signature")),
        ("expired", "/idp", lambda t, p: {"token": t.idp(lifetime=-3600)}, 401, _denied("expired")),
        ("not_yet_valid", "/idp", lambda t, p: {"token": t.idp(nbf=3600)}, 401,
         _denied("not_yet_valid")),
        ("wrong_issuer", "/idp", lambda t, p: {"token": t.idp(iss="https://evil.example.com")},
         401, _denied("wrong_issuer", None)),
        ("wrong_audience", "/idp", lambda t, p: {"token": t.idp(aud="https://other.example.com")},
         401, _denied("wrong_audience")),
        ("unknown_kid", "/idp", lambda t, p: {"token": t.idp(header={"kid": "no-such-kid"})}, 401,
         _denied("unknown_kid")),
        ("missing_binding", "/idp", lambda t, p: {"token": t.idp(cert=None)}, 401,
         _denied("missing_binding")),
        ("no_client_certificate", "/idp", lambda t, p: {"token": t.idp(), "client": None}, 401,
         _denied("no_client_certificate")),
        ("binding_mismatch", "/idp", lambda t, p: {"token": t.idp(), "client": p.client_b}, 401,
         _denied("binding_mismatch")),
        ("insufficient_scope", "/scoped/read", lambda t, p: {"token": t.idp(scope="other")}, 403,
         _denied("insufficient_scope")),
        ("disallowed_algorithm", "/strict", lambda t, p: {"token": t.strict(alg="ES384")}, 401,
         _denied("disallowed_algorithm", "strict")),
    ]


@pytest.mark.parametrize("path,make,status,expected",
                         [pytest.param(*c[1:], id=c[0]) for c in _metric_cases()])
def test_counters_move_by_exactly_one_request(call, stats, tokens, pki, path, make, status, expected):
    kw = make(tokens, pki)
    before = stats.read()
    r = call(path, **kw)
    assert r.status == status, r
    stats.expect(before, expected, ignore=CACHE)


def test_counters_add_up_over_a_batch(call, stats, tokens, pki):
    """Several requests in a row: the deltas are the sums."""
    before = stats.read()
    for _ in range(3):
        assert call("/idp", token=tokens.idp()).status == 200
    for _ in range(2):
        assert call("/idp", token=tokens.idp(lifetime=-3600)).status == 401
    assert call("/idp", client=pki.client_b, token=tokens.idp()).status == 401
    assert call("/idp").status == 401
    stats.expect(before, {
        "certbound.allowed": 3, "certbound.provider.idp.allowed": 3,
        "certbound.denied": 4, "certbound.provider.idp.denied": 3,
        "certbound.denied.expired": 2, "certbound.denied.binding_mismatch": 1,
        "certbound.denied.missing_token": 1,
    }, ignore=CACHE)

