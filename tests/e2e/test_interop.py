"""Interop with a real authorization server: panva/oidc-provider (Node,
tests/interop) issues RFC 8705 certificate-bound access tokens over mTLS,
and certbound in Envoy 1.40 enforces them.

    client (cert A) --mTLS--> front Envoy --XFCC--> oidc-provider  /token
    client (cert A) --mTLS--> Envoy + certbound --> echo backend
                                   |--- remote_jwks ---> oidc-provider /jwks
                                   `--- introspection -> oidc-provider /token/introspection

* JWT access tokens (resource ``JWT_API``): verified with the keys from
  oidc-provider's jwks_uri (``remote_jwks``).
* opaque access tokens (resource ``OPAQUE_API``): RFC 7662 introspection,
  client_secret_basic, the binding from the response's ``cnf``
  (RFC 8705 §3.2); the secret inline or from a VM environment variable.
* the introspection endpoint down (node stopped), never answering, or
  refusing certbound's credentials: 401, never a 5xx, never a hang.

oidc-provider and the front Envoy are started once for the module; each
certbound configuration is its own Envoy, started on first use. Logs (node,
every Envoy) stay in the session's envoy work directory.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import pytest

import harness
from interop_support import (
    CLIENT_ID, CLUSTER, ISSUER, JWT_API, OPAQUE_API, RS_CLIENT_ID, SECRET_ENV,
    AsResponse, BlackHole, InteropEnvoy, OidcProvider, as_post, basic_auth,
    certbound_config, front_envoy_config, http_uri, missing_dependencies, new_secret,
    unverified_claims,
)

MISMATCH = "certificate binding mismatch"
NO_CERT = "client certificate required"
INACTIVE = "token is not active"
INTROSPECTION_FAILED = "token introspection failed"

THUMBPRINT_HEADER = "x-certbound-x5t-s256"
CLIENT_ID_HEADER = "x-certbound-client-id"
# requests certbound sent to oidc-provider (JWKS and introspection)
UPSTREAM_REQUESTS = f"cluster.{CLUSTER}.upstream_rq_total"

# http_uri.timeout of the introspection endpoints, and what a refusal may
# take beyond it (tick, TLS handshake, a busy CI box).
INTROSPECTION_TIMEOUT = 0.5
SLACK = 2.0


# ---------------------------------------------------------------------------
# fixtures: the authorization server
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def interop_ready() -> None:
    why = missing_dependencies()
    if why:
        pytest.fail(f"interop tests cannot run: {why}", pytrace=False)


@pytest.fixture(scope="module")
def oidc(interop_ready, envoy_workdir) -> Iterator[OidcProvider]:
    server = OidcProvider(envoy_workdir, client_secret=new_secret(), rs_secret=new_secret())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def front(oidc, pki, envoy_workdir) -> Iterator[harness.Envoy]:
    envoy = harness.Envoy("interop_front", front_envoy_config(oidc.port), pki.root,
                          envoy_workdir, jwks_text=None)
    envoy.start()
    yield envoy
    envoy.stop()


class AuthorizationServer:
    """What a client does with oidc-provider, through the front Envoy."""

    def __init__(self, front: harness.Envoy, oidc: OidcProvider, ca) -> None:
        self.front, self.oidc, self.ca = front, oidc, ca

    def token_response(self, client: harness.Client | None, resource: str | None,
                       **kw: Any) -> AsResponse:
        form = {"grant_type": "client_credentials", "scope": "api:read"}
        if resource:
            form["resource"] = resource
        return as_post(self.front, self.ca, client, "/token", form,
                       basic_auth(CLIENT_ID, self.oidc.client_secret), **kw)

    def token(self, client: harness.Client, resource: str) -> str:
        resp = self.token_response(client, resource)
        assert resp.status == 200, (resp, self.oidc.log_tail())
        assert resp.body["token_type"].lower() == "bearer", resp
        return resp.body["access_token"]

    def revoke(self, client: harness.Client, token: str) -> None:
        resp = as_post(self.front, self.ca, client, "/token/revocation",
                       {"token": token, "token_type_hint": "access_token"},
                       basic_auth(CLIENT_ID, self.oidc.client_secret))
        assert resp.status == 200, resp

    def introspect(self, token: str) -> AsResponse:
        """As the resource server would (for cross-checking certbound)."""
        return as_post(self.front, self.ca, None, "/token/introspection",
                       {"token": token}, basic_auth(RS_CLIENT_ID, self.oidc.rs_secret))


@pytest.fixture(scope="module")
def auth_server(front, oidc, pki) -> AuthorizationServer:
    return AuthorizationServer(front, oidc, pki.ca)


# ---------------------------------------------------------------------------
# fixtures: certbound
# ---------------------------------------------------------------------------


StartCertbound = Callable[..., InteropEnvoy]


@pytest.fixture(scope="module")
def start_certbound(pki, backend, envoy_workdir) -> Iterator[StartCertbound]:
    """start(name, provider, clusters=..., env=..., host_env_keys=...) -> a
    ready certbound Envoy; all stopped (logs checked) at module end."""
    started: list[InteropEnvoy] = []

    def start(name: str, provider: dict[str, Any], *, clusters: dict[str, int],
              env: dict[str, str] | None = None) -> InteropEnvoy:
        cfg = certbound_config(backend.port, provider, clusters=clusters,
                               host_env_keys=tuple(env or ()))
        envoy = InteropEnvoy(f"interop_{name}", cfg, pki.root, envoy_workdir, extra_env=env)
        started.append(envoy)
        envoy.start()
        harness.WATCH.add(envoy)
        return envoy

    yield start

    left = harness.WATCH.stop(started)
    if left:
        pytest.fail("wasm VM failures in Envoy logs:\n" + "\n".join(left[:20]), pytrace=False)


def provider_base(**kw: Any) -> dict[str, Any]:
    """What every certbound provider here shares."""
    return {
        "issuer": ISSUER,
        "certificate_binding": "required",
        "forward": True,
        "thumbprint_header": THUMBPRINT_HEADER,
        "claim_to_headers": [{"claim_name": "client_id", "header_name": CLIENT_ID_HEADER}],
        **kw,
    }


def introspection(port: int, client_secret: Any, timeout: float = 1.0,
                  cluster: str = CLUSTER) -> dict[str, Any]:
    return {
        "http_uri": http_uri(port, "/token/introspection", timeout=f"{timeout:g}s",
                             cluster=cluster),
        "client_id": RS_CLIENT_ID,
        "client_secret": client_secret,
        "cache_duration": "60s",
    }


@pytest.fixture(scope="module")
def api(start_certbound, oidc) -> InteropEnvoy:
    """JWTs from oidc-provider's jwks_uri (remote_jwks); other tokens
    introspected, the secret inline in the plugin JSON."""
    return start_certbound("api", provider_base(
        audiences=[JWT_API, OPAQUE_API],
        remote_jwks={"http_uri": http_uri(oidc.port, "/jwks"), "cache_duration": "300s"},
        introspection=introspection(oidc.port, oidc.rs_secret, timeout=INTROSPECTION_TIMEOUT),
    ), clusters={CLUSTER: oidc.port})


@pytest.fixture(scope="module")
def opaque_api(start_certbound, oidc) -> InteropEnvoy:
    """Introspection only (no JWKS), token_format opaque, the secret from a
    VM environment variable (host_env_keys)."""
    return start_certbound("opaque_env", provider_base(
        audiences=[OPAQUE_API],
        token_format="opaque",
        introspection=introspection(oidc.port, {"environment_variable": SECRET_ENV}),
    ), clusters={CLUSTER: oidc.port}, env={SECRET_ENV: oidc.rs_secret})


@pytest.fixture(scope="module")
def wrong_secret_api(start_certbound, oidc) -> InteropEnvoy:
    return start_certbound("wrong_secret", provider_base(
        audiences=[OPAQUE_API],
        introspection=introspection(oidc.port, oidc.rs_secret + "x"),
    ), clusters={CLUSTER: oidc.port})


@pytest.fixture(scope="module")
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


@pytest.fixture(scope="module")
def black_hole_api(start_certbound, black_hole) -> InteropEnvoy:
    return start_certbound("black_hole", provider_base(
        audiences=[OPAQUE_API],
        introspection=introspection(black_hole.port, "unused-secret",
                                    timeout=INTROSPECTION_TIMEOUT, cluster="black_hole"),
    ), clusters={"black_hole": black_hole.port})


@pytest.fixture
def call(pki, backend) -> Callable[..., harness.Response]:
    """call(envoy, token, client) -> Response, on a fresh mTLS connection."""

    def _call(envoy: harness.Envoy, token: str, client: harness.Client | None
              ) -> harness.Response:
        return harness.request(envoy, backend, pki.ca, token=token, client=client)

    return _call


# ---------------------------------------------------------------------------
# assertions
# ---------------------------------------------------------------------------


def assert_accepted(resp: harness.Response, token: str, client: harness.Client) -> None:
    """200 from the backend, which saw the token as sent, the thumbprint
    certbound verified (that of ``client``) and the token's client_id."""
    assert resp.status == 200, resp
    assert len(resp.upstream) == 1, resp
    seen = resp.upstream[0]["headers"]
    assert seen.get("authorization") == f"Bearer {token}", seen
    assert seen.get(THUMBPRINT_HEADER) == client.thumbprint, seen
    assert seen.get(CLIENT_ID_HEADER) == CLIENT_ID, seen


