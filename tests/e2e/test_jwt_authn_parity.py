"""jwt_authn options a user brings along, in the real Envoy 1.40 over real
mTLS: ``bypass_cors_preflight``, ``pad_forward_payload_header``, the rule
matchers ``path_separated_prefix``, ``safe_regex``, ``case_sensitive``,
``headers``, ``query_parameters`` and ``grpc``, ``provider_and_audiences``,
a provider's ``subjects``, ``stat_prefix`` (every counter here is
``certbound.parity.*``), and ``claim_to_headers`` for a namespaced claim (a
claim name with dots).

One Envoy for the module: the shipped envoy.yaml with the plugin JSON below.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Callable

import pytest

import harness
from harness import demo
from support_policy import (  # noqa: F401 (echo, fleet: shared fixtures)
    echo, fleet,
    AUDIENCE, ISSUER, Reply, Stats, assert_invalid_token, assert_missing_token, assert_passed,
    claims,
    payload_segment, send, sign, unique,
)

TENANT_CLAIM = "https://idp.example.com/tenant"
WORKLOADS = "https://workloads.example.com"  # a second issuer, whose subjects are SPIFFE IDs
PARTNER_API = "https://partner-api.example.com"
PREFLIGHT = {"origin": "https://app.example.com", "access-control-request-method": "POST"}


def policy() -> dict[str, Any]:
    return {
        "bypass_cors_preflight": True,
        "stat_prefix": "parity",
        "providers": {
            "idp": {
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "local_jwks": {"environment_variable": "CERTBOUND_JWKS"},
                "forward": True,
                "claim_to_headers": [
                    {"claim_name": "sub", "header_name": "x-jwt-sub"},
                    {"claim_name": TENANT_CLAIM, "header_name": "x-tenant"},
                    {"claim_name": "org.id", "header_name": "x-org-id"},
                ],
                "forward_payload_header": "x-jwt-payload",
                "pad_forward_payload_header": True,
                "clear_route_cache": True,
            },
            "workloads": {
                "issuer": WORKLOADS,
                "audiences": [AUDIENCE],
                "local_jwks": {"environment_variable": "CERTBOUND_JWKS"},
                "forward": True,
                "subjects": {"safe_regex": {"regex": "spiffe://example\\.org/ns/[a-z-]+/sa/[a-z-]+"}},
                # jwt_authn's per-provider cache block: sizes this filter's one cache.
                "jwt_cache_config": {"jwt_cache_size": 50},
            },
        },
        "rules": [
            {"match": {"path_separated_prefix": "/api"}, "requires": {"provider_name": "idp"}},
            {"match": {"prefix": "/partner/"}, "requires": {"provider_and_audiences": {
                "provider_name": "idp", "audiences": [PARTNER_API]}}},
            {"match": {"safe_regex": {"google_re2": {}, "regex": "/v[0-9]+/reports/[0-9a-f]+"}},
             "requires": {"provider_name": "idp"}},
            {"match": {"prefix": "/admin/", "headers": [
                {"name": ":method", "string_match": {"exact": "GET"}, "invert_match": True}]},
             "requires": {"provider_name": "idp"}},
            {"match": {"prefix": "/search/", "query_parameters": [
                {"name": "scope", "string_match": {"exact": "private"}}]},
             "requires": {"provider_name": "idp"}},
            {"match": {"prefix": "/Secure/", "case_sensitive": False},
             "requires": {"provider_name": "idp"}},
            {"match": {"prefix": "/grpc.health.v1.Health/", "grpc": {}}},
            {"match": {"prefix": "/grpc.health.v1.Health/"}, "requires": {"provider_name": "idp"}},
            {"match": {"prefix": "/workloads/"}, "requires": {"provider_name": "workloads"}},
            {"match": {"prefix": "/"}},
        ],
    }


@pytest.fixture(scope="module")
def envoy(fleet, echo, pki):
    cfg = harness.scenario_config(echo.port, plugin=policy())
    return fleet.start({"parity": (cfg, pki.jwks_text)})["parity"]


TENANT_ROUTE = b"tenant route: acme"


@pytest.fixture(scope="module")
def routing_envoy(fleet, echo, pki):
    """The same plugin, and a route picked by the header certbound writes
    from the tenant claim: Envoy must pick the route after certbound has
    written (or stripped) that header."""
    cfg = harness.scenario_config(echo.port, plugin=policy())
    vhost = harness._listener(cfg)["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"]["virtual_hosts"][0]
    vhost["routes"].insert(0, {
        "match": {"prefix": "/", "headers": [{"name": "x-tenant", "string_match": {"exact": "acme"}}]},
        "direct_response": {"status": 200, "body": {"inline_string": TENANT_ROUTE.decode()}},
    })
    return fleet.start({"parity-routing": (cfg, pki.jwks_text)})["parity-routing"]


@pytest.fixture
def call(envoy, echo, pki) -> Callable[..., Reply]:
    """call(path, token=..., headers=..., method=...): client-a; a fresh
    segment is appended to ``path`` unless ``exact``."""

    def _call(path: str, *, exact: bool = False, **kw: Any) -> Reply:
        kw.setdefault("client", pki.client_a)
        return send(envoy.port, echo, pki.ca, path if exact else unique(path), **kw)

    return _call


def token(pki, **kw: Any) -> str:
    return sign(pki.idp_key, "ES256", claims(cert=pki.client_a, **kw), {"kid": demo.IDP_KID})


# -- bypass_cors_preflight ----------------------------------------------------


def test_a_cors_preflight_passes_without_token_or_certificate(call, envoy, pki):
    stats = Stats(envoy)
    before = stats.read()
    seen = assert_passed(call("/api/orders/", method="OPTIONS", client=None,
                              headers={**PREFLIGHT, "x-jwt-sub": "admin"}))
    # Still no way to inject what certbound would write upstream.
    assert "x-jwt-sub" not in seen, seen
    stats.expect(before, {"certbound.parity.cors_preflight_bypassed": 1})


@pytest.mark.parametrize("missing", ["origin", "access-control-request-method"])
def test_an_options_request_that_is_no_preflight_needs_a_token(call, missing):
    headers = {k: v for k, v in PREFLIGHT.items() if k != missing}
    assert_missing_token(call("/api/orders/", method="OPTIONS", headers=headers))


def test_a_preflight_header_set_on_a_get_changes_nothing(call):
    assert_missing_token(call("/api/orders/", headers=PREFLIGHT))


# -- pad_forward_payload_header -----------------------------------------------


@pytest.mark.parametrize("sub", ["a", "ab", "abc", "abcd"])
def test_the_forwarded_payload_is_padded_base64url(call, pki, sub):
    t = token(pki, sub=sub)
    seen = assert_passed(call("/api/orders/", token=t))
    sent = seen["x-jwt-payload"]
    assert len(sent) % 4 == 0, sent
    assert sent.rstrip("=") == payload_segment(t), sent
    assert json.loads(base64.urlsafe_b64decode(sent))["sub"] == sub


# -- path_separated_prefix ----------------------------------------------------


def test_path_separated_prefix_covers_the_segment_itself(call, pki):
    assert_missing_token(call("/api", exact=True))
    assert_missing_token(call("/api?x=1", exact=True))
    assert_passed(call("/api", exact=True, token=token(pki)))


@pytest.mark.parametrize("path", ["/api/", "/api/orders/"])
def test_path_separated_prefix_covers_what_is_below(call, pki, path):
    assert_missing_token(call(path))
    assert_passed(call(path, token=token(pki)))


@pytest.mark.parametrize("path", ["/apix/", "/api-v2/orders/"])
def test_path_separated_prefix_stops_at_the_segment(call, path):
    assert_passed(call(path))


# -- safe_regex, headers, query_parameters, case_sensitive --------------------


def test_safe_regex_must_match_the_whole_path(call, pki):
    # unique() appends a hex segment: /v1/reports/<hex> is the rule's.
    assert_missing_token(call("/v1/reports"))
    assert_missing_token(call("/v12/reports"))
    assert_passed(call("/v1/reports", token=token(pki)))
    # More after it, or something before it, is another route (public here).
    assert_passed(call(unique("/v1/reports") + "/x", exact=True))
    assert_passed(call(unique("/api-v1/reports"), exact=True))
    assert_passed(call(unique("/vx/reports"), exact=True))


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_a_header_matcher_on_the_method(call, pki, method):
    assert_missing_token(call("/admin/users/", method=method))
    assert_passed(call("/admin/users/", method=method, token=token(pki)))


def test_an_inverted_method_matcher_leaves_gets_to_the_next_rule(call):
    assert_passed(call("/admin/users/"))


def test_a_query_parameter_matcher(call, pki):
    assert_missing_token(call(unique("/search") + "?q=x&scope=private", exact=True))
    assert_passed(call(unique("/search") + "?scope=private", exact=True, token=token(pki)))
    assert_passed(call(unique("/search") + "?scope=public", exact=True))
    assert_passed(call(unique("/search") + "?scope=privatex", exact=True))
    assert_passed(call("/search/"))


@pytest.mark.parametrize("path", ["/Secure/", "/secure/", "/SECURE/"])
def test_case_insensitive_prefix(call, pki, path):
    assert_missing_token(call(path))
    assert_passed(call(path, token=token(pki)))


def test_a_grpc_matcher(call):
    assert_passed(call("/grpc.health.v1.Health/", method="POST",
                       headers={"content-type": "application/grpc"}))
    assert_missing_token(call("/grpc.health.v1.Health/", method="POST",
                              headers={"content-type": "application/json"}))


# -- subjects -------------------------------------------------------------------


def test_subjects_must_match_the_sub_claim(call, envoy, pki):
    stats = Stats(envoy)
    good = token(pki, iss=WORKLOADS, sub="spiffe://example.org/ns/shop/sa/checkout")
    assert_passed(call("/workloads/orders/", token=good))
    before = stats.read()
    assert_passed(call("/workloads/orders/", token=good))
    # A cache hit: the cache sized by jwt_cache_config is on.
    stats.expect(before, {"certbound.parity.allowed": 1, "certbound.parity.cache_hit": 1,
                          "certbound.parity.provider.workloads.allowed": 1})
    before = stats.read()
    for sub in ("spiffe://example.org/ns/shop/sa/checkout/x", "spiffe://evil.org/ns/shop/sa/a",
                "demo-client", None):
        t = token(pki, iss=WORKLOADS, sub=sub)
        assert_invalid_token(call("/workloads/orders/", token=t), "subject not accepted")
    stats.expect(before, {"certbound.parity.denied": 4, "certbound.parity.denied.wrong_subject": 4,
                          "certbound.parity.provider.workloads.denied": 4},
                 ignore=("certbound.parity.cache_hit", "certbound.parity.cache_miss"))
    # stat_prefix: nothing of this filter is counted outside certbound.parity.
    assert all(k.startswith("certbound.parity.") for k in stats.read()), stats.read()


# -- claim_to_headers ---------------------------------------------------------


def test_a_namespaced_claim_goes_upstream_by_its_whole_name(call, pki):
    t = token(pki, **{TENANT_CLAIM: "acme", "org": {"id": 7}})
    seen = assert_passed(call("/api/orders/", token=t))
    assert seen["x-tenant"] == "acme", seen
    assert seen["x-org-id"] == "7", seen


def test_routes_are_chosen_after_claim_headers_are_written(routing_envoy, echo, pki):
    """jwt_authn's ``clear_route_cache``: here Envoy picks the route after
    the filter has changed the request headers, so a route can depend on a
    claim; and a client cannot pick that route by sending the header."""
    def send_(token: str | None, headers: dict[str, str] | None = None) -> Reply:
        return send(routing_envoy.port, echo, pki.ca, unique("/api/orders"),
                    client=pki.client_a, token=token, headers=headers or {})

    r = send_(token(pki, **{TENANT_CLAIM: "acme"}))
    assert (r.status, r.body, r.upstream) == (200, TENANT_ROUTE, []), r
    # Another tenant, or a forged header without the claim: the backend.
    assert_passed(send_(token(pki, **{TENANT_CLAIM: "other"})))
    seen = assert_passed(send_(token(pki), headers={"x-tenant": "acme"}))
    assert "x-tenant" not in seen, seen


# -- provider_and_audiences ---------------------------------------------------


def test_provider_and_audiences_sets_the_routes_audiences(call, pki):
    assert_passed(call("/partner/orders/", token=token(pki, aud=PARTNER_API)))
    assert_passed(call("/partner/orders/", token=token(pki, aud=[AUDIENCE, PARTNER_API])))
    # The provider's own audience is not the route's ...
    assert_invalid_token(call("/partner/orders/", token=token(pki, aud=AUDIENCE)),
                         "audience not accepted")
    # ... and the route's is not the provider's elsewhere.
    assert_invalid_token(call("/api/orders/", token=token(pki, aud=PARTNER_API)),
                         "audience not accepted")
    assert_passed(call("/api/orders/", token=token(pki, aud=AUDIENCE)))


def test_the_same_token_on_both_routes_is_judged_by_each(call, pki):
    """The second request of each pair is a token-cache hit: the route's
    audiences are applied to it too."""
    t = token(pki, aud=PARTNER_API)
    for _ in range(2):
        assert_passed(call("/partner/orders/", token=t))
        assert_invalid_token(call("/api/orders/", token=t), "audience not accepted")
