#!/usr/bin/env python3
"""certbound soak and fault runner: one Envoy 1.40 with the certbound filter
and real mTLS, a configurable mix of valid and invalid requests at the rate
Python threads on persistent connections can produce, and pass/fail checks.

    make soak                          # 600 s (SOAK_SECONDS), the shipped local_jwks
    make soak SOAK_SECONDS=60 SOAK_ARGS='--faults slow,refuse,5xx,garbage'
    target/venv/bin/python tests/soak/soak.py --seconds 30 --concurrency 8 \\
        --mix valid_fresh=50,replay=25,no_cert=25 --report /tmp/soak.json

It passes when

* every response is the one expected for its kind of request (status and
  exact WWW-Authenticate), 200s carry the backend's echo of *that* request
  (no cross-talk between concurrent requests), no 5xx, no timeouts (a hung
  request is a failure: ``--timeout``) and no connection errors;
* Envoy's log shows no wasm VM failure (panic, trap, failed callback);
* /stats ``certbound.allowed`` and ``certbound.denied`` moved by exactly the
  number of 200s and 401s received;
* Envoy's memory stays flat: after ``--warmup`` seconds, the largest RSS
  (/proc/<pid>/status VmRSS) in the last third of the run exceeds the
  largest of the first third by at most ``--rss-margin-mb`` MiB or
  ``--rss-margin-pct`` %, whichever is larger. Most valid tokens are
  distinct (minted per request) and ``--jwt-cache-size`` is small, so the
  verified-token cache runs full and must evict; the connections rotate
  through ``--client-certs`` certificates (a new mTLS connection every
  ``--reconnect-every`` requests), more than the filter's per-VM
  certificate-thumbprint cache holds (256);
* with ``--faults``: the provider uses ``remote_jwks`` (``cache_duration``
  1 s, so refreshes happen all the time) from a local server
  (faulty_jwks.py) that cycles through the listed failure modes
  (``--phase-seconds`` each, ``--ok-seconds`` healthy in between). Valid
  tokens must keep passing on the last good keys throughout, every fault
  must have made a refresh fail (``jwks_fetch_failed``; for ``refuse`` and
  ``slow`` also the cluster's connect failures / timeouts), and the keys
  must be refreshed successfully again before the next fault.

Request kinds (``--mix name=weight,...``): valid_fresh (a new token per
request, bound to the connection's certificate: 200), valid_hot (one of a
few reused tokens: cache hits, 200), replay (bound to another client: 401
binding mismatch), unbound (no cnf: 401), expired, bad_signature, alg_none,
garbage (401 invalid_token), no_token (401, bare challenge), no_cert (a
valid bound token on a connection without a client certificate: 401).

Exit status 0 on pass, 1 on failure; ``--report FILE`` writes every number
as JSON. Needs the project venv (``make venv``) and a built filter
(``make build``); generated PKI, configs and the Envoy log go to a temporary
directory, kept with ``--keep``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import http.server
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(HERE))
import harness  # noqa: E402  (tests/e2e/harness.py: Envoy, PKI, config helpers)
from faulty_jwks import MODES as FAULT_MODES, FaultyJwks  # noqa: E402
from harness import demo  # noqa: E402

STAT = harness.STAT_NAMESPACE + "certbound."
P = STAT + "provider.idp."
MiB = 1024 * 1024
JWKS_CLUSTER = "soak_jwks"

# ---------------------------------------------------------------------------
# request kinds
# ---------------------------------------------------------------------------

MISMATCH = 'Bearer error="invalid_token", error_description="certificate binding mismatch"'


@dataclass(frozen=True)
class Kind:
    name: str
    status: int
    # exact WWW-Authenticate; None: must be absent
    challenge: str | None
    # False: sent on the worker's connection without a client certificate
    with_cert: bool = True


def _invalid(description: str) -> str:
    return f'Bearer error="invalid_token", error_description="{description}"'


KINDS = {k.name: k for k in [
    Kind("valid_fresh", 200, None),
    Kind("valid_hot", 200, None),
    Kind("replay", 401, MISMATCH),
    Kind("unbound", 401, _invalid("token is not certificate-bound")),
    Kind("expired", 401, _invalid("token expired")),
    Kind("bad_signature", 401, _invalid("signature verification failed")),
    Kind("alg_none", 401, _invalid("malformed token signature")),
    Kind("garbage", 401, _invalid("not a JWS compact serialization")),
    Kind("no_token", 401, "Bearer"),
    Kind("no_cert", 401, _invalid("client certificate required"), with_cert=False),
]}

DEFAULT_MIX = ("valid_fresh=35,valid_hot=20,replay=8,unbound=5,expired=6,bad_signature=6,"
               "alg_none=5,garbage=5,no_token=5,no_cert=5")


def parse_mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if name not in KINDS:
            raise ValueError(f"unknown request kind {name!r}; known: {', '.join(KINDS)}")
        mix[name] = float(weight or 1)
    if not mix or sum(mix.values()) <= 0:
        raise ValueError("the mix is empty")
    return mix


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Minter:
    """Tokens bound to one client certificate; replays are bound to another."""

    def __init__(self, key: Any, thumbprint: str, other_thumbprint: str, lifetime: int) -> None:
        self.key = key
        self.cnf = {"x5t#S256": thumbprint}
        self.other_cnf = {"x5t#S256": other_thumbprint}
        self.lifetime = lifetime
        self.hot = [self.valid() for _ in range(4)]

    def valid(self, **kw: Any) -> str:
        kw.setdefault("cnf", self.cnf)
        kw.setdefault("expires_in", self.lifetime)
        return demo.mint(self.key, demo.IDP_ALG, kid=demo.IDP_KID, **kw)

    def make(self, kind: str, rng: random.Random) -> str | None:
        if kind == "valid_fresh" or kind == "no_cert":
            return self.valid()
        if kind == "valid_hot":
            return rng.choice(self.hot)
        if kind == "replay":
            return self.valid(cnf=self.other_cnf)
        if kind == "unbound":
            return demo.mint(self.key, demo.IDP_ALG, kid=demo.IDP_KID, expires_in=300)
        if kind == "expired":
            return self.valid(expires_in=-3600)
        if kind == "bad_signature":
            h, p, s = self.valid().split(".")
            raw = bytearray(base64.urlsafe_b64decode(s + "=="))
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            return f"{h}.{p}.{b64u(bytes(raw))}"
        if kind == "alg_none":
            _, p, _ = self.valid().split(".")
            return f"{b64u(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{p}."
        if kind == "garbage":
            return b64u(os.urandom(rng.randrange(8, 200)))
        if kind == "no_token":
            return None
        raise ValueError(kind)


# ---------------------------------------------------------------------------
# options and results
# ---------------------------------------------------------------------------


@dataclass
class Options:
    seconds: float = 600.0
    concurrency: int = 8
    mix: str = DEFAULT_MIX
    jwt_cache_size: int = 64
    client_certs: int = 300
    reconnect_every: int = 20
    envoy_concurrency: int = 1
    warmup: float = 3.0
    sample_interval: float = 0.5
    rss_margin_mb: float = 8.0
    rss_margin_pct: float = 5.0
    timeout: float = 5.0
    faults: list[str] = field(default_factory=list)
    phase_seconds: float = 2.0
    ok_seconds: float = 3.0
    cache_duration: str = "1s"
    jwks_timeout: str = "0.5s"
    wasm_log_level: str = "info"
    seed: int = 8705


@dataclass
class Result:
    passed: bool
    failures: list[str]
    seconds: float = 0.0
    requests: int = 0
    rate: float = 0.0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    stats_delta: dict[str, int] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    log: str = ""
    envoy_cpu_seconds: float = 0.0

    def summary(self) -> str:
        m = self.memory
        lines = [
            f"soak: {'PASS' if self.passed else 'FAIL'}: {self.requests} requests in "
            f"{self.seconds:.1f} s ({self.rate:.0f}/s); Envoy used {self.envoy_cpu_seconds:.1f} CPU-s "
            f"({1e6 * self.envoy_cpu_seconds / max(self.requests, 1):.0f} us/request)",
            "  by kind: " + ", ".join(f"{k} {sum(v.values())}" for k, v in sorted(self.by_kind.items())),
            "  latency ms: " + ", ".join(f"{k} {v:.1f}" for k, v in self.latency_ms.items()),
            "  /stats delta: " + ", ".join(f"{k.removeprefix(STAT)} {v}"
                                            for k, v in sorted(self.stats_delta.items())),
        ]
        if m:
            lines.append(
                f"  envoy RSS MiB: start {m['rss_start'] / MiB:.1f}, first-third max "
                f"{m['rss_first_max'] / MiB:.1f}, last-third max {m['rss_last_max'] / MiB:.1f} "
                f"(allowed {m['rss_limit'] / MiB:.1f}), end {m['rss_end'] / MiB:.1f}; "
                f"tcmalloc allocated MiB: first-third max {m['alloc_first_max'] / MiB:.1f}, "
                f"last-third max {m['alloc_last_max'] / MiB:.1f}; {m['samples']} samples")
        for f in self.faults:
            lines.append(f"  fault {f['mode']}: {f['jwks_requests']} JWKS request(s) reached it, "
                         f"{f['upstream_cx_connect_fail']} refused, {f['upstream_rq_timeout']} timed out, "
                         f"fetch failed +{f['fetch_failed']}, then keys refreshed "
                         f"+{f['recovered_fetch_ok']}; valid requests during it: {f['valid_ok']} "
                         f"accepted, {f['valid_bad']} not"
                         + ("" if f["complete"] else " (cut short by the end of the run)"))
        if self.errors:
            lines.append(f"  errors: {self.errors}")
        lines += [f"  FAILURE: {f}" for f in self.failures]
        lines.append(f"  envoy log: {self.log}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# Envoy
# ---------------------------------------------------------------------------


class SoakEnvoy(harness.Envoy):
    """harness.Envoy with a chosen worker count and wasm log level."""

    def __init__(self, name: str, cfg: dict[str, Any], root: Path, workdir: Path,
                 jwks_text: str | None, concurrency: int, wasm_log_level: str,
                 extra_args: list[str] | None = None) -> None:
        super().__init__(name, cfg, root, workdir, jwks_text)
        self.concurrency = concurrency
        self.wasm_log_level = wasm_log_level
        self.extra_args = list(extra_args or [])

    def rss(self) -> int:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def cpu_seconds(self) -> float:
        """utime + stime of the Envoy process, all threads."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def allocated(self) -> int:
        return int(json.loads(self.admin_get("/memory"))["allocated"])


