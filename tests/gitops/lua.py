"""Run the Argo CD health script (docs/gitops/argocd/health.lua) with Debian's lua5.4.

* :func:`lua_literal`: a JSON value (what the API server returned) as one Lua table
  constructor. Every string, key or value, is written as decimal escapes (``"\\104"``)
  except letters, digits and a few inert characters, so no string in a resource can end
  the literal or be read as code; the harness also loads it with an empty environment.
* :func:`argocd_health`: the script's (status, message) for an object, run by
  tests/gitops/argocd_harness.lua in Argo CD's sandbox (base, table and os only).
* :func:`lua_binary`: lua5.4 on PATH (``make lua`` installs Debian's package); without
  it the tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEALTH_LUA = ROOT / "docs" / "gitops" / "argocd" / "health.lua"
HARNESS = Path(__file__).resolve().parent / "argocd_harness.lua"

_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.:/,;()")
MAX_EXACT = 2**53
"""Argo CD's Lua numbers are float64: integers beyond this are not exact there."""


def lua_binary() -> str:
    found = shutil.which("lua5.4")
    if found is None:
        message = "lua5.4 is not installed (make lua, or apt-get install lua5.4)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires {message}", pytrace=False)
        pytest.skip(message)
    return found


def lua_string(text: str) -> str:
    """``text`` as a Lua string literal: its UTF-8 bytes, all but inert ones escaped."""
    return '"' + "".join(chr(b) if b in _PLAIN else f"\\{b:03d}" for b in text.encode()) + '"'


def lua_literal(value: Any) -> str:
    """A JSON value (dict, list, str, int, float, bool, None) as a Lua expression."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if abs(value) <= MAX_EXACT:
            return str(value)
        return repr(float(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a JSON number: {value!r}")
        return repr(value)
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        # a null value is an absent key, as when Argo CD decodes the object
        fields = (
            f"[{lua_string(str(k))}] = {lua_literal(v)}" for k, v in value.items() if v is not None
        )
        return "{" + ", ".join(fields) + "}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def run_health(
    obj: dict[str, Any], script: Path = HEALTH_LUA
) -> subprocess.CompletedProcess[bytes]:
    lua = lua_binary()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", encoding="ascii") as literal:
        literal.write(lua_literal(obj))
        literal.flush()
        return subprocess.run(
            [lua, str(HARNESS), str(script), literal.name],
            capture_output=True,
            timeout=30,
            check=False,
        )


def argocd_health(obj: dict[str, Any], script: Path = HEALTH_LUA) -> tuple[str, str]:
    """The health status and message Argo CD would show for ``obj``."""
    out = run_health(obj, script)
    assert out.returncode == 0, f"health.lua failed ({out.returncode}): {out.stderr.decode()}"
    status, _, message = out.stdout.decode().partition("\0")
    return status, message
