"""Project layout and layering rules, enforced rather than reviewed."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "operator" / "stackscaler"
PURE = ("model", "policy", "forecast")
# The pure layers, bottom up: each may import only the ones below it (and errors).
LAYERS = ("model", "policy", "forecast")
# Modules the pure core may never import: I/O, frameworks, clocks, processes.
FORBIDDEN = {
    "kopf",
    "boto3",
    "botocore",
    "aiohttp",
    "kubernetes",
    "prometheus_client",
    "yaml",
    "requests",
    "urllib",
    "http",
    "socket",
    "asyncio",
    "subprocess",
    "os",
    "io",
    "time",
    "pathlib",
    "shutil",
    "threading",
    "random",
}
CLOCK_CALLS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
    ("time", "monotonic"),
}


def test_operator_dir_is_not_a_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_import_operator_is_the_standard_library() -> None:
    # The source root is on sys.path in tests; `operator` must still be the stdlib module.
    code = (
        "import sys; sys.path.insert(0, 'operator'); import operator, stackscaler; "
        "assert operator.add(2, 3) == 5, operator; "
        "assert 'site-packages' not in (operator.__file__ or ''), operator.__file__; "
        "print(operator.__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "operator"
    assert importlib.import_module("operator").itemgetter  # the stdlib's, in-process too


def _modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", PURE)
def test_pure_layers_import_no_io(layer: str) -> None:
    files = _modules(layer)
    assert files
    for path in files:
        bad = _imports(ast.parse(path.read_text())) & FORBIDDEN
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: the core must stay pure"


@pytest.mark.parametrize("layer", PURE)
def test_pure_layers_read_no_clock(layer: str) -> None:
    for path in _modules(layer):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert (node.value.id, node.attr) not in CLOCK_CALLS, (
                    f"{path.relative_to(ROOT)}:{node.lineno} reads the clock; pass time in"
                )
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "open", (
                    f"{path.relative_to(ROOT)}:{node.lineno} opens a file"
                )


def _stackscaler_imports(tree: ast.AST) -> set[str]:
    """``stackscaler.<top>`` of every absolute stackscaler import (``import`` and ``from``)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        names.update(
            ".".join(m.split(".")[:2]) for m in modules if m.split(".")[0] == "stackscaler"
        )
    return names


def _allowed(layer: str) -> set[str]:
    below = LAYERS[: LAYERS.index(layer) + 1]
    return {"stackscaler", "stackscaler.errors", *(f"stackscaler.{b}" for b in below)}


@pytest.mark.parametrize("layer", LAYERS)
def test_pure_layers_depend_only_on_lower_pure_layers(layer: str) -> None:
    # model <- policy <- forecast: the policy never imports the forecast, the model neither
    allowed = _allowed(layer)
    for path in _modules(layer):
        bad = _stackscaler_imports(ast.parse(path.read_text())) - allowed
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: not below {layer}"


def test_layer_check_catches_an_upward_import() -> None:
    tree = ast.parse("from stackscaler.forecast import build\nimport stackscaler.sim.run\n")
    assert _stackscaler_imports(tree) == {"stackscaler.forecast", "stackscaler.sim"}
    assert _stackscaler_imports(tree) - _allowed("policy") == {
        "stackscaler.forecast",
        "stackscaler.sim",
    }
    assert _stackscaler_imports(tree) - _allowed("forecast") == {"stackscaler.sim"}


def test_only_handlers_import_kopf() -> None:
    for path in PACKAGE.rglob("*.py"):
        if "handlers" in path.relative_to(PACKAGE).parts:
            continue
        assert "kopf" not in _imports(ast.parse(path.read_text())), path


def test_layering_check_catches_a_violation(tmp_path: Path) -> None:
    # the checker itself works: an I/O import in a pure module is found
    bad = "import boto3\nfrom datetime import datetime\nx = datetime.now()\n"
    tree = ast.parse(bad)
    assert _imports(tree) & FORBIDDEN == {"boto3"}
    clock = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and isinstance(n.value, ast.Name)
        and (n.value.id, n.attr) in CLOCK_CALLS
    ]
    assert clock