def soak_config(backend_port: int, opts: Options, jwks_uri: str | None) -> dict[str, Any]:
    """The shipped envoy.yaml (ports rewritten), the given jwt_cache_size and,
    with ``jwks_uri``, remote_jwks from it through a ``soak_jwks`` cluster."""
    cfg = harness.scenario_config(backend_port)
    pj = harness.plugin_json(cfg)
    pj["jwt_cache_size"] = opts.jwt_cache_size
    if jwks_uri is not None:
        idp = pj["providers"]["idp"]
        idp.pop("local_jwks")
        idp["remote_jwks"] = {
            "http_uri": {"uri": jwks_uri, "cluster": JWKS_CLUSTER, "timeout": opts.jwks_timeout},
            "cache_duration": opts.cache_duration,
        }
        port = int(jwks_uri.split(":")[2].split("/")[0])
        cfg["static_resources"]["clusters"].append({
            "name": JWKS_CLUSTER, "type": "STATIC", "connect_timeout": "0.25s",
            "load_assignment": {"cluster_name": JWKS_CLUSTER, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                             "port_value": port}}}}]}]},
        })
    harness.set_plugin_json(cfg, pj)
    return cfg


class _NoDelayEcho(demo.EchoHandler):
    # demo.EchoHandler writes the headers and the body separately; with
    # Nagle's algorithm on, the body waits for the delayed ACK (~40 ms).
    disable_nagle_algorithm = True


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A connection Envoy resets is not the backend's failure (and any
        # request it costs shows up as a non-200 on the client side).
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class CountingBackend:
    """The demo echo backend (TCP_NODELAY), counting instead of keeping every request."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        srv = _QuietServer(("127.0.0.1", 0), _NoDelayEcho)
        srv.on_request = self._seen  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, name="soak-backend", daemon=True).start()
        self.server = srv
        self.port = srv.server_address[1]

    def _seen(self, _req: dict[str, Any]) -> None:
        with self._lock:
            self.count += 1

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------


class Tally:
    """Per-worker counters, merged at the end (no lock on the hot path)."""

    def __init__(self) -> None:
        self.by_kind: dict[str, Counter[str]] = defaultdict(Counter)
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.wrong: list[str] = []
        self.ok_200 = 0
        self.got_401 = 0
        self.other = 0
        # (monotonic time, kind, passed?) of valid requests, for the fault phases
        self.valid_log: list[tuple[float, bool]] = []


def _connection(port: int, pki: harness.Pki, client: harness.Client | None,
                timeout: float) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                       context=harness.tls_context(pki.ca, client))


class Clients:
    """The client certificates the workers rotate through: client-a,
    client-b and ``n - 2`` more from the same CA (written to ``workdir``),
    each with its own Minter, made on first use."""

    def __init__(self, pki: harness.Pki, workdir: Path, n: int, lifetime: int) -> None:
        self.pki, self.lifetime = pki, lifetime
        self.clients = [pki.client_a, pki.client_b]
        if n > 2:
            out = workdir / "soak-clients"
            out.mkdir(exist_ok=True)
            ca_key, ca = demo.load_key(pki.certs / "ca-key.pem"), demo.load_cert(pki.ca)
            for i in range(n - 2):
                key, cert = demo.issue_cert(ca_key, ca, f"soak-client-{i}")
                c = harness.Client(f"soak-client-{i}", out / f"c{i}.pem", out / f"c{i}-key.pem")
                c.cert.write_bytes(demo.cert_pem(cert))
                c.key.write_bytes(demo.key_pem(key))
                self.clients.append(c)
        self.thumbprints = [demo.thumbprint(c.cert) for c in self.clients]
        self._minters: dict[int, Minter] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.clients)

    def minter(self, i: int) -> Minter:
        with self._lock:
            m = self._minters.get(i)
        if m is None:
            m = Minter(self.pki.idp_key, self.thumbprints[i],
                       self.thumbprints[(i + 1) % len(self)], self.lifetime)
            with self._lock:
                m = self._minters.setdefault(i, m)
        return m


def _worker(idx: int, envoy: SoakEnvoy, pki: harness.Pki, clients: Clients,
            mix: dict[str, float], opts: Options, stop: threading.Event, tally: Tally) -> None:
    rng = random.Random(opts.seed * 1000 + idx)
    ci = idx % len(clients)  # this worker's current client certificate
    conns: dict[bool, http.client.HTTPSConnection] = {
        True: _connection(envoy.port, pki, clients.clients[ci], opts.timeout),
        False: _connection(envoy.port, pki, None, opts.timeout),
    }
    on_conn = 0
    names, weights = list(mix), list(mix.values())
    seq = 0
    while not stop.is_set():
        kind = KINDS[rng.choices(names, weights)[0]]
        if kind.with_cert:
            if opts.reconnect_every and on_conn >= opts.reconnect_every:
                # Next certificate: a new TLS connection with another client.
                conns[True].close()
                ci = (ci + opts.concurrency) % len(clients)
                conns[True] = _connection(envoy.port, pki, clients.clients[ci], opts.timeout)
                on_conn = 0
            on_conn += 1
        token = clients.minter(ci).make(kind.name, rng)
        seq += 1
        path = f"/soak/{idx}/{seq}"
        headers = {"host": "localhost"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        conn = conns[kind.with_cert]
        t0 = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            status = resp.status
            challenge = resp.getheader("www-authenticate")
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
        except TimeoutError:
            tally.errors["timeout (hung request)"] += 1
            conn.close()
            continue
        except (OSError, http.client.HTTPException) as e:
            tally.errors[f"{type(e).__name__}"] += 1
            conn.close()
            continue
        elapsed = time.perf_counter() - t0
        tally.latencies.append(elapsed)
        tally.by_kind[kind.name][str(status)] += 1
        if status == 200:
            tally.ok_200 += 1
        elif status == 401:
            tally.got_401 += 1
        else:
            tally.other += 1
        good = status == kind.status and challenge == kind.challenge
        if good and status == 200:
            # The backend's echo of *this* request: no cross-talk.
            good = f'"path": "{path}"'.encode() in body
        if kind.status == 200:
            tally.valid_log.append((time.monotonic(), good))
        if not good and len(tally.wrong) < 20:
            tally.wrong.append(f"{kind.name} {path}: got {status} {challenge!r} body={body[:120]!r}, "
                               f"expected {kind.status} {kind.challenge!r}")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run(opts: Options, pki: harness.Pki, workdir: Path, name: str = "soak",
        log: Callable[[str], None] = lambda s: None) -> Result:
    """One soak run with the session's PKI; Envoy's files go to ``workdir``."""
    mix = parse_mix(opts.mix)
    failures: list[str] = []
    backend = CountingBackend()
    jwks: FaultyJwks | None = None
    envoy: SoakEnvoy | None = None
    try:
        if opts.faults:
            jwks = FaultyJwks(pki.idp_jwks_text, slow_seconds=4 * _seconds(opts.jwks_timeout))
        cfg = soak_config(backend.port, opts, jwks.uri if jwks else None)
        envoy = SoakEnvoy(name, cfg, pki.root, workdir, None if jwks else pki.idp_jwks_text,
                          opts.envoy_concurrency, opts.wasm_log_level)
        envoy.start()
        log(f"envoy up on :{envoy.port} (log {envoy.log_path}), "
            f"{'remote_jwks ' + jwks.uri if jwks else 'local_jwks'}")
        clients = Clients(pki, workdir, opts.client_certs, lifetime=int(opts.seconds) + 600)
        _wait_until_accepted(envoy, pki, clients.minter(0), opts.timeout)
        before = envoy.stats()
        rss_start = envoy.rss()
        cpu_start = envoy.cpu_seconds()

        stop = threading.Event()
        tallies = [Tally() for _ in range(opts.concurrency)]
        threads = [threading.Thread(target=_worker, name=f"soak-{i}", daemon=True,
                                    args=(i, envoy, pki, clients, mix, opts, stop, tallies[i]))
                   for i in range(opts.concurrency)]
        samples: list[tuple[float, int, int]] = []
        phases: list[dict[str, Any]] = []
        t_start = time.monotonic()
        for t in threads:
            t.start()
        sampler = threading.Thread(target=_sample, daemon=True,
                                   args=(envoy, opts, t_start, stop, samples))
        sampler.start()
        faulter = None
        if jwks is not None:
            faulter = threading.Thread(target=_cycle_faults, daemon=True,
                                       args=(envoy, jwks, opts, t_start, stop, phases, log))
            faulter.start()
        while time.monotonic() - t_start < opts.seconds:
            time.sleep(min(1.0, max(0.0, opts.seconds - (time.monotonic() - t_start))))
            if envoy.proc is not None and envoy.proc.poll() is not None:
                failures.append(f"Envoy exited with {envoy.proc.returncode} during the run")
                break
        stop.set()
        for t in threads:
            t.join(timeout=opts.timeout + 5)
            if t.is_alive():
                failures.append(f"worker {t.name} did not finish (hung)")
        elapsed = time.monotonic() - t_start
        sampler.join(timeout=5)
        if faulter is not None:
            faulter.join(timeout=opts.phase_seconds + opts.ok_seconds + 10)
        time.sleep(0.2)  # let Envoy finish counting the last responses
        after = envoy.stats()
        envoy_cpu = envoy.cpu_seconds() - cpu_start

        # -- merge and judge ------------------------------------------------
        by_kind: dict[str, Counter[str]] = defaultdict(Counter)
        errors: Counter[str] = Counter()
        latencies: list[float] = []
        wrong: list[str] = []
        ok_200 = got_401 = other = 0
        valid_log: list[tuple[float, bool]] = []
        for t in tallies:
            for k, c in t.by_kind.items():
                by_kind[k].update(c)
            errors.update(t.errors)
            latencies += t.latencies
            wrong += t.wrong
            ok_200 += t.ok_200
            got_401 += t.got_401
            other += t.other
            valid_log += t.valid_log
        requests = sum(sum(c.values()) for c in by_kind.values())
        if wrong:
            failures.append(f"{len(wrong)}+ unexpected responses, e.g.: " + " | ".join(wrong[:5]))
        if errors:
            failures.append(f"requests without a response: {dict(errors)}")
        if other:
            failures.append(f"{other} responses neither 200 nor 401")
        fivexx = sum(v for c in by_kind.values() for s, v in c.items() if s.startswith("5"))
        if fivexx:
            failures.append(f"{fivexx} 5xx responses")
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in (
            STAT + "allowed", STAT + "denied", STAT + "cache_hit", STAT + "cache_miss",
            P + "jwks_fetch_success", P + "jwks_fetch_failed",
            "http.certbound_https.downstream_rq_5xx", "http.certbound_https.downstream_cx_total")}
        if delta["http.certbound_https.downstream_rq_5xx"]:
            failures.append(f"Envoy counted {delta['http.certbound_https.downstream_rq_5xx']} 5xx")
        if not errors:
            if delta[STAT + "allowed"] != ok_200 or delta[STAT + "denied"] != got_401:
                failures.append(
                    f"/stats allowed +{delta[STAT + 'allowed']} denied +{delta[STAT + 'denied']}, "
                    f"but {ok_200} x 200 and {got_401} x 401 were received")
        if backend.count < ok_200:
            failures.append(f"the backend saw {backend.count} requests, {ok_200} were answered 200")
        bad_lines = envoy.vm_failures()
        if bad_lines:
            failures.append(f"{len(bad_lines)} VM failure line(s) in Envoy's log: {bad_lines[:3]}")
        if requests == 0:
            failures.append("no request completed")

        memory = _judge_memory(samples, opts, rss_start, envoy.rss(), failures)
        faults = _judge_faults(phases, valid_log, jwks, after, failures) if jwks else []
        return Result(
            passed=not failures, failures=failures, seconds=elapsed, requests=requests,
            rate=requests / elapsed if elapsed else 0.0,
            by_kind={k: dict(v) for k, v in by_kind.items()}, errors=dict(errors),
            latency_ms={"p50": 1000 * _percentile(latencies, 0.5),
                        "p99": 1000 * _percentile(latencies, 0.99),
                        "max": 1000 * max(latencies, default=0.0),
                        "mean": 1000 * (statistics.fmean(latencies) if latencies else 0.0)},
            stats_delta=delta, memory=memory, faults=faults, log=str(envoy.log_path),
            envoy_cpu_seconds=envoy_cpu)
    finally:
        if envoy is not None:
            envoy.stop()
        if jwks is not None:
            jwks.close()
        backend.close()


def _seconds(duration: str) -> float:
    return float(duration.rstrip("s"))


def _wait_until_accepted(envoy: SoakEnvoy, pki: harness.Pki, minter: Minter, timeout: float) -> None:
    """First keys: poll one valid request until it is accepted (remote_jwks)."""
    deadline = time.monotonic() + 20
    while True:
        conn = _connection(envoy.port, pki, pki.client_a, timeout)
        try:
            conn.request("GET", "/soak/warmup", headers={"host": "localhost",
                                                         "authorization": f"Bearer {minter.valid()}"})
            status = conn.getresponse().status
        finally:
            conn.close()
        if status == 200:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"a valid token is not accepted (last status {status}):\n"
                                 + envoy.log_tail(30))
        time.sleep(0.1)


def _sample(envoy: SoakEnvoy, opts: Options, t_start: float, stop: threading.Event,
            samples: list[tuple[float, int, int]]) -> None:
    while not stop.wait(opts.sample_interval):
        t = time.monotonic() - t_start
        if t < opts.warmup:
            continue
        try:
            samples.append((t, envoy.rss(), envoy.allocated()))
        except (OSError, ValueError, KeyError):
            pass


def _judge_memory(samples: list[tuple[float, int, int]], opts: Options, rss_start: int,
                  rss_end: int, failures: list[str]) -> dict[str, Any]:
    if len(samples) < 6:
        failures.append(f"only {len(samples)} memory samples (run longer than --warmup)")
        return {}
    t0, t1 = samples[0][0], samples[-1][0]
    third = (t1 - t0) / 3
    first = [s for s in samples if s[0] <= t0 + third]
    last = [s for s in samples if s[0] >= t1 - third]
    rss_first, rss_last = max(s[1] for s in first), max(s[1] for s in last)
    limit = rss_first + max(opts.rss_margin_mb * MiB, rss_first * opts.rss_margin_pct / 100)
    if rss_last > limit:
        failures.append(f"Envoy RSS grew: last third max {rss_last / MiB:.1f} MiB > first third max "
                        f"{rss_first / MiB:.1f} MiB + margin = {limit / MiB:.1f} MiB")
    return {
        "samples": len(samples), "rss_start": rss_start, "rss_end": rss_end,
        "rss_first_max": rss_first, "rss_last_max": rss_last, "rss_limit": limit,
        "alloc_first_max": max(s[2] for s in first), "alloc_last_max": max(s[2] for s in last),
        "series": [(round(t, 2), r, a) for t, r, a in samples],
    }


def _cycle_faults(envoy: SoakEnvoy, jwks: FaultyJwks, opts: Options, t_start: float,
                  stop: threading.Event, phases: list[dict[str, Any]],
                  log: Callable[[str], None]) -> None:
    """ok -> fault -> ok -> next fault ... until the run ends. A fault's
    failed fetches and its recovery are counted until the next fault: a
    fetch in flight when the fault ends may still fail, and the retry
    backoff (0.5 s, 1 s, 2 s ...) decides when the next success comes."""
    if stop.wait(opts.ok_seconds):
        return
    i = 0
    while not stop.is_set():
        mode = opts.faults[i % len(opts.faults)]
        i += 1
        s0 = envoy.stats()
        hits0 = jwks.count()
        phase = {"mode": mode, "start": time.monotonic(), "fetch_failed": 0, "jwks_requests": 0,
                 "recovered_fetch_ok": 0}
        jwks.set_mode(mode)
        log(f"  {time.monotonic() - t_start:5.1f} s: JWKS endpoint -> {mode}")
        stopped = stop.wait(opts.phase_seconds)
        s1 = envoy.stats()
        phase["jwks_requests"] = jwks.count() - hits0
        jwks.set_mode("ok")
        phase["end"] = time.monotonic()
        log(f"  {time.monotonic() - t_start:5.1f} s: JWKS endpoint -> ok")
        if not stopped:
            stopped = stop.wait(opts.ok_seconds)
        s2 = envoy.stats()
        phase["fetch_failed"] = s2.get(P + "jwks_fetch_failed", 0) - s0.get(P + "jwks_fetch_failed", 0)
        # Envoy's view of the fetches (the cluster's stats).
        for stat in ("upstream_cx_connect_fail", "upstream_rq_timeout", "upstream_rq_5xx",
                     "upstream_cx_destroy_remote_with_active_rq", "upstream_rq_200"):
            name = f"cluster.{JWKS_CLUSTER}.{stat}"
            phase[stat] = s2.get(name, 0) - s0.get(name, 0)
        phase["recovered_fetch_ok"] = (s2.get(P + "jwks_fetch_success", 0)
                                       - s1.get(P + "jwks_fetch_success", 0))
        phase["complete"] = not stopped
        phases.append(phase)


def _judge_faults(phases: list[dict[str, Any]], valid_log: list[tuple[float, bool]],
                  jwks: FaultyJwks, after: dict[str, int], failures: list[str]) -> list[dict[str, Any]]:
    out = []
    seen_modes = set()
    for ph in phases:
        during = [ok for t, ok in valid_log if ph["start"] <= t <= ph["end"]]
        ph["valid_ok"], ph["valid_bad"] = sum(during), len(during) - sum(during)
        if ph["valid_bad"]:
            failures.append(f"{ph['valid_bad']} valid request(s) refused while the JWKS endpoint "
                            f"was {ph['mode']}")
        if ph["complete"]:
            seen_modes.add(ph["mode"])
            if ph["jwks_requests"] == 0 and ph["mode"] != "refuse":
                failures.append(f"no JWKS refresh reached the endpoint while it was {ph['mode']}")
            if ph["fetch_failed"] == 0:
                failures.append(f"no failed JWKS fetch while the endpoint was {ph['mode']}")
            if ph["recovered_fetch_ok"] == 0:
                failures.append(f"keys not refreshed again after {ph['mode']}")
            # The fault was the one intended, as Envoy saw it.
            expect = {"refuse": "upstream_cx_connect_fail", "slow": "upstream_rq_timeout"}
            if ph["mode"] in expect and ph[expect[ph["mode"]]] == 0:
                failures.append(f"{ph['mode']}: cluster.{JWKS_CLUSTER}.{expect[ph['mode']]} did not move")
        out.append({k: v for k, v in ph.items() if k not in ("start", "end")})
    modes = {ph["mode"] for ph in phases}
    if not seen_modes:
        failures.append("the run was too short for a complete fault phase")
    if after.get(P + "keys_loaded", 0) < 1:
        failures.append("no keys loaded at the end")
    return out if modes else []


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    d = Options()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--seconds", type=float, default=d.seconds, help="traffic duration (default 600)")
    p.add_argument("--concurrency", type=int, default=d.concurrency,
                   help="client threads, each with persistent connections (default 8)")
    p.add_argument("--mix", default=d.mix, help=f"kind=weight,... (default {d.mix})")
    p.add_argument("--jwt-cache-size", type=int, default=d.jwt_cache_size)
    p.add_argument("--client-certs", type=int, default=d.client_certs,
                   help="distinct client certificates the connections rotate through (>= 2)")
    p.add_argument("--reconnect-every", type=int, default=d.reconnect_every,
                   help="requests per mTLS connection before the next certificate (0: never)")
    p.add_argument("--envoy-concurrency", type=int, default=d.envoy_concurrency,
                   help="Envoy worker threads (default 1)")
    p.add_argument("--warmup", type=float, default=d.warmup,
                   help="seconds before memory sampling starts")
    p.add_argument("--sample-interval", type=float, default=d.sample_interval)
    p.add_argument("--rss-margin-mb", type=float, default=d.rss_margin_mb)
    p.add_argument("--rss-margin-pct", type=float, default=d.rss_margin_pct)
    p.add_argument("--timeout", type=float, default=d.timeout,
                   help="client timeout per request; reaching it fails the run")
    p.add_argument("--faults", default="",
                   help="comma-separated JWKS failure modes to cycle (slow,refuse,5xx,garbage,"
                        "truncated,reset); switches the provider to remote_jwks")
    p.add_argument("--phase-seconds", type=float, default=d.phase_seconds,
                   help="how long each fault lasts")
    p.add_argument("--ok-seconds", type=float, default=d.ok_seconds,
                   help="healthy time before the first and after each fault")
    p.add_argument("--cache-duration", default=d.cache_duration)
    p.add_argument("--wasm-log-level", default=d.wasm_log_level,
                   help="Envoy's wasm log level (debug logs a line per denial)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--report", type=Path, help="write the result as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    opts = Options(seconds=args.seconds, concurrency=args.concurrency, mix=args.mix,
                   jwt_cache_size=args.jwt_cache_size, client_certs=max(2, args.client_certs),
                   reconnect_every=args.reconnect_every, envoy_concurrency=args.envoy_concurrency,
                   warmup=args.warmup, sample_interval=args.sample_interval,
                   rss_margin_mb=args.rss_margin_mb, rss_margin_pct=args.rss_margin_pct,
                   timeout=args.timeout, faults=[f for f in args.faults.split(",") if f],
                   phase_seconds=args.phase_seconds, ok_seconds=args.ok_seconds,
                   cache_duration=args.cache_duration,
                   wasm_log_level=args.wasm_log_level, seed=args.seed)
    parse_mix(opts.mix)
    unknown = [f for f in opts.faults if f not in FAULT_MODES or f == "ok"]
    if unknown:
        p.error(f"--faults: unknown mode(s) {','.join(unknown)}; "
                f"choose from {','.join(m for m in FAULT_MODES if m != 'ok')}")
    for path in (harness.ENVOY_BIN, harness.WASM):
        if not Path(path).exists():
            print(f"soak: {path} is missing (make venv build)", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="certbound-soak-"))
    passed = False
    try:
        pki = harness.build_pki(tmp / "root")
        workdir = tmp / "envoy"
        workdir.mkdir()
        print(f"soak: {opts.seconds:g} s, {opts.concurrency} client threads, mix {opts.mix}, "
              f"jwt_cache_size {opts.jwt_cache_size}"
              + (f", faults {','.join(opts.faults)}" if opts.faults else ""), flush=True)
        result = run(opts, pki, workdir, log=lambda s: print(s, flush=True))
        print(result.summary(), flush=True)
        if args.report:
            args.report.write_text(json.dumps(asdict(result), indent=1) + "\n")
        passed = result.passed
        return 0 if passed else 1
    finally:
        if args.keep or not passed:
            print(f"soak: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
