"""The command line, run as users run it (the installed console script)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT

EXE = shutil.which("stackscaler") or str(
    Path(__file__).resolve().parents[2] / ".venv/bin/stackscaler"
)


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        check=False,
    )


def test_validate_stack_exits_0() -> None:
    r = run("validate", "-f", "examples/stack.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "6 resource(s) valid" in r.stdout


def test_validate_all_examples() -> None:
    files = [a for p in sorted(EXAMPLES.glob("*.yaml")) for a in ("-f", str(p))]
    r = run("validate", *files)
    assert r.returncode == 0, r.stdout + r.stderr


def test_validate_five_mistakes() -> None:
    r = run("validate", "-f", "examples/invalid/five-mistakes.yaml")
    assert r.returncode == 1
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 5
    label = "examples/invalid/five-mistakes.yaml: document 1 (WebTier shop/broken-web): "
    assert lines == [
        label + "spec.behavior.scaleIn.cooldownSeconds: must be >= 0, got -5",
        label + "spec.metrics[0].target.value: must be a number, got string 'fifty'",
        label + "spec.minCapacity: minCapacity (10) must be <= maxCapacity (4): "
        "lower minCapacity or raise maxCapacity",
        label + "spec.schedules[0].cron: invalid cron expression: hour field '25': "
        "value 25 out of range 0-23",
        label + "spec.schedules[0].timeZone: unknown time zone 'Mars/Olympus_Mons'; use an IANA "
        "name such as UTC, America/New_York or Europe/Berlin",
    ]
    assert "Traceback" not in r.stderr
    assert "5 problem(s) in 1 of 1 resource(s)" in r.stderr


def test_validate_reports_every_file_and_document(tmp_path: Path) -> None:
    two = tmp_path / "two.yaml"
    two.write_text(
        (EXAMPLES / "invalid" / "five-mistakes.yaml").read_text()
        + "\n---\n"
        + (EXAMPLES / "webtier-deployment.yaml").read_text()
    )
    r = run("validate", "-f", str(two), "-f", "examples/stack.yaml")
    assert r.returncode == 1
    assert "5 problem(s) in 1 of 8 resource(s)" in r.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("spec: [unclosed", "invalid YAML"),
        ("apiVersion: v1\nkind: ConfigMap\n", "no stackscaler.dev resources"),
    ],
)
def test_validate_bad_files(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    r = run("validate", "-f", str(f))
    assert r.returncode == 1
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_validate_missing_file() -> None:
    r = run("validate", "-f", "does-not-exist.yaml")
    assert r.returncode == 1
    assert "does-not-exist.yaml: cannot read" in r.stderr


def test_validate_stdin() -> None:
    r = run("validate", "-f", "-", stdin=(EXAMPLES / "webtier-deployment.yaml").read_text())
    assert r.returncode == 0


HPA = """
apiVersion: stackscaler.dev/v1alpha1
kind: WebTier
metadata: {name: hpa-parity}
spec:
  target: {kind: Deployment, name: web}
  minCapacity: 1
  maxCapacity: 10
  metrics:
    - name: cpu
      prometheus: {serverAddress: "http://prometheus:9090", query: cpu}
      target: {type: Value, value: 50}
