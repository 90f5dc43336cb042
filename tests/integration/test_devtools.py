"""`stackscaler dev controlplane` as users run it, and the Go-absent paths."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stackscaler.devtools import controlplane as cp
from tests.conftest import ROOT

EXE = shutil.which("stackscaler") or str(ROOT / ".venv" / "bin" / "stackscaler")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env, check=False
    )


def _no_go_env(tmp_path: Path) -> dict[str, str]:
    """A PATH without Go and a source tree whose control plane is not built."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "tests" / "controlplane", src / "tests" / "controlplane")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kubectl",):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "STACKSCALER_CONTROLPLANE_BIN")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{bin_dir}"
    env["STACKSCALER_SOURCE_DIR"] = str(src)
    return env


@pytest.mark.controlplane
def test_start_twice_status_and_stop(tmp_path: Path) -> None:
    if cp.find_binaries() is None:
        pytest.skip("control plane not built (make controlplane)")
    d = tmp_path / "cp"
    first = _run("dev", "controlplane", "start", "--dir", str(d))
    try:
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == str(d / "kubeconfig")
        assert "control plane ready in" in first.stderr
        again = _run("dev", "controlplane", "start", "--dir", str(d))
        assert again.returncode == 1
        assert "already running" in again.stderr and "Traceback" not in again.stderr
        status = _run("dev", "controlplane", "status", "--dir", str(d))
        assert status.returncode == 0 and status.stdout.startswith("https://127.0.0.1:")
        plane = cp.status(d)
        assert plane is not None
        pids = list(plane.pids.values())
    finally:
        stopped = _run("dev", "controlplane", "stop", "--dir", str(d))
    assert stopped.returncode == 0, stopped.stderr
    assert not d.exists(), "stop removes what the control plane left"
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(") ", 1)[1][0] == "Z"
    assert _run("dev", "controlplane", "status", "--dir", str(d)).returncode == 1


def test_start_without_go_explains_how_to_get_it(tmp_path: Path) -> None:
    r = _run(
        "dev", "controlplane", "start", "--dir", str(tmp_path / "cp"), env=_no_go_env(tmp_path)
    )
    assert r.returncode == 1
    assert "Go is not installed" in r.stderr and "https://go.dev/dl" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(("ci", "outcome"), [(None, "skipped"), ("true", "error")])
def test_fixture_skips_without_go_but_never_under_ci(
    tmp_path: Path, ci: str | None, outcome: str
) -> None:
    env = _no_go_env(tmp_path)
    if ci:
        env["CI"] = ci
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
            "tests/integration/test_controlplane.py::test_every_crd_is_established",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert f"1 {outcome}" in r.stdout, r.stdout + r.stderr
    assert "Go is not installed" in r.stdout
