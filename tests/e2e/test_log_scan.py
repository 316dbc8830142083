"""The Envoy log scanner used at teardown recognises VM failures."""

from __future__ import annotations

import pytest

from harness import VM_FAILURE


@pytest.mark.parametrize("line", [
    "[critical][wasm] wasm log certbound: panicked at src/filter.rs:10:5: boom",
    "[error][wasm] Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable",
    "[error][wasm] Function: proxy_on_configure failed: Uncaught RuntimeError: unreachable",
    "[error][wasm] [source/extensions/common/wasm/wasm.cc:104] Wasm VM failed Failed to configure base Wasm plugin",
    "[critical][wasm] Plugin certbound failed to load",
])
def test_detects_vm_failures(line):
    assert VM_FAILURE.search(line)


@pytest.mark.parametrize("line", [
    "[info][wasm] wasm log certbound certbound: certbound: configured 1 provider(s), 0 rule(s)",
    "[debug][wasm] wasm log certbound: denied /x provider=- reason=unknown_kid (unknown signing key)",
    "[debug][wasm] Thread-Local Wasm created 2 now active",
])
def test_ignores_normal_lines(line):
    assert not VM_FAILURE.search(line)