"""


def test_decide_hpa_parity(tmp_path: Path) -> None:
    f = tmp_path / "hpa.yaml"
    f.write_text(HPA)
    r = run("decide", "-f", str(f), "--current", "3", "--metric", "cpu=90")
    assert r.returncode == 0, r.stderr
    assert "WebTier hpa-parity: 3 -> 6 (Out)" in r.stdout
    r = run("decide", "-f", str(f), "--current", "3", "--metric", "cpu=90", "--json")
    out = json.loads(r.stdout)
    assert (out["desired"], out["direction"]) == (6, "Out")
    assert any("ratio 1.80" in reason for reason in out["reasons"])
    within = json.loads(
        run("decide", "-f", str(f), "--current", "3", "--metric", "cpu=54", "--json").stdout
    )
    assert (within["desired"], within["direction"]) == (3, "None")


def test_decide_sqs_recipe() -> None:
    r = run(
        "decide",
        "-f",
        "examples/stack.yaml",
        "--name",
        "workers",
        "--current",
        "10",
        "--metric",
        "backlog=1500",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["desired"] == 15


def test_decide_unknown_metric_holds() -> None:
    r = run(
        "decide",
        "-f",
        "examples/stack.yaml",
        "--name",
        "web",
        "--current",
        "10",
        "--metric",
        "cpu=unknown",
        "--metric",
        "requests-per-minute=100",
        "--json",
        "--now",
        "2026-11-28T12:00:00Z",
    )
    out = json.loads(r.stdout)
    assert out["desired"] == 10 and out["limitedBy"] == "unknownMetrics"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--metric", "memory=3"],
            "has no metric 'memory'; its metrics are: cpu, requests-per-minute",
        ),
        (["--metric", "cpu"], "expected NAME=VALUE"),
        (["--metric", "cpu=lots"], "'lots' is not a number"),
        (["--now", "yesterday"], "expected an RFC 3339 time"),
    ],
)
def test_decide_bad_arguments(args: list[str], message: str) -> None:
    r = run("decide", "-f", "examples/stack.yaml", "--name", "web", "--current", "3", *args)
    assert r.returncode == 1
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_decide_needs_a_name_when_ambiguous() -> None:
    r = run("decide", "-f", "examples/stack.yaml", "--current", "3")
    assert r.returncode == 1 and "choose one with --name" in r.stderr


def test_decide_invalid_resource_names_the_field() -> None:
    r = run("decide", "-f", "examples/invalid/five-mistakes.yaml", "--current", "3")
    assert r.returncode == 1
    assert "spec.minCapacity: minCapacity (10) must be <= maxCapacity (4)" in r.stderr


def test_decide_with_history_from_status(tmp_path: Path) -> None:
    f = tmp_path / "hpa.yaml"
    f.write_text(HPA)
    first = json.loads(
        run(
            "decide",
            "-f",
            str(f),
            "--current",
            "3",
            "--metric",
            "cpu=90",
            "--now",
            "2026-11-26T12:00:00Z",
            "--json",
        ).stdout
    )
    hist = tmp_path / "history.json"
    hist.write_text(json.dumps(first["history"]))
    second = json.loads(
        run(
            "decide",
            "-f",
            str(f),
            "--current",
            "6",
            "--metric",
            "cpu=100",
            "--now",
            "2026-11-26T12:00:30Z",
            "--history",
            str(hist),
            "--json",
        ).stdout
    )
    assert second["limitedBy"] == "scaleOutCooldown"


def test_decide_with_units_starting(tmp_path: Path) -> None:
    f = tmp_path / "hpa.yaml"
    f.write_text(HPA)
    args = ("decide", "-f", str(f), "--current", "4", "--metric", "cpu=100")
    r = run(*args, "--starting", "1", "--leaving", "1")
    assert r.returncode == 0, r.stderr
    assert "WebTier hpa-parity: 4 -> 6 (Out)" in r.stdout  # ceil(3 x 100 / 50), not 8
    assert "units: 4 = 3 ready + 1 starting; 1 leaving" in r.stdout
    assert (
        "1 of 4 units starting, 1 leaving (not in capacity): "
        "cpu computed over the 3 ready -> 6; 4 already ordered"
    ) in r.stdout
    out = json.loads(run(*args, "--ready", "3", "--json").stdout)
    assert (out["desired"], out["ready"], out["starting"], out["leaving"]) == (6, 3, 1, 0)
    consistent = json.loads(run(*args, "--ready", "3", "--starting", "1", "--json").stdout)
    assert consistent["desired"] == 6
    assert json.loads(run(*args, "--json").stdout)["desired"] == 8  # all 4 ready at 100%


def test_decide_holds_scale_in_while_units_start(tmp_path: Path) -> None:
    f = tmp_path / "hpa.yaml"
    f.write_text(
        HPA + "  behavior:\n" + "    scaleIn: {cooldownSeconds: 0, stabilizationWindowSeconds: 0}\n"
    )
    args = ("decide", "-f", str(f), "--current", "8", "--metric", "cpu=10")
    r = run(*args, "--starting", "3")
    assert r.returncode == 0, r.stderr
    assert "WebTier hpa-parity: 8 -> 8 (None)" in r.stdout
    assert "limited by: warmup" in r.stdout
    assert "no scale-in while 3 of 8 units are starting" in r.stdout
    assert "(In)" in run(*args).stdout  # all ready: it scales in


def test_decide_without_units_in_flight_prints_as_before(tmp_path: Path) -> None:
    f = tmp_path / "hpa.yaml"
    f.write_text(HPA)
    r = run("decide", "-f", str(f), "--current", "3", "--metric", "cpu=90")
    assert "units:" not in r.stdout and "starting" not in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--starting", "4"], "--starting 4: more than --current 3"),
        (["--starting", "-1"], "--starting must be >= 0"),
        (["--leaving", "-1"], "--leaving must be >= 0"),
        (["--ready", "4"], "--ready 4: more than --current 3"),
        (["--ready", "-1"], "--ready must be >= 0"),
        (["--ready", "1", "--starting", "1"], "--ready 1 + --starting 1 must equal --current 3"),
    ],
)
def test_decide_bad_unit_counts(args: list[str], message: str) -> None:
    r = run("decide", "-f", "examples/stack.yaml", "--name", "web", "--current", "3", *args)
    assert r.returncode == 1
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_crds_check(tmp_path: Path) -> None:
    assert run("crds", "--check", "--output-dir", "crds").returncode == 0
    r = run("crds", "--check", "--output-dir", str(tmp_path))
    assert r.returncode == 1 and "run `make crds`" in r.stderr
    assert run("crds", "--output-dir", str(tmp_path)).returncode == 0
    assert run("crds", "--check", "--output-dir", str(tmp_path)).returncode == 0


def test_demo_preview_runs() -> None:
    r = run("demo", "--preview", "--days", "0.5")
    assert r.returncode == 0, r.stderr
    assert "PREVIEW" in r.stdout
    assert "instance-hours" in r.stdout
