"""A JWKS endpoint whose failure mode can be switched while Envoy polls it:
the one controllable JWKS server of the soak, the fault tests and the
remote_jwks end-to-end tests (tests/e2e/jwks_server.py adds the Envoy side).

Modes (``server.set_mode(name)``, or the helpers in brackets):

  ok        200, the JWKS (``application/jwk-set+json``)   [set_ok()]
  slow      the JWKS, but only after ``slow_seconds`` (beyond Envoy's
            http_uri.timeout, so the fetch times out)   [set_slow(seconds)]
  refuse    the listening socket is closed and kept-alive connections are
            dropped: connections are refused   [down(); up() binds the same
            port again]
  5xx       ``status`` (503 by default) with a text body   [set_status(code)]
  garbage   200 with an HTML body that is not a JWKS   [set_garbage()]
  truncated 200 with the JWKS cut in half (invalid JSON)
  reset     the connection is accepted, then reset without an answer

Every request is recorded (time, the mode it met, method, path, headers), and
``wait_for_count`` waits for the next ones. Standard library only, so it also
runs by hand:

    python3 tests/soak/faulty_jwks.py --jwks jwks.json --port 8081
    # then, in the same terminal: ok | slow | refuse | 5xx | garbage | truncated | reset
"""

from __future__ import annotations

import argparse
import http.server
import json
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

PATH = "/jwks"
MODES = ("ok", "slow", "refuse", "5xx", "garbage", "truncated", "reset")
GARBAGE = b"<!doctype html><title>502 Bad Gateway</title><h1>upstream is having a bad day</h1>\n"


@dataclass(frozen=True)
class Hit:
    """One request the server received, and the mode that answered it."""

    at: float  # time.monotonic() when it arrived
    mode: str
    method: str = "GET"
    path: str = PATH
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def do_GET(self) -> None:  # noqa: N802
        self.server.owner._serve(self)

    def log_message(self, fmt: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # `refuse` then `ok` binds the same port again
    owner: "FaultyJwks"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.open_connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conn_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conn_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # resets are the point here
            super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        """Close every accepted connection (kept-alive ones included)."""
        with self.conn_lock:
            conns = list(self.open_connections)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class FaultyJwks:
    def __init__(self, jwks: dict[str, Any] | str | None = None, *, port: int = 0,
                 slow_seconds: float = 3.0) -> None:
        self._lock = threading.Condition()
        self._body = b'{"keys": []}' if jwks is None else _encode(jwks)
        self._mode = "ok"
        self.status = 503
        self._hits: list[Hit] = []
        self._closing = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.slow_seconds = slow_seconds
        self.port = port
        self._listen()

    # -- lifecycle --------------------------------------------------------
    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    @property
    def is_up(self) -> bool:
        return self._httpd is not None

    def _listen(self) -> None:
        if self._httpd is not None:
            return
        httpd = _Server(("127.0.0.1", self.port), _Handler)
        httpd.owner = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"faulty-jwks-{self.port}", daemon=True)
        self._thread.start()

    def _unlisten(self) -> None:
        """Refuse new connections and drop the ones Envoy keeps alive, so the
        next fetch has to connect (and is refused)."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            httpd.drop_connections()

    def close(self) -> None:
        self._closing.set()
        self._unlisten()

    def __enter__(self) -> "FaultyJwks":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- behaviour --------------------------------------------------------
    def set_jwks(self, jwks: dict[str, Any] | str) -> None:
        with self._lock:
            self._body = _encode(jwks)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        with self._lock:
            self._mode = mode
        if mode == "refuse":
            self._unlisten()
        else:
            self._listen()

    def set_ok(self) -> None:
        self.set_mode("ok")

    def set_slow(self, seconds: float) -> None:
        self.slow_seconds = seconds
        self.set_mode("slow")

    def set_status(self, status: int = 503) -> None:
        self.status = status
        self.set_mode("5xx")

    def set_garbage(self) -> None:
        self.set_mode("garbage")

    def down(self) -> None:
        self.set_mode("refuse")

    def up(self) -> None:
        """Listen again (on the same port), answering ``ok``."""
        self.set_mode("ok")

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def hits(self) -> list[Hit]:
        with self._lock:
            return list(self._hits)

    def count(self, mode: str | None = None) -> int:
        return sum(1 for h in self.hits if mode is None or h.mode == mode)

    def wait_for_count(self, n: int, timeout: float = 10.0) -> int:
        """Block until at least ``n`` requests arrived; return the count.
        Raises AssertionError at the deadline."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._hits) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"JWKS server got {len(self._hits)} request(s), expected >= {n} "
                        f"within {timeout}s")
                self._lock.wait(left)
            return len(self._hits)

    # -- serving ----------------------------------------------------------
    def _serve(self, h: _Handler) -> None:
        with self._lock:
            mode, body, status = self._mode, self._body, self.status
            self._hits.append(Hit(time.monotonic(), mode, h.command, h.path,
                                  {k.lower(): v for k, v in h.headers.items()}))
            self._lock.notify_all()
        ctype = "application/jwk-set+json"
        if mode != "5xx":
            status = 200
        if mode == "refuse":  # a request that raced the switch
            h.close_connection = True
            return
        if mode == "slow":
            if self._closing.wait(self.slow_seconds):
                return
        elif mode == "5xx":
            body, ctype = f"{status} from the faulty JWKS server\n".encode(), "text/plain"
        elif mode == "garbage":
            body, ctype = GARBAGE, "text/html"
        elif mode == "truncated":
            body = body[: len(body) // 2]
        elif mode == "reset":
            # SO_LINGER 0: close() sends an RST instead of a FIN.
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            return
        if h.path.split("?")[0] != PATH:
            status, body, ctype = 404, b"not found\n", "text/plain"
        try:
            h.send_response(status)
            h.send_header("content-type", ctype)
            h.send_header("content-length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except OSError:
            pass  # the caller gave up (timeout)


def _encode(jwks: dict[str, Any] | str) -> bytes:
    return (jwks if isinstance(jwks, str) else json.dumps(jwks)).encode()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jwks", required=True, help="file with the JWKS to serve")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--slow-seconds", type=float, default=3.0)
    args = p.parse_args()
    server = FaultyJwks(open(args.jwks).read(), port=args.port, slow_seconds=args.slow_seconds)
    print(f"serving {server.uri}; type a mode ({', '.join(MODES)}) and Enter; Ctrl-D quits", flush=True)
    try:
        for line in sys.stdin:
            mode = line.strip()
            if not mode:
                continue
            try:
                server.set_mode(mode)
                print(f"mode: {mode} ({server.count()} requests so far)", flush=True)
            except ValueError as e:
                print(e, flush=True)
    except KeyboardInterrupt:
        pass
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
