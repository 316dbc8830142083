"""Helpers for the certbound end-to-end suite: run the real Envoy 1.40 from
target/venv with the shipped envoy/envoy.yaml (ports and plugin config
rewritten per scenario) and talk to it over real (m)TLS.
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "envoy"))
import demo  # noqa: E402  (envoy/demo.py: PKI and token helpers)

SHIPPED_CONFIG = REPO / "envoy" / "envoy.yaml"
# RFC 8705 section 2.2: any client certificate, the token's binding is the only trust.
SELF_SIGNED_CONFIG = REPO / "envoy" / "self-signed.yaml"
# One listener, two hosts by SNI: mtls.api.example.com (mTLS) and api.example.com.
HOST_SCOPED_CONFIG = REPO / "envoy" / "host-scoped.yaml"
SHIPPED_CONFIGS = (SHIPPED_CONFIG, SELF_SIGNED_CONFIG, HOST_SCOPED_CONFIG)
# Envoy Gateway: the native build's manifests (tests/e2e/test_gateway.py checks them).
GATEWAY_MANIFESTS = tuple(REPO / "gateway" / name for name in (
    "envoyproxy-native.yaml", "gateway.yaml", "envoyextensionpolicy-native.yaml"))
COMPOSE_FILE = REPO / "envoy" / "docker-compose.yaml"
WASM_REL = Path("target/wasm32-wasip1/release/certbound.wasm")
WASM = Path(os.environ.get("CERTBOUND_WASM", REPO / WASM_REL))
ENVOY_BIN = Path(os.environ.get("CERTBOUND_ENVOY", REPO / "target" / "venv" / "bin" / "envoy"))
# Which build the suite runs against: "wasm" (certbound.wasm in the wasm
# filter) or "native" (libcertbound.so as a dynamic module, same JSON).
BUILD = os.environ.get("CERTBOUND_BUILD", "wasm")
if BUILD not in ("wasm", "native"):
    raise SystemExit(f"CERTBOUND_BUILD must be wasm or native, not {BUILD!r}")
# Envoy's namespace for the filter's own stats: ``wasmcustom.`` for
# proxy-wasm, ``dynamicmodulescustom.`` for dynamic modules; the names
# after it are the same (``certbound.allowed``, ...).
STAT_NAMESPACE = "dynamicmodulescustom." if BUILD == "native" else "wasmcustom."
# The Prometheus view drops ``wasmcustom`` but keeps the dynamic modules'
# namespace (``envoy_dynamicmodulescustom_certbound_allowed``).
PROM_PREFIX = "envoy_dynamicmodulescustom_" if BUILD == "native" else ""
# What Envoy says when certbound refuses its configuration (certbound's own
# error, naming the field, is logged just before).
REFUSED = ("Failed to initialize dynamic module" if BUILD == "native"
           else "Unable to create Wasm plugin certbound")
SO_REL = Path("target/release/libcertbound.so")
SO = Path(os.environ.get("CERTBOUND_SO", REPO / SO_REL))
NATIVE_FILTER_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
)

READY_TIMEOUT = float(os.environ.get("CERTBOUND_READY_TIMEOUT", "60"))
HTTP_TIMEOUT = 10.0
POLL_INTERVAL = 0.05

# Lines in Envoy's log that mean the VM misbehaved (a Rust panic, a trap, a
# failed callback, a plugin that failed to load).
VM_FAILURE = re.compile(
    r"panicked|Wasm VM failed|Function: proxy_on_\w+ failed|"
    r"Plugin \S+ failed to load|wasm trap|RuntimeError|"
    r"certbound: panic|failing closed|Failed to load dynamic module",
    re.IGNORECASE,
)

WASM_FILTER = "envoy.filters.http.wasm"


# ---------------------------------------------------------------------------
# config manipulation
# ---------------------------------------------------------------------------


def native_filter(plugin_json_text: str) -> dict[str, Any]:
    """The dynamic-module filter that runs certbound natively with this JSON."""
    return {
        "name": "certbound",
        "typed_config": {
            "@type": NATIVE_FILTER_TYPE,
            "dynamic_module_config": {"name": "certbound"},
            "filter_name": "certbound",
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": plugin_json_text,
            },
        },
    }


def to_native(cfg: Any) -> Any:
    """``cfg`` with every certbound wasm filter replaced by the native one,
    carrying the same plugin JSON (the build under test decides)."""
    if isinstance(cfg, list):
        return [to_native(x) for x in cfg]
    if not isinstance(cfg, dict):
        return cfg
    if cfg.get("name") == WASM_FILTER:
        conf = cfg.get("typed_config", {}).get("config", {})
        value = conf.get("configuration", {}).get("value", "")
        return native_filter(value)
    return {k: to_native(v) for k, v in cfg.items()}


def for_build(cfg: dict[str, Any]) -> dict[str, Any]:
    return to_native(cfg) if BUILD == "native" else cfg


def build_env() -> dict[str, str]:
    """What Envoy needs in its environment to load the build under test."""
    # Always: the native example configs validate in either pass.
    return {"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(SO.parent)}


def load_shipped_config() -> dict[str, Any]:
    return yaml.safe_load(SHIPPED_CONFIG.read_text())


def _listener(cfg: dict[str, Any]) -> dict[str, Any]:
    (listener,) = cfg["static_resources"]["listeners"]
    return listener


def http_filters(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    (chain,) = _listener(cfg)["filter_chains"]
    (hcm,) = chain["filters"]
    return hcm["typed_config"]["http_filters"]


def wasm_plugin(cfg: dict[str, Any]) -> dict[str, Any]:
    """The PluginConfig (`typed_config.config`) of the certbound wasm filter."""
    (wasm,) = [f for f in http_filters(cfg) if f["name"] == WASM_FILTER]
    return wasm["typed_config"]["config"]


def plugin_json(cfg: dict[str, Any]) -> dict[str, Any]:
    return json.loads(wasm_plugin(cfg)["configuration"]["value"])


def set_plugin_json(cfg: dict[str, Any], value: dict[str, Any] | str) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    wasm_plugin(cfg)["configuration"]["value"] = text


def scenario_config(
    backend_port: int,
    provider: dict[str, Any] | None = None,
    plugin: dict[str, Any] | str | None = None,
) -> dict[str, Any]:
    """The shipped config with only ports and (optionally) the plugin JSON changed.

    Admin and listener bind port 0 on loopback (the real ports are read back
    from the admin API), the backend cluster points at ``backend_port``.
    ``provider`` updates the ``idp`` provider object (a None value deletes
    the key); ``plugin`` replaces the plugin JSON entirely.
    """
    cfg = copy.deepcopy(load_shipped_config())
    cfg["admin"]["address"]["socket_address"].update(address="127.0.0.1", port_value=0)
    _listener(cfg)["address"]["socket_address"].update(address="127.0.0.1", port_value=0)
    (cluster,) = cfg["static_resources"]["clusters"]
    (ep,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ep["endpoint"]["address"]["socket_address"]["port_value"] = backend_port
    if plugin is not None:
        set_plugin_json(cfg, plugin)
    elif provider:
        pj = plugin_json(cfg)
        idp = pj["providers"]["idp"]
        for k, v in provider.items():
            if v is None:
                idp.pop(k, None)
            else:
                idp[k] = v
        set_plugin_json(cfg, pj)
    return cfg


def local_config(path: Path, backend_port: int) -> dict[str, Any]:
    """Another shipped config (``SELF_SIGNED_CONFIG``, ``HOST_SCOPED_CONFIG``)
    with only its ports changed: admin and its listener on 127.0.0.1:0, the
    ``backend`` cluster at ``backend_port``."""
    cfg = yaml.safe_load(Path(path).read_text())
    cfg["admin"]["address"]["socket_address"].update(address="127.0.0.1", port_value=0)
    _listener(cfg)["address"]["socket_address"].update(address="127.0.0.1", port_value=0)
    (cluster,) = cfg["static_resources"]["clusters"]
    assert cluster["name"] == "backend", cluster["name"]
    (ep,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ep["endpoint"]["address"]["socket_address"]["port_value"] = backend_port
    return cfg


# ---------------------------------------------------------------------------
# session layout: the repo's relative paths, with test-generated certs
# ---------------------------------------------------------------------------


@dataclass
class Client:
    name: str
    cert: Path
    key: Path

    @property
    def thumbprint(self) -> str:
        return demo.thumbprint(self.cert)


@dataclass
class Pki:
    """Everything the session generated, laid out like the repository root
    (``root/envoy/certs/...``, ``root/target/.../certbound.wasm``) so Envoy,
    started with cwd=root, resolves the shipped config's relative paths."""

    root: Path
    certs: Path
    ca: Path
    client_a: Client
    client_b: Client
    rogue: Client  # signed by a CA Envoy does not trust
    idp_key: Any
    # alg -> (private key, kid) for the multi-algorithm JWKS
    keys: dict[str, tuple[Any, str]] = field(default_factory=dict)
    jwks: dict[str, Any] = field(default_factory=dict)

    @property
    def jwks_text(self) -> str:
        return json.dumps(self.jwks)

    @property
    def idp_jwks_text(self) -> str:
        """Single-key JWKS with the IdP key only (what `demo.py gen` writes)."""
        return (self.certs / "jwks.json").read_text().strip()

    def token(self, client: Client | None = None, **kw: Any) -> str:
        """An ES256 token from the IdP key, bound to ``client`` if given."""
        kw.setdefault("kid", demo.IDP_KID)
        return demo.mint(self.idp_key, demo.IDP_ALG, cert=client.cert if client else None, **kw)


ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
              "Ed25519")


