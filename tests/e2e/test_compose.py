"""envoy/docker-compose.yaml (no Docker engine here): it follows the Compose
specification (the compose-spec package's strict parser), every host path it
mounts exists or is produced by `make build` / `demo.py gen`, and Envoy in
the container reads the very same envoy.yaml and files the tests use."""

from __future__ import annotations

import json
import posixpath
import shlex
from pathlib import Path, PurePosixPath

import pytest
import yaml

import harness

COMPOSE_DIR = harness.COMPOSE_FILE.parent
# Produced by the build / generator, not committed (relative to the repo root).
GENERATED = {harness.WASM_REL, Path("envoy/certs")}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(harness.COMPOSE_FILE.read_text())


def _is_generated(host: Path) -> bool:
    rel = host.resolve().relative_to(harness.REPO)
    return any(rel == g or g in rel.parents for g in GENERATED)


def _mounts(service: dict) -> list[tuple[Path, PurePosixPath]]:
    """(host path, container path) for every bind mount of a service."""
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, str):
            src, dst = v.split(":")[:2]
        else:
            assert v["type"] == "bind", v
            src, dst = v["source"], v["target"]
        out.append(((COMPOSE_DIR / src).resolve(), PurePosixPath(dst)))
    return out


def _to_host(mounts, container_path: PurePosixPath) -> Path | None:
    """Map a container path to a host path through the longest bind mount."""
    best = None
    for host, dst in mounts:
        if container_path == dst or dst in container_path.parents:
            if best is None or len(dst.parts) > len(best[1].parts):
                best = (host, dst)
    if best is None:
        return None
    host, dst = best
    return host.joinpath(*container_path.relative_to(dst).parts)


def _argv(service: dict) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def test_compose_specification():
    """Unknown keys, wrong types and malformed ports are errors, as in `docker compose config`."""
    from compose_spec import PyCompose

    text = harness.COMPOSE_FILE.read_text()
    parsed = PyCompose.from_yaml(text)
    assert sorted(parsed.service_names()) == ["backend", "envoy"]
    # the checker is live: a typo'd key and a bad port are refused
    for broken in (text.replace("working_dir:", "workdir:", 1), text.replace('"8443:8443"', '"84x43:8443"')):
        assert broken != text
        with pytest.raises(ValueError):
            PyCompose.from_yaml(broken)


def test_services_and_images(compose):
    services = compose["services"]
    assert set(services) >= {"envoy", "backend"}
    assert services["envoy"]["image"].startswith("envoyproxy/envoy:v1.40")
    assert services["backend"]["network_mode"] == "service:envoy"
    assert any(str(p).startswith("8443") for p in services["envoy"]["ports"])


def test_every_mounted_host_path_exists_or_is_generated(compose):
    for name, svc in compose["services"].items():
        for host, _ in _mounts(svc):
            assert harness.REPO in host.parents or host == harness.REPO, (name, host)
            assert host.exists() or _is_generated(host), f"{name}: {host} missing"
        for env_file in svc.get("env_file", []):
            path = env_file if isinstance(env_file, str) else env_file["path"]
            host = (COMPOSE_DIR / path).resolve()
            assert host.exists() or _is_generated(host), f"{name}: env_file {host}"


def test_env_file_is_what_the_generator_writes(compose, tmp_path):
    (env_file,) = compose["services"]["envoy"]["env_file"]
    rel = (COMPOSE_DIR / env_file).resolve().relative_to(harness.REPO / "envoy" / "certs")
    written = harness.demo.generate(tmp_path)
    assert str(rel) in {p.name for p in written.values()}
    line = (tmp_path / rel).read_text().strip()
    key, _, value = line.partition("=")
    assert key == "CERTBOUND_JWKS"
    assert value[0] == value[-1] == "'"
    assert json.loads(value[1:-1])["keys"][0]["kid"] == harness.demo.IDP_KID


def test_envoy_container_uses_the_shipped_config_and_layout(compose):
    svc = compose["services"]["envoy"]
    mounts = _mounts(svc)
    wd = PurePosixPath(svc["working_dir"])
    argv = _argv(svc)
    config = PurePosixPath(argv[argv.index("-c") + 1])
    assert _to_host(mounts, wd / config) == harness.SHIPPED_CONFIG

    # every file envoy.yaml references resolves to the same repo-relative path
    cfg = harness.load_shipped_config()
    plugin = harness.wasm_plugin(cfg)
    tls = harness._listener(cfg)["filter_chains"][0]["transport_socket"]["typed_config"]
    common = tls["common_tls_context"]
    referenced = [
        plugin["vm_config"]["code"]["local"]["filename"],
        common["tls_certificates"][0]["certificate_chain"]["filename"],
        common["tls_certificates"][0]["private_key"]["filename"],
        common["validation_context"]["trusted_ca"]["filename"],
    ]
    for rel in referenced:
        assert not posixpath.isabs(rel), rel
        host = _to_host(mounts, wd / rel)
        assert host == (harness.REPO / rel).resolve(), (rel, host)


def test_backend_container_runs_the_demo_backend_on_8080(compose):
    svc = compose["services"]["backend"]
    argv = _argv(svc)
    script = next(a for a in argv if a.endswith(".py"))
    host = _to_host(_mounts(svc), PurePosixPath(svc["working_dir"]) / script)
    assert host == harness.REPO / "envoy" / "demo.py"
    assert "backend" in argv
    assert argv[argv.index("--port") + 1] == "8080"
