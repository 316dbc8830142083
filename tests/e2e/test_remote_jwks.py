"""remote_jwks in the real Envoy 1.40: keys fetched through an `idp_jwks`
cluster from the controllable JWKS server (tests/soak/faulty_jwks.py, via jwks_server.py), rotation, an
endpoint that is down, slow, failing or serving garbage, one fetch per Envoy
with two workers, and the verified-token cache.

Every test starts its own Envoy (the shipped envoy.yaml plus the `idp_jwks`
cluster; the `idp` provider's local_jwks replaced by remote_jwks) and its own
JWKS server, so fetch counts and stats start from zero.

Observed with Envoy 1.40.0: proxy-wasm metrics appear in the admin /stats
text with a `wasmcustom.` prefix (`wasmcustom.certbound.provider.idp.
jwks_fetch_success`), in Prometheus format without it
(`certbound_provider_idp_jwks_fetch_success`). With `--concurrency 2` there
are three VMs (main thread + 2 workers); the main-thread VM's tick usually
makes the first fetch.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import pytest

import harness
from harness import demo
from jwks_server import JwksServer, RemoteEnvoy, free_port_is_refused, remote_jwks_config

STAT = harness.STAT_NAMESPACE + "certbound."
P = STAT + "provider.idp."
FETCH_OK = P + "jwks_fetch_success"
FETCH_FAILED = P + "jwks_fetch_failed"
KEYS_LOADED = P + "keys_loaded"
CACHE_HIT = STAT + "cache_hit"

KEYS_UNAVAILABLE = "signing keys unavailable"
UNKNOWN_KID = "unknown signing key"
MISMATCH = "certificate binding mismatch"

# http_uri.timeout of every scenario: how long a request may wait for keys.
FETCH_TIMEOUT = 1.0
# What a denial may take beyond that (tick period 100 ms, TLS handshake, a busy CI box).
SLACK = 1.5


# ---------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------


@pytest.fixture
def jwks(pki) -> Iterator[JwksServer]:
    """A JWKS server serving the session's IdP key (kid demo-es256)."""
    with JwksServer(pki.idp_jwks_text) as server:
        yield server


StartEnvoy = Callable[..., RemoteEnvoy]


