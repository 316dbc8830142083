"""docs/deployment.md copies its Envoy snippets from the shipped configs the
other tests run (envoy/envoy.yaml, self-signed.yaml, host-scoped.yaml): every
```yaml block whose first line is `# from envoy/<file>` must still be part of
that file, so the documentation cannot drift from what is tested."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import harness

DOC = harness.REPO / "docs" / "deployment.md"
BLOCK = re.compile(r"^```yaml\n(# from (envoy/[\w.-]+\.yaml)\n.*?)^```", re.M | re.S)


def snippets() -> list[tuple[str, str]]:
    return [(m.group(2), m.group(1)) for m in BLOCK.finditer(DOC.read_text())]


def matches(node: Any, snippet: Any) -> bool:
    """``snippet`` is ``node`` with keys and list items left out (list items
    in their order)."""
    if isinstance(snippet, dict):
        return isinstance(node, dict) and all(k in node and matches(node[k], v) for k, v in snippet.items())
    if isinstance(snippet, list):
        if not isinstance(node, list):
            return False
        items = iter(node)
        return all(any(matches(n, s) for n in items) for s in snippet)
    return node == snippet


def occurs(tree: Any, snippet: Any) -> bool:
    if matches(tree, snippet):
        return True
    children = tree.values() if isinstance(tree, dict) else tree if isinstance(tree, list) else ()
    return any(occurs(c, snippet) for c in children)


def test_the_document_has_snippets_of_each_new_config():
    files = {f for f, _ in snippets()}
    assert {"envoy/self-signed.yaml", "envoy/host-scoped.yaml"} <= files, files


@pytest.mark.parametrize("path,text", snippets(), ids=lambda v: v if v.startswith("envoy/") else "")
def test_snippet_is_part_of_the_shipped_config(path, text):
    config = harness.REPO / path
    assert Path(config) in harness.SHIPPED_CONFIGS, f"{path} is not a config the suite runs"
    snippet = yaml.safe_load(text)
    assert snippet, text
    assert occurs(yaml.safe_load(config.read_text()), snippet), (
        f"docs/deployment.md has a snippet that is not (or no longer) in {path}:\n{text}")


def test_the_checker_notices_drift():
    cfg = yaml.safe_load(harness.SELF_SIGNED_CONFIG.read_text())
    assert occurs(cfg, {"trust_chain_verification": "ACCEPT_UNTRUSTED"})
    assert not occurs(cfg, {"trust_chain_verification": "VERIFY_TRUST_CHAIN"})
    assert not occurs(cfg, {"validation_context": {"trusted_ca": {"filename": "envoy/certs/ca.pem"}}})
