"""Edits of parsed Kubernetes manifests for the schema tests (test_istio.py,
test_gateway.py): a node found by JSON pointer, and a change made to it."""

from __future__ import annotations

from typing import Any, Callable

Edit = Callable[[dict], None]


def rename(key: str, new: str) -> Edit:
    """Moves ``key``'s value to ``new``: a misspelt field."""
    def f(node: dict) -> None:
        node[new] = node.pop(key)
    return f


def set_key(key: str, value: Any) -> Edit:
    """Sets ``key`` to ``value``: a wrong type or value."""
    return lambda node: node.__setitem__(key, value)


def at(doc: dict, path: str) -> Any:
    """The node at JSON pointer ``path`` ("" is the document itself)."""
    node: Any = doc
    for k in path.split("/")[1:]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    return node