@pytest.fixture
def start_envoy(pki, backend, envoy_workdir, request) -> Iterator[StartEnvoy]:
    """start_envoy(server, concurrency=1, **remote_jwks_config kwargs) -> a
    ready Envoy, stopped (and its log checked for VM failures) after the test."""
    started: list[RemoteEnvoy] = []
    base = "remote_" + re.sub(r"\W+", "_", request.node.name).strip("_")

    def start(server: JwksServer, *, concurrency: int = 1, **kw: Any) -> RemoteEnvoy:
        cfg = remote_jwks_config(backend.port, server, timeout=f"{FETCH_TIMEOUT:g}s", **kw)
        envoy = RemoteEnvoy(f"{base}_{len(started)}", cfg, pki.root, envoy_workdir, concurrency)
        started.append(envoy)
        return envoy.start()

    yield start

    problems = []
    for envoy in started:
        envoy.stop()
        bad = envoy.vm_failures()
        if bad:
            problems.append(f"envoy[{envoy.name}] ({envoy.log_path}):\n  " + "\n  ".join(bad[:20]))
    if problems:
        pytest.fail("wasm VM failures in Envoy logs:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def call(pki, backend) -> Callable[..., harness.Response]:
    """call(envoy, token=..., client=...) -> Response (fresh mTLS connection)."""

    def _call(envoy: RemoteEnvoy, **kw: Any) -> harness.Response:
        return harness.request(envoy, backend, pki.ca, **kw)

    return _call


def assert_ok(resp: harness.Response) -> None:
    assert resp.status == 200, resp
    assert len(resp.upstream) == 1, resp


def assert_denied(resp: harness.Response, description: str) -> None:
    assert resp.status == 401, resp
    assert resp.www_authenticate == (
        f'Bearer error="invalid_token", error_description="{description}"'), resp
    assert resp.upstream == [], "a rejected request must not reach the backend"


def poll_until_ok(call_once: Callable[[], harness.Response], allowed: str,
                  timeout: float) -> list[harness.Response]:
    """Repeat a request until it is accepted; every refusal before that must
    be 401 with ``allowed`` as its description. Returns all responses."""
    deadline = time.monotonic() + timeout
    seen: list[harness.Response] = []
    while True:
        resp = call_once()
        seen.append(resp)
        if resp.status == 200:
            return seen
        assert_denied(resp, allowed)
        if time.monotonic() > deadline:
            raise AssertionError(f"not accepted within {timeout}s; last: {resp!r}")
        time.sleep(harness.POLL_INTERVAL)


def new_key(kid: str) -> tuple[Any, dict[str, Any]]:
    key = demo.new_signing_key("ES256")
    return key, demo.public_jwk(key, kid, "ES256")


def idp_jwk(pki) -> dict[str, Any]:
    return demo.public_jwk(pki.idp_key, demo.IDP_KID, demo.IDP_ALG)


def log_lines(envoy: RemoteEnvoy, needle: str) -> list[str]:
    return [ln for ln in envoy.log_text().splitlines() if needle in ln]


# ---------------------------------------------------------------------------
# keys at start
# ---------------------------------------------------------------------------


def test_keys_loaded_at_start(pki, jwks, start_envoy, call):
    """The first request is accepted (it waits for the keys if the fetch is
    still under way); one fetch, reported in /stats."""
    jwks.set_jwks(pki.jwks)  # the session's 11-key set: IdP key + one per algorithm
    envoy = start_envoy(jwks)
    token = pki.token(pki.client_a)
    assert_ok(call(envoy, token=token, client=pki.client_a))

    # Another key of the same fetched set.
    key, kid = pki.keys["EdDSA"]
    assert_ok(call(envoy, token=demo.mint(key, "EdDSA", kid=kid, cert=pki.client_a.cert),
                   client=pki.client_a))

    assert jwks.count() == 1, jwks.hits
    (hit,) = jwks.hits
    assert (hit.method, hit.path) == ("GET", "/jwks")
    assert hit.headers["host"] == f"127.0.0.1:{jwks.port}"  # :authority from http_uri.uri
    assert hit.headers["user-agent"] == "certbound"
    assert "application/jwk-set+json" in hit.headers["accept"]
    assert hit.headers.get("x-envoy-expected-rq-timeout-ms") == "1000"  # http_uri.timeout

    stats = envoy.stats()
    assert stats[FETCH_OK] == 1, stats
    assert stats[FETCH_FAILED] == 0
    assert stats[KEYS_LOADED] == len(pki.jwks["keys"]) == 1 + len(harness.ALGORITHMS)
    assert stats[STAT + "provider.idp.allowed"] == 2
    assert stats["cluster.idp_jwks.upstream_rq_200"] == 1
    prom = envoy.admin_get("/stats?format=prometheus")
    assert re.search(rf"^{harness.PROM_PREFIX}certbound_provider_idp_jwks_fetch_success\{{\}} 1$", prom, re.M), (
        "Prometheus names drop the wasmcustom namespace")
    assert len(log_lines(envoy, 'provider "idp": JWKS loaded (version 1)')) == 1


# ---------------------------------------------------------------------------
# rotation
# ---------------------------------------------------------------------------


def test_rotation_new_kid_is_accepted_without_restart(pki, jwks, start_envoy, call):
    """A token with a kid the endpoint only now publishes is accepted: the
    unknown kid triggers one refetch, at most once per min_refetch_interval."""
    envoy = start_envoy(jwks, min_refetch_interval="1s")
    assert_ok(call(envoy, token=pki.token(pki.client_a), client=pki.client_a))
    assert jwks.count() == 1

    key, jwk = new_key("rotated-1")
    jwks.set_jwks(demo.jwks(idp_jwk(pki), jwk))
    token = demo.mint(key, "ES256", kid="rotated-1", cert=pki.client_a.cert)

    # Within 1 s of the start-up fetch the unknown kid is refused at once,
    # without a fetch; the first request after that refetches and is accepted.
    seen = poll_until_ok(lambda: call(envoy, token=token, client=pki.client_a),
                         UNKNOWN_KID, timeout=10)
    refused = len(seen) - 1
    assert jwks.count() == 2, f"{refused} refused polls caused fetches: {jwks.hits}"
    stats = envoy.stats()
    assert stats[FETCH_OK] == 2
    assert stats[KEYS_LOADED] == 2
    assert stats[STAT + "denied.unknown_kid"] == refused

    # Rate limited: another unknown kid right after that refetch gets no fetch.
    other_key, _ = new_key("rotated-2")
    t0 = time.monotonic()
    assert_denied(call(envoy, token=demo.mint(other_key, "ES256", kid="rotated-2",
                                              cert=pki.client_a.cert), client=pki.client_a),
                  UNKNOWN_KID)
    assert time.monotonic() - t0 < FETCH_TIMEOUT, "a rate-limited unknown kid must not wait"
    assert jwks.count() == 2, jwks.hits

    # Both keys of the new set work; the binding is still checked.
    assert_ok(call(envoy, token=pki.token(pki.client_a), client=pki.client_a))
    assert_ok(call(envoy, token=demo.mint(key, "ES256", kid="rotated-1", cert=pki.client_a.cert),
                   client=pki.client_a))
    assert_denied(call(envoy, token=token, client=pki.client_b), MISMATCH)
    assert jwks.count() == 2


# ---------------------------------------------------------------------------
# endpoint unavailable at start
# ---------------------------------------------------------------------------


def _make_unavailable(server: JwksServer, how: str) -> None:
    if how == "down":
        server.down()
        assert free_port_is_refused(server.port)
    else:
        server.set_slow(10 * FETCH_TIMEOUT)  # far beyond http_uri.timeout


# (A 5xx at start behaves like "down": Envoy answers a refused connection
# with a local 503. 5xx after keys were loaded: the garbage test below.)
@pytest.mark.parametrize("how", ["down", "slow"])
def test_unavailable_at_start_answers_401_then_recovers(pki, jwks, start_envoy, call, how,
                                                        monkeypatch):
    """No keys yet: a request waits at most about http_uri.timeout, then gets
    401 "signing keys unavailable" (never hangs); once the endpoint answers,
    requests are accepted without a restart."""
    monkeypatch.setattr(harness, "HTTP_TIMEOUT", FETCH_TIMEOUT + 4 * SLACK)  # a hang fails fast
    _make_unavailable(jwks, how)
    envoy = start_envoy(jwks)
    envoy.wait_for_stat(FETCH_FAILED, 1)

    for _ in range(2):  # one may meet a fetch in flight, one a backoff
        t0 = time.monotonic()
        resp = call(envoy, token=pki.token(pki.client_a), client=pki.client_a)
        elapsed = time.monotonic() - t0
        assert_denied(resp, KEYS_UNAVAILABLE)
        assert elapsed < FETCH_TIMEOUT + SLACK, f"401 after {elapsed:.2f}s"
    stats = envoy.stats()
    assert stats[STAT + "denied.keys_unavailable"] == 2
    assert stats[FETCH_OK] == 0 and stats[KEYS_LOADED] == 0
    if how == "slow":
        assert stats["cluster.idp_jwks.upstream_rq_timeout"] >= 1
    assert log_lines(envoy, 'provider "idp": JWKS fetch failed') and log_lines(envoy, "no keys yet")

    # The endpoint comes back: the backoff (0.5 s doubling) retries it.
    jwks.up()
    jwks.set_ok()
    ok_before = sum(1 for h in jwks.hits if h.mode == "ok")
    poll_until_ok(lambda: call(envoy, token=pki.token(pki.client_a), client=pki.client_a),
                  KEYS_UNAVAILABLE, timeout=20)
    assert sum(1 for h in jwks.hits if h.mode == "ok") == ok_before + 1, jwks.hits
    assert envoy.stat(FETCH_OK) == 1
    assert envoy.stat(KEYS_LOADED) == 1


# ---------------------------------------------------------------------------
# failures after keys were loaded
# ---------------------------------------------------------------------------


def test_garbage_and_5xx_keep_the_last_good_keys(pki, jwks, start_envoy, call):
    """Refreshes (cache_duration 1 s: every 0.9 s) that fail keep the old keys
    in force, past cache_duration; a later good refresh replaces them."""
    envoy = start_envoy(jwks, cache_duration="1s", min_refetch_interval="30s")
    assert_ok(call(envoy, token=pki.token(pki.client_a), client=pki.client_a))
    assert envoy.stat(FETCH_FAILED) == 0

    jwks.set_garbage()
    # Two failures: the second comes >= 0.9 s + 0.5 s backoff after the last
    # success, so the keys are older than cache_duration by then.
    envoy.wait_for_stat(FETCH_FAILED, 2)
    fetched_ok = envoy.stat(FETCH_OK)  # 1, or more if a refresh beat set_garbage
    # A fresh token (new jti: not in the token cache) is verified with the old keys.
    assert_ok(call(envoy, token=pki.token(pki.client_a), client=pki.client_a))
    assert envoy.stat(KEYS_LOADED) == 1
    assert log_lines(envoy, "JWKS fetch failed: JWKS is not valid JSON")
    assert log_lines(envoy, "keeping the last good keys")

    jwks.set_status(503)
    failed = envoy.stat(FETCH_FAILED)
    envoy.wait_for_stat(FETCH_FAILED, failed + 1)
    assert_ok(call(envoy, token=pki.token(pki.client_a), client=pki.client_a))
    assert envoy.stat(FETCH_OK) == fetched_ok
    assert log_lines(envoy, "JWKS fetch failed: HTTP status 503; keeping the last good keys")

    # Good again, with a rotated set (the old key withdrawn).
    key, jwk = new_key("rotated-1")
    jwks.set_jwks(demo.jwks(jwk))
    jwks.set_ok()
    envoy.wait_for_stat(FETCH_OK, fetched_ok + 1, timeout=20)  # the backoff may be seconds by now
    hits = jwks.hits
    assert_ok(call(envoy, token=demo.mint(key, "ES256", kid="rotated-1", cert=pki.client_a.cert),
                   client=pki.client_a))
    assert_denied(call(envoy, token=pki.token(pki.client_a), client=pki.client_a), UNKNOWN_KID)

    # Timing, from the server's side: the first failed refresh at 90 % of
    # cache_duration after the last good fetch, then retries backing off
    # 0.5 s, 1 s, 2 s, ... (never sooner; later only by tick granularity and load).
    first_bad = next(i for i, h in enumerate(hits) if h.mode != "ok")
    run = hits[first_bad - 1:]
    assert run[0].mode == "ok" and run[-1].mode == "ok", hits
    assert all(h.mode in ("garbage", "5xx") for h in run[1:-1]), hits
    gaps = [round(b.at - a.at, 3) for a, b in zip(run, run[1:])]
    assert 0.85 <= gaps[0] <= 0.9 + SLACK, gaps
    for i, gap in enumerate(gaps[1:]):
        backoff = 0.5 * 2 ** i
        assert backoff - 0.05 <= gap <= backoff + SLACK, (i, gaps)


def test_refresh_at_90_percent_of_a_fractional_cache_duration(jwks, start_envoy):
    envoy = start_envoy(jwks, cache_duration="1.9s")
    jwks.wait_for_count(2, timeout=5)
    first, second = jwks.hits[:2]
    # The server records a hit before it answers; Envoy counts the fetch
    # only once the answer is in, so poll for it.
    envoy.wait_for_stat(FETCH_OK, 2, timeout=5)
    assert second.at - first.at >= 0.9 * 1.9 - 0.05, (
        f"refreshed {second.at - first.at:.3f}s after the previous fetch")


# ---------------------------------------------------------------------------
# one fetch per Envoy
# ---------------------------------------------------------------------------


WORKER_CX = re.compile(r"^listener\.[^ ]+\.worker_(\d+)\.downstream_cx_total$")


def test_two_workers_share_one_fetch(pki, jwks, start_envoy, call):
    """--concurrency 2 (three VMs: main thread + two workers): one fetch at
    start, its keys used by both workers. The first answer is slowed down so
    that every VM looks for keys while that fetch is in flight."""
    jwks.set_slow(0.5)
    envoy = start_envoy(jwks, concurrency=2)
    token = pki.token(pki.client_a)

    def workers_served() -> dict[int, int]:
        return {int(m.group(1)): v for k, v in envoy.stats().items() if (m := WORKER_CX.match(k))}

    statuses: list[int] = []
    deadline = time.monotonic() + 15
    with ThreadPoolExecutor(max_workers=8) as pool:
        while True:
            # 8 concurrent requests, each on its own connection: the kernel
            # spreads them over the workers' listeners (SO_REUSEPORT).
            statuses += [r.status for r in pool.map(
                lambda _: call(envoy, token=token, client=pki.client_a), range(8))]
            served = workers_served()
            if len(served) == 2 and all(served.values()):
                break
            assert time.monotonic() < deadline, f"requests did not reach both workers: {served}"
    assert set(statuses) == {200}, statuses

    assert jwks.count() == 1, f"expected one JWKS fetch for the whole Envoy: {jwks.hits}"
    stats = envoy.stats()
    assert stats["cluster.idp_jwks.upstream_rq_total"] == 1, "a second fetch was dispatched"
    assert stats[FETCH_OK] == 1
    assert stats[STAT + "allowed"] == len(statuses)
    assert len(log_lines(envoy, "JWKS loaded")) == 1


# ---------------------------------------------------------------------------
# the verified-token cache
# ---------------------------------------------------------------------------


def test_cache_hit_still_checks_the_binding(pki, jwks, start_envoy, call):
    """The same token from another client certificate is refused even when
    its verification comes from the cache."""
    envoy = start_envoy(jwks)
    token = pki.token(pki.client_a)
    assert_ok(call(envoy, token=token, client=pki.client_a))  # miss: verified, cached
    hits = envoy.stat(CACHE_HIT)

    assert_denied(call(envoy, token=token, client=pki.client_b), MISMATCH)
    assert envoy.stat(CACHE_HIT) == hits + 1, "the replay should have been a cache hit"
    assert envoy.stat(STAT + "denied.binding_mismatch") == 1

    assert_denied(call(envoy, token=token, client=None), "client certificate required")
    assert envoy.stat(CACHE_HIT) == hits + 2

    assert_ok(call(envoy, token=token, client=pki.client_a))
    assert envoy.stat(CACHE_HIT) == hits + 3


def test_jwt_cache_size_zero_disables_the_cache(pki, jwks, start_envoy, call):
    envoy = start_envoy(jwks, top_level={"jwt_cache_size": 0})
    token = pki.token(pki.client_a)
    for _ in range(3):
        assert_ok(call(envoy, token=token, client=pki.client_a))
    assert_denied(call(envoy, token=token, client=pki.client_b), MISMATCH)
    stats = envoy.stats()
    assert stats[CACHE_HIT] == 0, stats[CACHE_HIT]
    assert stats[STAT + "allowed"] == 3