def assert_denied(resp: harness.Response, description: str) -> None:
    assert resp.status == 401, resp
    assert resp.www_authenticate == (
        f'Bearer error="invalid_token", error_description="{description}"'), resp
    assert resp.upstream == [], "a rejected request must not reach the backend"


def timed(fn: Callable[[], harness.Response]) -> tuple[harness.Response, float]:
    t0 = time.monotonic()
    resp = fn()
    return resp, time.monotonic() - t0


# ---------------------------------------------------------------------------
# the authorization server itself (so that failures below are certbound's)
# ---------------------------------------------------------------------------


def test_as_issues_jwt_bound_to_the_tls_client_certificate(auth_server, oidc, pki):
    token = auth_server.token(pki.client_a, JWT_API)
    header, claims = unverified_claims(token)
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256", header
    assert header["kid"] in {k["kid"] for k in oidc.jwks()["keys"]}, header
    assert claims["iss"] == ISSUER, claims
    assert claims["aud"] == JWT_API, claims
    assert claims["client_id"] == CLIENT_ID, claims
    assert claims["cnf"] == {"x5t#S256": pki.client_a.thumbprint}, claims
    assert claims["cnf"] != {"x5t#S256": pki.client_b.thumbprint}


def test_as_issues_opaque_token_whose_introspection_carries_the_binding(auth_server, pki):
    token = auth_server.token(pki.client_b, OPAQUE_API)
    assert token.count(".") == 0, "expected an opaque (non-JWT) access token"
    resp = auth_server.introspect(token)
    assert resp.status == 200, resp
    body = resp.body
    assert body["active"] is True, body
    assert body["iss"] == ISSUER and body["aud"] == OPAQUE_API, body
    assert body["cnf"] == {"x5t#S256": pki.client_b.thumbprint}, body


