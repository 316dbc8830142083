"""Fixtures for the certbound e2e suite.

Session-scoped: the PKI (demo.py helpers), one echo backend and one Envoy per
plugin configuration ("scenario"), started on first use and reused.
Every Envoy log is scanned for wasm VM failures after each test and at the
end of the session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import harness
from harness import Backend, Envoy, Pki

def pytest_sessionstart(session: pytest.Session) -> None:
    build = harness.SO if harness.BUILD == "native" else harness.WASM
    missing = [p for p in (harness.ENVOY_BIN, build) if not Path(p).exists()]
    if missing:
        raise pytest.UsageError(
            "certbound e2e needs " + ", ".join(map(str, missing))
            + " (run `make venv` and `make build` or `make native`)"
        )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "wasm_only(reason): a wasm-build feature the native build cannot have")
    config.addinivalue_line(
        "markers", "native_only(reason): checks of the native build alone")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each pass runs the tests that apply to its build: the others are
    deselected (each marker says why), not skipped."""
    other = "wasm_only" if harness.BUILD == "native" else "native_only"
    keep = [item for item in items if item.get_closest_marker(other) is None]
    deselected = [item for item in items if item.get_closest_marker(other) is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = keep


def pytest_report_header(config: pytest.Config) -> str:
    return f"certbound build: {harness.BUILD}"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return harness.build_pki(tmp_path_factory.mktemp("root"))


@pytest.fixture(scope="session")
def backend() -> Iterator[Backend]:
    b = Backend()
    yield b
    b.close()


@pytest.fixture(scope="session")
def envoy_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("envoy")


EnvoyFactory = Callable[..., Envoy]


@pytest.fixture(scope="session")
def envoy_factory(pki: Pki, backend: Backend, envoy_workdir: Path) -> Iterator[EnvoyFactory]:
    """start(name, provider=..., plugin=..., config=..., jwks_text=...) -> a ready Envoy.

    Same name -> the same (already running) Envoy. ``provider`` patches the
    shipped ``providers.idp`` object, ``plugin`` replaces the plugin JSON,
    ``config`` is another shipped config file (harness.SELF_SIGNED_CONFIG,
    harness.HOST_SCOPED_CONFIG), started with only its ports rewritten;
    ``jwks_text`` is CERTBOUND_JWKS in Envoy's environment (default: the
    session's multi-key JWKS; None: unset); ``env`` adds variables to
    Envoy's environment and passes them to the VM (``host_env_keys``).
    """
    running: dict[str, Envoy] = {}
    default = object()

    def start(name: str, *, provider: dict[str, Any] | None = None,
              plugin: dict[str, Any] | str | None = None,
              config: Path | None = None,
              jwks_text: Any = default,
              env: dict[str, str] | None = None) -> Envoy:
        if name in running:
            return running[name]
        if config is not None:
            assert provider is None and plugin is None, "config is used as it is"
            cfg = harness.local_config(config, backend.port)
        else:
            cfg = harness.scenario_config(backend.port, provider=provider, plugin=plugin)
        if env:
            vm_env = harness.wasm_plugin(cfg)["vm_config"].setdefault("environment_variables", {})
            keys = vm_env.setdefault("host_env_keys", [])
            keys.extend(k for k in env if k not in keys)
        env_jwks = pki.jwks_text if jwks_text is default else jwks_text
        envoy = Envoy(name, cfg, pki.root, envoy_workdir, env_jwks)
        envoy.extra_env = dict(env or {})
        running[name] = envoy
        envoy.start()
        harness.WATCH.add(envoy)
        return envoy

    yield start

    left = harness.WATCH.stop(running.values())
    if left:
        pytest.fail("wasm VM failures in Envoy logs:\n" + "\n".join(left[:20]), pytrace=False)


@pytest.fixture(autouse=True)
def _no_vm_failures() -> Iterator[None]:
    """Fail the test if a watched Envoy (harness.WATCH) logged a VM failure
    while it ran."""
    harness.WATCH.mark()
    yield
    bad = harness.WATCH.failures_since_mark()
    if bad:
        pytest.fail("wasm VM failures in Envoy log:\n" + "\n".join(bad[:20]), pytrace=False)


@pytest.fixture(scope="session")
def envoy_required(envoy_factory: EnvoyFactory) -> Envoy:
    """The shipped plugin configuration as is (certificate_binding: required)."""
    return envoy_factory("required")


@pytest.fixture(scope="session")
def envoy_when_present(envoy_factory: EnvoyFactory) -> Envoy:
    return envoy_factory("when_present", provider={"certificate_binding": "when_present"})


@pytest.fixture
def call(pki: Pki, backend: Backend, envoy_required: Envoy) -> Callable[..., harness.Response]:
    """call(token=..., client=..., envoy=..., headers=...) -> Response."""

    def _call(*, envoy: Envoy | None = None, **kw: Any) -> harness.Response:
        return harness.request(envoy or envoy_required, backend, pki.ca, **kw)

    return _call