def build_pki(root: Path) -> Pki:
    certs = root / "envoy" / "certs"
    demo.generate(certs)
    wasm_dst = root / WASM_REL
    wasm_dst.parent.mkdir(parents=True, exist_ok=True)
    if WASM.exists():
        # A copy, so a concurrent `cargo build` can't swap it mid-session.
        shutil.copyfile(WASM, wasm_dst)

    rogue_ca_key, rogue_ca = demo.make_ca("rogue CA")
    rk, rc = demo.issue_cert(rogue_ca_key, rogue_ca, "rogue")
    (certs / "rogue.pem").write_bytes(demo.cert_pem(rc))
    (certs / "rogue-key.pem").write_bytes(demo.key_pem(rk))

    def client(name: str) -> Client:
        return Client(name, certs / f"{name}.pem", certs / f"{name}-key.pem")

    idp_key = demo.load_key(certs / "idp-key.pem")
    pki = Pki(
        root=root,
        certs=certs,
        ca=certs / "ca.pem",
        client_a=client("client-a"),
        client_b=client("client-b"),
        rogue=client("rogue"),
        idp_key=idp_key,
    )
    # One key per algorithm family, a distinct kid (and `alg`) per algorithm.
    rsa = demo.new_signing_key("RS256")
    material = {"ES256": demo.new_signing_key("ES256"), "ES384": demo.new_signing_key("ES384"),
                "EdDSA": demo.new_signing_key("EdDSA"), "Ed25519": demo.new_signing_key("Ed25519")}
    jwk_list = [demo.public_jwk(idp_key, demo.IDP_KID, demo.IDP_ALG)]
    for alg in ALGORITHMS:
        key = material.get(alg, rsa)
        kid = f"test-{alg.lower()}"
        pki.keys[alg] = (key, kid)
        jwk_list.append(demo.public_jwk(key, kid, alg))
    pki.jwks = demo.jwks(*jwk_list)
    return pki


