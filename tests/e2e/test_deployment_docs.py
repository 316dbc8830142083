"""docs/deployment.md copies its Envoy snippets from the shipped configs the
other tests run (envoy/envoy.yaml, self-signed.yaml, host-scoped.yaml), and
docs/deployment-native.md its Envoy Gateway ones from gateway/*.yaml (which
test_gateway.py checks): every ```yaml block whose first line is
`# from envoy/<file>` or `# from gateway/<file>` must still be part of that
file, so the documentation cannot drift from what is tested."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import harness

DOC = harness.REPO / "docs" / "deployment.md"
NATIVE_DOC = harness.REPO / "docs" / "deployment-native.md"
BLOCK = re.compile(r"^```yaml\n(# from ((?:envoy|gateway)/[\w.-]+\.yaml)\n.*?)^```", re.M | re.S)
SHIPPED = (*harness.SHIPPED_CONFIGS, *harness.GATEWAY_MANIFESTS)


def snippets() -> list[tuple[str, str]]:
    return [(m.group(2), m.group(1)) for doc in (DOC, NATIVE_DOC) for m in BLOCK.finditer(doc.read_text())]


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
    assert {"envoy/self-signed.yaml", "envoy/host-scoped.yaml",
            "gateway/envoyproxy-native.yaml", "gateway/envoyextensionpolicy-native.yaml"} <= files, files


@pytest.mark.parametrize("path,text", snippets(),
                         ids=lambda v: v if v.startswith(("envoy/", "gateway/")) else "")
def test_snippet_is_part_of_the_shipped_config(path, text):
    config = harness.REPO / path
    assert Path(config) in SHIPPED, f"{path} is not a config the suite runs"
    snippet = yaml.safe_load(text)
    assert snippet, text
    # a manifest may hold several documents: the snippet is part of one
    tree = [d for d in yaml.safe_load_all(config.read_text()) if d]
    assert occurs(tree[0] if len(tree) == 1 else tree, snippet), (
        f"the docs have a snippet that is not (or no longer) in {path}:\n{text}")


def test_the_checker_notices_drift():
    cfg = yaml.safe_load(harness.SELF_SIGNED_CONFIG.read_text())
    assert occurs(cfg, {"trust_chain_verification": "ACCEPT_UNTRUSTED"})
    assert not occurs(cfg, {"trust_chain_verification": "VERIFY_TRUST_CHAIN"})
    assert not occurs(cfg, {"validation_context": {"trusted_ca": {"filename": "envoy/certs/ca.pem"}}})
    policy = list(yaml.safe_load_all((harness.REPO / "gateway" / "envoyextensionpolicy-native.yaml").read_text()))
    assert occurs(policy, {"spec": {"dynamicModule": [{"filterName": "certbound"}]}})
    assert not occurs(policy, {"spec": {"dynamicModules": [{"filterName": "certbound"}]}})