def test_as_needs_the_tls_certificate_and_ignores_a_forged_xfcc(auth_server, pki):
    """The front Envoy is the trust boundary: no TLS client certificate, no
    bound token, whatever x-forwarded-client-cert the client sends."""
    resp = auth_server.token_response(None, JWT_API)
    assert resp.status == 400 and resp.body.get("error") == "invalid_grant", resp
    forged = 'Hash=00;Cert="' + pki.client_a.cert.read_text().replace("\n", "%0A") + '"'
    resp = auth_server.token_response(None, JWT_API,
                                      headers={"x-forwarded-client-cert": forged})
    assert resp.status == 400 and resp.body.get("error") == "invalid_grant", resp


# ---------------------------------------------------------------------------
# JWT access tokens, keys from oidc-provider's jwks_uri
# ---------------------------------------------------------------------------


def test_jwt_with_its_certificate_is_accepted(api, auth_server, call, pki):
    token = auth_server.token(pki.client_a, JWT_API)
    assert_accepted(call(api, token, pki.client_a), token, pki.client_a)
    assert api.stat(harness.STAT_NAMESPACE + "certbound.provider.oidc.jwks_fetch_success") >= 1


def test_jwt_with_another_certificate_is_rejected(api, auth_server, call, pki):
    token = auth_server.token(pki.client_a, JWT_API)
    assert_denied(call(api, token, pki.client_b), MISMATCH)


def test_jwt_without_a_certificate_is_rejected(api, auth_server, call, pki):
    token = auth_server.token(pki.client_a, JWT_API)
    assert_denied(call(api, token, None), NO_CERT)


def test_each_client_certificate_gets_its_own_binding(api, auth_server, call, pki):
    token_b = auth_server.token(pki.client_b, JWT_API)
    assert_accepted(call(api, token_b, pki.client_b), token_b, pki.client_b)
    assert_denied(call(api, token_b, pki.client_a), MISMATCH)


# ---------------------------------------------------------------------------
# opaque access tokens, introspection
# ---------------------------------------------------------------------------


@pytest.fixture(params=["api", "opaque_api"])
def introspecting(request) -> InteropEnvoy:
    """``api``: JWKS + introspection, inline secret. ``opaque_api``:
    introspection only, token_format opaque, secret from a VM env var."""
    return request.getfixturevalue(request.param)


def test_opaque_with_its_certificate_is_accepted(introspecting, auth_server, call, pki):
    token = auth_server.token(pki.client_a, OPAQUE_API)
    before = introspecting.stat(UPSTREAM_REQUESTS)
    assert_accepted(call(introspecting, token, pki.client_a), token, pki.client_a)
    # again: from the introspection cache now (cache_duration 60s), the
    # binding checked again
    assert_accepted(call(introspecting, token, pki.client_a), token, pki.client_a)
    assert introspecting.stat(UPSTREAM_REQUESTS) - before == 1, "one introspection request"