# ---------------------------------------------------------------------------
# Envoy process
# ---------------------------------------------------------------------------


class EnvoyError(AssertionError):
    pass


def _poll_sleep(proc: subprocess.Popen | None) -> None:
    """Poll interval; returns early (and the caller notices) if proc exits."""
    if proc is None:
        time.sleep(POLL_INTERVAL)
        return
    try:
        proc.wait(timeout=POLL_INTERVAL)
    except subprocess.TimeoutExpired:
        pass


def envoy_env(jwks_text: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CERTBOUND_JWKS"}
    if jwks_text is not None:
        env["CERTBOUND_JWKS"] = jwks_text
    return env


def validate(config_path: Path, cwd: Path, jwks_text: str | None) -> subprocess.CompletedProcess:
    """`envoy --mode validate` (it instantiates the wasm VM and runs on_configure;
    natively, it loads the module and parses the configuration). In the
    native pass a config with the wasm filter is validated with the native
    filter in its place (next to it, ``*.native.yaml``)."""
    shown = str(config_path)
    if BUILD == "native":
        cfg = yaml.safe_load(Path(config_path).read_text())
        native = to_native(cfg)
        if native != cfg:
            import tempfile
            config_path = Path(tempfile.mkdtemp(prefix="certbound-native-")) / (
                Path(config_path).stem + ".native.yaml")
            config_path.write_text(yaml.safe_dump(native, sort_keys=False))
    res = subprocess.run(
        [str(ENVOY_BIN), "--mode", "validate", "-c", str(config_path),
         "--disable-hot-restart", "--log-level", "info"],
        cwd=cwd, env={**envoy_env(jwks_text), **build_env()},
        capture_output=True, text=True, timeout=120,
    )
    # Envoy names the file it read: the one the caller passed.
    res.stdout = res.stdout.replace(str(config_path), shown)
    res.stderr = res.stderr.replace(str(config_path), shown)
    return res


class Envoy:
    """One Envoy process started from a config dict, cwd = the session root."""

    def __init__(self, name: str, cfg: dict[str, Any], root: Path, workdir: Path,
                 jwks_text: str | None) -> None:
        self.name = name
        self.cfg = cfg
        self.root = root
        self.workdir = workdir
        self.jwks_text = jwks_text
        self.config_path = workdir / f"{name}.yaml"
        self.log_path = workdir / f"{name}.log"
        self.admin_path = workdir / f"{name}.admin"
        self.proc: subprocess.Popen | None = None
        self.admin: str = ""
        self.port: int = 0
        self.expect_vm_failure = False
        # Subclasses (RemoteEnvoy, InteropEnvoy, the soak's SoakEnvoy)
        # change these; spawn() is the one command line.
        self.concurrency = 1
        self.wasm_log_level = "debug"
        self.extra_args: list[str] = []
        self.extra_env: dict[str, str] = {}

    # -- lifecycle --------------------------------------------------------
    def spawn(self) -> None:
        self.config_path.write_text(yaml.safe_dump(for_build(self.cfg), sort_keys=False))
        self.admin_path.unlink(missing_ok=True)
        self.admin = ""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(ENVOY_BIN), "-c", str(self.config_path),
                 "--concurrency", str(self.concurrency), "--disable-hot-restart",
                 "--admin-address-path", str(self.admin_path),
                 "--log-level", "info", "--component-log-level",
                 f"wasm:{self.wasm_log_level},dynamic_modules:{self.wasm_log_level}",
                 *self.extra_args],
                cwd=self.root, env={**envoy_env(self.jwks_text), **build_env(), **self.extra_env},
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    def start(self, timeout: float = READY_TIMEOUT) -> "Envoy":
        """Spawn and poll until /ready answers 200 (or fail with the log)."""
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise EnvoyError(
                    f"envoy[{self.name}] exited with {self.proc.returncode} during startup:\n"
                    + self.log_tail())
            if self._ready():
                break
            if time.monotonic() > deadline:
                self.stop()
                raise EnvoyError(f"envoy[{self.name}] not ready after {timeout}s:\n" + self.log_tail())
            _poll_sleep(self.proc)
        self.port = self._listener_port()
        return self

    def wait_exit(self, timeout: float = READY_TIMEOUT) -> int:
        """Spawn and expect Envoy to exit by itself; return its exit code.
        Fails if it becomes ready instead."""
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if self._ready():
                self.stop()
                raise EnvoyError(f"envoy[{self.name}] became ready; expected it to refuse the config")
            if time.monotonic() > deadline:
                self.stop()
                raise EnvoyError(f"envoy[{self.name}] neither exited nor became ready in {timeout}s")
            _poll_sleep(self.proc)
        return self.proc.returncode

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    # -- admin ------------------------------------------------------------
    def _admin_address(self) -> str:
        if not self.admin:
            try:
                text = self.admin_path.read_text().strip()
            except FileNotFoundError:
                return ""
            self.admin = text
        return self.admin

    def _ready(self) -> bool:
        addr = self._admin_address()
        if not addr:
            return False
        try:
            with urllib.request.urlopen(f"http://{addr}/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def admin_get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://{self._admin_address()}{path}", timeout=5) as r:
            return r.read().decode()

    def stats(self, filter: str | None = None) -> dict[str, int]:
        """Counters and gauges of /stats (plain-text ``name: value`` lines);
        with ``filter``, only the names matching that regex (Envoy's filter)."""
        path = "/stats" if filter is None else "/stats?filter=" + urllib.parse.quote(filter)
        out: dict[str, int] = {}
        for line in self.admin_get(path).splitlines():
            name, sep, value = line.partition(": ")
            if sep and re.fullmatch(r"-?\d+", value.strip()):
                out[name] = int(value)
        return out

    def stat(self, name: str) -> int:
        """One counter or gauge; 0 when Envoy does not have it (yet)."""
        return self.stats("^" + re.escape(name) + "$").get(name, 0)

    def _listener_port(self) -> int:
        data = json.loads(self.admin_get("/listeners?format=json"))
        (status,) = data["listener_statuses"]
        return int(status["local_address"]["socket_address"]["port_value"])

    # -- logs -------------------------------------------------------------
    def log_text(self, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def vm_failures(self, since: int = 0) -> list[str]:
        return [ln for ln in self.log_text(since).splitlines() if VM_FAILURE.search(ln)]


class VmWatch:
    """Envoys whose logs must show no VM failure (VM_FAILURE): conftest
    checks what they log while each test runs, and whoever stops them
    checks what is left."""

    def __init__(self) -> None:
        self.envoys: list[Envoy] = []
        self._marks: dict[int, int] = {}
        self._reported: set[str] = set()

    def add(self, envoy: Envoy) -> Envoy:
        self.envoys.append(envoy)
        return envoy

    def mark(self) -> None:
        """Where each log ends now: the start of a test."""
        self._marks = {id(e): e.log_size() for e in self.envoys}

    def failures_since_mark(self) -> list[str]:
        out = []
        for e in list(self.envoys):
            bad = e.vm_failures(since=self._marks.get(id(e), 0))
            self._reported.update(bad)
            out += [f"envoy[{e.name}] {ln}" for ln in bad]
        return out

    def stop(self, envoys: Any) -> list[str]:
        """Stops `envoys` and stops watching them; their VM-failure lines
        that no test has reported yet."""
        left = []
        for e in list(envoys):
            e.stop()
            if e in self.envoys:
                self.envoys.remove(e)
            left += [f"envoy[{e.name}] ({e.log_path}) {ln}"
                     for ln in e.vm_failures() if ln not in self._reported]
        return left


# The Envoys of the whole e2e session that must stay healthy.
WATCH = VmWatch()


# ---------------------------------------------------------------------------
# echo backend that records what reached it
# ---------------------------------------------------------------------------


class Backend:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, list[dict[str, Any]]] = {}
        self.server = demo.start_backend_thread(host="127.0.0.1", port=0, on_request=self._record)
        self.port = self.server.server_address[1]

    def _record(self, req: dict[str, Any]) -> None:
        with self._lock:
            self._seen.setdefault(req["path"], []).append(req)

    def seen(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._seen.get(path, []))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------
