"""A short soak in `make test`: tests/soak/soak.py for CERTBOUND_SOAK_SECONDS
(default 15) through one Envoy with the shipped config, real mTLS, eight
client threads on persistent connections and the default mix of valid and
invalid requests (see soak.py's docstring for the kinds and pass criteria:
exact responses, no 5xx, no hung requests, /stats equal to what was
received, no VM failure in the log, flat RSS).

The long run is by hand, with the same code:

    make soak                      # 600 s; SOAK_SECONDS=... SOAK_ARGS='...'

``jwt_cache_size`` is 64 while almost every valid token is new, so the
verified-token cache is full from the first second and must evict; each
client thread moves to the next of 300 client certificates every 10
requests, so the per-VM certificate-thumbprint cache (256 entries) fills
and starts over too. The memory check then shows both stay bounded.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import harness

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "soak"))
import soak  # noqa: E402  (tests/soak/soak.py)

SECONDS = float(os.environ.get("CERTBOUND_SOAK_SECONDS", "15"))


def test_short_soak(pki: harness.Pki, envoy_workdir: Path) -> None:
    opts = soak.Options(seconds=SECONDS, concurrency=8, jwt_cache_size=64, client_certs=300,
                        reconnect_every=10, warmup=3.0)
    result = soak.run(opts, pki, envoy_workdir, name="soak")
    print("\n" + result.summary())
    assert result.passed, result.summary()

    # Every kind of request was sent, and the numbers add up.
    assert set(result.by_kind) == set(soak.parse_mix(opts.mix)), result.by_kind
    delta = result.stats_delta
    assert delta[soak.STAT + "allowed"] + delta[soak.STAT + "denied"] == result.requests
    # The cache had to evict: far more distinct tokens than entries.
    assert delta[soak.STAT + "cache_miss"] > 10 * opts.jwt_cache_size, delta
    # ... and so did the certificate cache: more connections (certificates) than it holds.
    assert delta["http.certbound_https.downstream_cx_total"] > 256, delta
    assert result.memory["samples"] >= 6