def test_opaque_with_another_certificate_is_rejected(introspecting, auth_server, call, pki):
    token = auth_server.token(pki.client_a, OPAQUE_API)
    assert_denied(call(introspecting, token, pki.client_b), MISMATCH)
    # the answer is cached, the binding still decides per request
    assert_accepted(call(introspecting, token, pki.client_a), token, pki.client_a)
    assert_denied(call(introspecting, token, pki.client_b), MISMATCH)


def test_opaque_without_a_certificate_is_rejected(introspecting, auth_server, call, pki):
    token = auth_server.token(pki.client_a, OPAQUE_API)
    assert_denied(call(introspecting, token, None), NO_CERT)


def test_revoked_opaque_token_is_not_active(introspecting, auth_server, call, pki):
    token = auth_server.token(pki.client_a, OPAQUE_API)
    auth_server.revoke(pki.client_a, token)
    assert auth_server.introspect(token).body == {"active": False}
    assert_denied(call(introspecting, token, pki.client_a), INACTIVE)


def test_unknown_opaque_token_is_not_active(introspecting, call, pki):
    assert_denied(call(introspecting, "x" * 43, pki.client_a), INACTIVE)



def test_opaque_format_introspects_jwts_too(opaque_api, auth_server, call, pki):
    """token_format "opaque": every token is introspected, a JWT too.
    oidc-provider keeps no state for its JWT access tokens, so its answer
    (and certbound's) is "not active"."""
    token = auth_server.token(pki.client_a, JWT_API)
    assert auth_server.introspect(token).body == {"active": False}
    assert_denied(call(opaque_api, token, pki.client_a), INACTIVE)


def test_concurrent_first_requests_for_one_opaque_token(introspecting, auth_server, call, pki):
    """Requests that all wait for the first introspection of the same token,
    from the bound client and from another one: each gets its own answer."""
    token = auth_server.token(pki.client_a, OPAQUE_API)
    clients = [pki.client_a, pki.client_b] * 4
    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        results = list(pool.map(lambda c: call(introspecting, token, c), clients))
    for client, resp in zip(clients, results):
        if client is pki.client_a:
            assert_accepted(resp, token, client)
        else:
            assert_denied(resp, MISMATCH)


def test_introspection_with_a_wrong_client_secret_fails(wrong_secret_api, auth_server,
                                                        call, pki):
    """oidc-provider refuses certbound's credentials (401 invalid_client)."""
    token = auth_server.token(pki.client_a, OPAQUE_API)
    assert_denied(call(wrong_secret_api, token, pki.client_a), INTROSPECTION_FAILED)


def test_introspection_endpoint_that_never_answers(black_hole_api, black_hole, auth_server,
                                                   call, pki):
    token = auth_server.token(pki.client_a, OPAQUE_API)
    resp, took = timed(lambda: call(black_hole_api, token, pki.client_a))
    assert_denied(resp, INTROSPECTION_FAILED)
    assert black_hole.accepted >= 1, "certbound never tried the introspection endpoint"
    assert INTROSPECTION_TIMEOUT * 0.8 <= took < INTROSPECTION_TIMEOUT + SLACK, took
    # several streams waiting at once: each gets its own answer, in time
    tokens = [auth_server.token(pki.client_a, OPAQUE_API) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        results = list(pool.map(
            lambda t: timed(lambda: call(black_hole_api, t, pki.client_a)), tokens))
    for resp, took in results:
        assert_denied(resp, INTROSPECTION_FAILED)
        assert took < INTROSPECTION_TIMEOUT + SLACK, took


def test_introspection_endpoint_down(api, auth_server, oidc, call, pki):
    """oidc-provider stopped: opaque tokens get 401 (never a 5xx, never a
    hang), JWTs still pass on the cached keys; back up, it works again."""
    # prime the JWKS, take both tokens while the server is up
    jwt_token = auth_server.token(pki.client_a, JWT_API)
    assert_accepted(call(api, jwt_token, pki.client_a), jwt_token, pki.client_a)
    opaque = auth_server.token(pki.client_a, OPAQUE_API)
    oidc.stop()
    try:
        resp, took = timed(lambda: call(api, opaque, pki.client_a))
        assert_denied(resp, INTROSPECTION_FAILED)
        assert took < INTROSPECTION_TIMEOUT + SLACK, took
        assert_accepted(call(api, jwt_token, pki.client_a), jwt_token, pki.client_a)
    finally:
        oidc.start()
    # A failure is not cached: a fresh token is introspected and accepted.
    fresh = auth_server.token(pki.client_a, OPAQUE_API)
    assert_accepted(call(api, fresh, pki.client_a), fresh, pki.client_a)
