"""The Envoy side of the remote_jwks e2e tests, around the one controllable
JWKS server (``JwksServer``: tests/soak/faulty_jwks.py's ``FaultyJwks``,
shared with the soak and the fault tests; its docstring lists the modes).

``remote_jwks_config`` builds an Envoy config from the shipped
envoy/envoy.yaml (via the harness) with an extra ``idp_jwks`` cluster that
points at the server, and ``RemoteEnvoy`` runs it with a chosen
``--concurrency`` (the harness's Envoy always uses 1).
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from typing import Any


import harness

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "soak"))
from faulty_jwks import FaultyJwks as JwksServer  # noqa: E402

__all__ = ["CLUSTER", "JwksServer", "RemoteEnvoy", "free_port_is_refused", "remote_jwks_config"]

CLUSTER = "idp_jwks"


# ---------------------------------------------------------------------------
# Envoy with an idp_jwks cluster and a remote_jwks provider
# ---------------------------------------------------------------------------


def remote_jwks_config(
    backend_port: int,
    server: JwksServer,
    *,
    timeout: str = "1s",
    cache_duration: str = "300s",
    min_refetch_interval: str = "30s",
    top_level: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The shipped envoy.yaml (ports rewritten by the harness) whose ``idp``
    provider fetches its keys from ``server`` through a new ``idp_jwks``
    cluster instead of reading CERTBOUND_JWKS. ``top_level`` adds plugin JSON
    fields such as ``jwt_cache_size``."""
    cfg = harness.scenario_config(backend_port)
    pj = harness.plugin_json(cfg)
    idp = pj["providers"]["idp"]
    idp.pop("local_jwks")
    idp["remote_jwks"] = {
        "http_uri": {"uri": server.uri, "cluster": CLUSTER, "timeout": timeout},
        "cache_duration": cache_duration,
        "min_refetch_interval": min_refetch_interval,
    }
    pj.update(top_level or {})
    harness.set_plugin_json(cfg, pj)
    cfg["static_resources"]["clusters"].append({
        "name": CLUSTER,
        "type": "STATIC",
        "connect_timeout": "0.5s",
        "load_assignment": {
            "cluster_name": CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": server.port}}}}]}],
        },
    })
    return cfg


class RemoteEnvoy(harness.Envoy):
    """harness.Envoy with a chosen ``--concurrency`` (worker threads)."""

    def __init__(self, name: str, cfg: dict[str, Any], root: Path, workdir: Path,
                 concurrency: int = 1) -> None:
        # No CERTBOUND_JWKS in the environment: the keys must come from the server.
        super().__init__(name, cfg, root, workdir, jwks_text=None)
        self.concurrency = concurrency

    # -- admin helpers ----------------------------------------------------
    def wait_for_stat(self, name: str, at_least: int, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            value = self.stat(name)
            if value >= at_least:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} = {value}, expected >= {at_least} within {timeout}s\n"
                                     + self.log_tail(20))
            harness._poll_sleep(self.proc)


def free_port_is_refused(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port (a connect is refused)."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0