# HTTPS client
# ---------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    path: str
    upstream: list[dict[str, Any]]  # what the backend received for this path

    @property
    def www_authenticate(self) -> str | None:
        return self.headers.get("www-authenticate")

    def __repr__(self) -> str:
        return (f"Response(status={self.status}, www-authenticate={self.www_authenticate!r}, "
                f"body={self.body[:200]!r}, upstream={len(self.upstream)})")


class SniConnection(http.client.HTTPSConnection):
    """HTTPS to ``address`` (e.g. 127.0.0.1) with ``server_name`` as the TLS
    SNI and certificate name, as a client resolving that name would connect."""

    def __init__(self, server_name: str, address: str, port: int, **kw: Any) -> None:
        super().__init__(server_name, port, **kw)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def tls_context(ca: Path, client: Client | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def request(
    envoy: Envoy,
    backend: Backend,
    ca: Path,
    *,
    token: str | None = None,
    client: Client | None = None,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    sni: str | None = None,
) -> Response:
    """One request on a fresh TLS connection (so the client cert is this one's).

    With ``sni``, the TLS server name and the default Host are that name
    (the connection still goes to 127.0.0.1)."""
    path = f"/e2e/{uuid.uuid4().hex}"
    hdrs = {"host": sni or "localhost"}
    if token is not None:
        hdrs["authorization"] = f"Bearer {token}"
    hdrs.update(headers or {})
    conn: http.client.HTTPSConnection
    if sni is None:
        conn = http.client.HTTPSConnection("127.0.0.1", envoy.port, timeout=HTTP_TIMEOUT,
                                           context=tls_context(ca, client))
    else:
        conn = SniConnection(sni, "127.0.0.1", envoy.port, timeout=HTTP_TIMEOUT,
                             context=tls_context(ca, client))
    try:
        conn.request(method, path, headers=hdrs)
        resp = conn.getresponse()
        body = resp.read()
        got = {}
        for k, v in resp.getheaders():
            k = k.lower()
            got[k] = f"{got[k]}, {v}" if k in got else v
        status = resp.status
    finally:
        conn.close()
    return Response(status, got, body, path, backend.seen(path))
