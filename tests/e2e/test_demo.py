"""``stackscaler demo`` end to end: the real control plane, moto, the operator, the story.

Runs the demo as users do (a subprocess) for a bounded part of the story
and checks what it promises: exit 0, the live table, at least one scale-out
decided by the operator, the summary, the picture it names (by default
``<work dir>/demo.png``), and nothing left behind: no process
it started survives and the control plane's folder is gone (the logs stay).
Without Go (and no prebuilt control plane) it is skipped, except under
CI=true, where it fails; the demo itself runs with CI=true so it can never
fall back to the preview here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stackscaler.devtools import controlplane as cp
from tests.conftest import ROOT
from tests.unit.test_demo_picture import png_size

pytestmark = pytest.mark.controlplane

DURATION = "40"
"""Seconds of story: the web tier needs 5 instances from the first story minute on (it starts
at 2), so the operator scales it out as soon as it has read one CloudWatch period."""
TIERS = (
    "WebTier web",
    "WorkerPool workers",
    "ReadReplicaPool shop-db-readers",
    "CachePool sessions",
)


def _require_controlplane() -> None:
    try:
        found = cp.find_binaries()
    except cp.ControlPlaneError as exc:
        found, why = None, str(exc)
    else:
        why = "no control plane binaries and Go is not installed: " + cp.GO_HINT
    if found is None and shutil.which("go") is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires the control plane: {why}", pytrace=False)
        pytest.skip(why)


def _cmdline(pid: int) -> str | None:
    """The command line of a live, non-zombie process; None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(") ", 1)[1].startswith("Z"):
            return None
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, IndexError):
        return None


def _survivors(markers: list[str]) -> list[str]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        line = _cmdline(int(entry.name))
        if line and any(m in line for m in markers):
            out.append(f"{entry.name}: {line}")
    return out


def test_demo_scales_out_prints_its_summary_and_leaves_nothing_behind(tmp_path: Path) -> None:
    _require_controlplane()
    env = {**os.environ, "TMPDIR": str(tmp_path), "CI": "true"}
    result = subprocess.run(
        [sys.executable, "-m", "stackscaler", "demo", "--duration", DURATION],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=900,  # includes a first build of the control plane when it is missing
        check=False,
    )
    out = result.stdout
    report = f"stdout:\n{out}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, report
    assert "Traceback" not in out + result.stderr, report

    # what it started, as it said so
    said = re.search(r"^work dir: (\S+)", out, re.M)
    assert said, report
    workdir = Path(said.group(1))
    assert workdir.parent == tmp_path, report
    started = re.search(
        r"etcd pid (\d+), kube-apiserver pid (\d+).*moto (http://127\.0\.0\.1:(\d+)) "
        r"\(pid (\d+)\); operator pid (\d+)",
        out,
    )
    assert started, report
    etcd, apiserver, endpoint, moto_port, moto, operator = started.groups()

    # the live table, with every tier and its reason
    header = re.compile(r"^tier\s+scales\s+demand/min\s+load vs target\s+ready\s+current\s+desired")
    assert any(header.match(line) for line in out.splitlines()), report
    for name in ("web ", "workers ", "shop-db-readers ", "sessions "):
        assert re.search(rf"^{name}\s+\S", out, re.M), name
    assert re.search(r"^web\s+ASG shop-web\s+[\d,]+ req\s+cpu \d+% vs 50%", out, re.M), report

    # at least one scale-out, as the operator's Event reports it, and the web tier's among them
    outs = re.findall(r"^\[\d\d:\d\d \| \d\d:\d\d\] (\S+): ScaledOut (\d+) -> (\d+)", out, re.M)
    assert outs, report
    assert all(int(new) > int(old) for _, old, new in outs), outs
    assert "web" in {tier for tier, _, _ in outs}, report

    # the summary: every tier, the scale actions, the logs
    assert re.search(r"^summary: \d\d:\d\d of story .* ended by --duration", out, re.M), report
    counted = {}
    for tier in TIERS:
        m = re.search(
            rf"^{tier}\s+(\d+) \((\d+) out, (\d+) in\)\s+(\d+(?:-\d+)?)\s+\d+% \(", out, re.M
        )
        assert m, (tier, report)
        counted[tier] = int(m.group(2))
    assert counted["WebTier web"] >= 1, counted
    assert re.search(r"^first scale-out: \d+ s into the story \(", out, re.M), report
    logs = workdir / "logs"
    assert f"logs: {logs} (" in out
    assert (logs / "operator.log").stat().st_size > 0
    assert (logs / "moto.log").is_file()

    # the picture of what was recorded, where it said it would be, named in the summary
    picture = workdir / "demo.png"
    assert f"picture at the end: {picture}\n" in out, report
    assert re.search(
        rf"^picture: {re.escape(str(picture))} \(demand, ready and desired capacity per tier",
        out,
        re.M,
    ), report
    width, height = png_size(picture)
    assert width >= 800 and height > 0.8 * width, (width, height)  # four panels stacked
    assert 10_000 < picture.stat().st_size < 400_000

    # nothing left behind
    assert not (workdir / "controlplane").exists(), report
    assert f"{workdir / 'controlplane'} removed" in out, report
    for pid, marker in (
        (etcd, str(workdir)),
        (apiserver, str(workdir)),
        (operator, str(workdir)),
        (moto, f"-p {moto_port}"),
    ):
        line = _cmdline(int(pid))
        assert line is None or marker not in line, f"pid {pid} survived: {line}"
    assert _survivors([str(workdir), f"moto_server -H 127.0.0.1 -p {moto_port}"]) == []
    assert endpoint.startswith("http://127.0.0.1:")  # loopback only
