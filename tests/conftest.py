"""Shared test helpers: example documents and mutations of them."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

DELETE = object()
"""Use as a mutation value to delete the field."""


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def example(kind: str, name: str | None = None) -> dict[str, Any]:
    """A deep copy of the first document of ``kind`` (and ``name``) in examples/stack.yaml."""
    for doc in load_docs(EXAMPLES / "stack.yaml"):
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name):
            return copy.deepcopy(doc)
    raise KeyError(kind)


def _split(path: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", path) if p]


def mutate(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with ``path`` (``spec.metrics[0].target.value``) set or deleted."""
    out = copy.deepcopy(doc)
    parts = _split(path)
    node: Any = out
    for p in parts[:-1]:
        if isinstance(p, str) and p not in node:
            node[p] = {}
        node = node[p]
    last = parts[-1]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return out


@pytest.fixture
def web() -> dict[str, Any]:
    return example("WebTier")
