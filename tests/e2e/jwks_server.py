"""A controllable JWKS endpoint for the remote_jwks e2e tests, plus the
Envoy configuration that reaches it.

``JwksServer`` is a small threaded HTTP/1.1 server on 127.0.0.1 (a free port,
kept for its whole life). The test swaps the document it serves, reads how
many requests it got (and waits for that count to change), and switches it
between modes:

* ``ok``       200 with the current JWKS document;
* ``slow``     the same, after a delay (``set_slow(seconds)``);
* ``status``   a 5xx (or any status) with a small text body;
* ``garbage``  200 with a body that is not a JWKS (not even JSON);
* ``down``     the listener is closed: connections are refused
               (``down()``; ``up()`` binds the same port again).

``remote_jwks_config`` builds an Envoy config from the shipped
envoy/envoy.yaml (via the harness) with an extra ``idp_jwks`` cluster that
points at the server, and ``RemoteEnvoy`` runs it with a chosen
``--concurrency`` (the harness's Envoy always uses 1).
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import harness

JWKS_PATH = "/jwks"
CLUSTER = "idp_jwks"
GARBAGE = b"<html><body>502 Bad Gateway (not a JWKS)</body></html>\n"


@dataclass(frozen=True)
class Hit:
    """One request the server received, and what it was answered."""

    at: float  # time.monotonic() when it arrived
    method: str
    path: str
    headers: dict[str, str]
    mode: str


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Http"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.owner._serve(self)

    def log_message(self, fmt: str, *args: Any) -> None:
        pass


class _Http(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # so up() can bind the same port again at once
    owner: "JwksServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Envoy resetting a keep-alive connection (at shutdown, after a
        # timeout) is routine here; anything else is still reported.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class JwksServer:
    def __init__(self, jwks: dict[str, Any] | str | None = None) -> None:
        self._cond = threading.Condition()
        self._hits: list[Hit] = []
        self._body = b'{"keys": []}'
        self._mode = "ok"
        self._delay = 0.0
        self._status = 503
        self._closing = threading.Event()
        self._httpd: _Http | None = None
        self._thread: threading.Thread | None = None
        if jwks is not None:
            self.set_jwks(jwks)
        self.port = 0
        self.up()

    # -- lifecycle --------------------------------------------------------
    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}{JWKS_PATH}"

    @property
    def is_up(self) -> bool:
        return self._httpd is not None

    def up(self) -> None:
        """Listen (again, on the same port once one was chosen)."""
        if self._httpd is not None:
            return
        httpd = _Http(("127.0.0.1", self.port), _Handler)
        httpd.owner = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"jwks-server-{self.port}", daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Close the listener: new connections to the port are refused.
        Connections already accepted are left to finish."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def close(self) -> None:
        self._closing.set()  # cut short any slow response
        self.down()

    def __enter__(self) -> "JwksServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- behaviour --------------------------------------------------------
    def set_jwks(self, jwks: dict[str, Any] | str) -> None:
        text = jwks if isinstance(jwks, str) else json.dumps(jwks)
        with self._cond:
            self._body = text.encode()

    def set_ok(self) -> None:
        with self._cond:
            self._mode, self._delay = "ok", 0.0

    def set_slow(self, seconds: float) -> None:
        with self._cond:
            self._mode, self._delay = "slow", seconds

    def set_status(self, status: int = 503) -> None:
        with self._cond:
            self._mode, self._status = "status", status

    def set_garbage(self) -> None:
        with self._cond:
            self._mode = "garbage"

    @property
    def mode(self) -> str:
        return self._mode if self.is_up else "down"

    # -- observation ------------------------------------------------------
    @property
    def count(self) -> int:
        with self._cond:
            return len(self._hits)

    @property
    def hits(self) -> list[Hit]:
        with self._cond:
            return list(self._hits)

    def wait_for_count(self, n: int, timeout: float = 10.0) -> int:
        """Block until at least ``n`` requests arrived; return the count.
        Raises AssertionError at the deadline."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._hits) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"JWKS server got {len(self._hits)} request(s), expected >= {n} "
                        f"within {timeout}s")
                self._cond.wait(left)
            return len(self._hits)

    # -- serving ----------------------------------------------------------
    def _serve(self, h: _Handler) -> None:
        with self._cond:
            mode, delay, status, body = self._mode, self._delay, self._status, self._body
            self._hits.append(Hit(time.monotonic(), h.command, h.path,
                                  {k.lower(): v for k, v in h.headers.items()}, mode))
            self._cond.notify_all()
        if mode == "slow" and self._closing.wait(delay):
            return  # closing: drop the connection unanswered
        ctype = "application/jwk-set+json"
        if mode == "status":
            body, ctype = f"{status} from the test JWKS server\n".encode(), "text/plain"
        elif mode == "garbage":
            status, body, ctype = 200, GARBAGE, "text/html"
        else:
            status = 200
        if urllib.parse.urlsplit(h.path).path != JWKS_PATH:
            status, body, ctype = 404, b"not found\n", "text/plain"
        try:
            h.send_response(status)
            h.send_header("content-type", ctype)
            h.send_header("content-length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except OSError:
            pass  # Envoy gave up (timeout): nothing to answer


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

    def spawn(self) -> None:
        # harness.Envoy.spawn's command line, with our --concurrency.
        self.config_path.write_text(yaml.safe_dump(self.cfg, sort_keys=False))
        self.admin_path.unlink(missing_ok=True)
        self.admin = ""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(harness.ENVOY_BIN), "-c", str(self.config_path),
                 "--concurrency", str(self.concurrency), "--disable-hot-restart",
                 "--admin-address-path", str(self.admin_path),
                 "--log-level", "info", "--component-log-level", "wasm:debug"],
                cwd=self.root, env=harness.envoy_env(None),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

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
