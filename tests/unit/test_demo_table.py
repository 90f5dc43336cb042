"""The demo's live table, event lines and summary."""

from __future__ import annotations

import ast

import pytest

from stackscaler.demo.load import TierTally
from stackscaler.demo.stack import Tier
from stackscaler.demo.table import (
    HEADERS,
    WAITING,
    Row,
    TierSummary,
    count,
    event_line,
    mmss,
    percent,
    render_summary,
    render_table,
    tier_status,
)
from tests.unit.test_layout import CLOCK_CALLS, FORBIDDEN, PACKAGE, _imports

WEB = Tier("WebTier", "web", "shop", "ASG shop-web", "cpu", 50.0, 0.1, 2, 40)
WORKERS = Tier("WorkerPool", "workers", "shop", "ASG shop-workers", "backlog", 10.0, 0.1, 0, 50)


def test_status_before_the_operator() -> None:
    st = tier_status(None)
    assert (st.current, st.desired, st.reason, st.decided) == (None, None, WAITING, False)


def test_status_of_a_decision() -> None:
    status = {
        "currentCapacity": 2,
        "desiredCapacity": 5,
        "lastDecision": {"direction": "Out"},
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "2 -> 5: cpu"},
            {"type": "MetricsAvailable", "status": "True", "message": "2 metric(s) read"},
        ],
    }
    st = tier_status(status)
    assert (st.current, st.desired, st.reason, st.decided) == (2, 5, "2 -> 5: cpu", True)


def test_status_of_a_failure() -> None:
    status = {
        "currentCapacity": "three",
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "TargetNotFound", "message": "no ASG"}
        ],
    }
    st = tier_status(status)
    assert (st.current, st.reason) == (None, "TargetNotFound: no ASG")


@pytest.mark.parametrize(
    ("value", "text"),
    [(12345.6, "12,346"), (999.4, "999"), (1_234_567, "1.23M"), (float("inf"), "-")],
)
def test_count(value: float, text: str) -> None:
    assert count(value) == text


def test_small_formats() -> None:
    assert percent(None) == "no data"
    assert percent(55.4) == "55%"
    assert mmss(75.9) == "01:15"
    assert mmss(-3) == "00:00"


def test_table_aligns_and_fits_the_width() -> None:
    rows = [
        Row(
            "web", "ASG shop-web", "6,580 req", "cpu 55% vs 50%", 5, 5, 10, "5 -> 10: " + "x" * 200
        ),
        Row("workers", "ASG shop-workers", "4 jobs", "-", None, None, None, WAITING),
    ]
    lines = render_table("story 06:05 EDT", rows, width=120)
    assert lines[0] == "story 06:05 EDT"
    assert lines[1].split() == [
        "tier",
        "scales",
        "demand/min",
        "load",
        "vs",
        "target",
        "ready",
        "current",
        "desired",
        "last",
        "reason",
    ]
    assert len(HEADERS) == 8
    assert all(len(line) <= 120 for line in lines), [len(line) for line in lines]
    assert lines[2].endswith("...")
    assert lines[2].startswith("web      ASG shop-web      ")
    # numbers are right-aligned under their headers
    header, web, workers = lines[1], lines[2], lines[3]
    end = header.index("desired") + len("desired")
    assert web[:end].endswith("10")
    assert workers[:end].endswith("-")
    assert "waiting for the operator" in workers


def test_table_keeps_a_readable_reason_on_a_narrow_screen() -> None:
    rows = [Row("web", "ASG shop-web", "1 req", "cpu 1% vs 50%", 2, 2, 2, "hold 2: " + "y" * 50)]
    line = render_table("t", rows, width=40)[2]
    assert "hold 2: yyyyyyyy" in line  # at least 20 characters of reason, even past the width


def test_event_line() -> None:
    line = event_line(
        9.4, "06:04", "web", reason="ScaledOut", message="2 -> 5: requests", width=200
    )
    assert line == "[00:09 | 06:04] web: ScaledOut 2 -> 5: requests"
    assert len(event_line(1, "06:00", "web", reason="ScaledOut", message="z" * 99, width=30)) == 30


def test_summary() -> None:
    tiers = [
        TierSummary(
            WEB,
            TierTally(seconds=60.0, seconds_over=15.0, min_capacity=2, max_capacity=10),
            scale_outs=2,
            scale_ins=1,
            over_what="cpu > 55%",
        ),
        TierSummary(WORKERS, TierTally(), scale_outs=0, scale_ins=0, over_what="backlog > 11"),
    ]
    lines = render_summary(
        tiers, heading="summary: 01:00", first_scale_out="9 s into the story", footer=["logs: x"]
    )
    assert lines[0] == "summary: 01:00"
    web = next(line for line in lines if line.startswith("WebTier web"))
    assert "3 (2 out, 1 in)" in web
    assert " 2-10 " in web
    assert web.endswith("25% (15 of 60 s with cpu > 55%)")
    workers = next(line for line in lines if line.startswith("WorkerPool workers"))
    assert "0 (0 out, 0 in)" in workers and " - " in workers
    assert "first scale-out: 9 s into the story" in lines
    assert lines[-1] == "logs: x"
    none = render_summary(tiers, heading="h", first_scale_out=None)
    assert "first scale-out: none during this run" in none


PURE_DEMO = ("story", "stack", "load", "table", "timeline")
PURE_ELSEWHERE = {"stackscaler.sim.chart"}
"""Pure modules outside the demo that its pure modules may use (the picture's values)."""


@pytest.mark.parametrize("module", PURE_DEMO)
def test_the_demos_pure_modules_do_no_io(module: str) -> None:
    path = PACKAGE / "demo" / f"{module}.py"
    tree = ast.parse(path.read_text())
    assert not _imports(tree) & FORBIDDEN, f"demo/{module}.py imports I/O"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("stackscaler")
        ):
            top = ".".join(node.module.split(".")[:2])
            allowed = node.module in {f"stackscaler.demo.{m}" for m in PURE_DEMO} | PURE_ELSEWHERE
            assert allowed or top in {"stackscaler", "stackscaler.model", "stackscaler.policy"}, (
                f"demo/{module}.py imports {node.module}"
            )
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert (node.value.id, node.attr) not in CLOCK_CALLS, (
                f"demo/{module}.py reads the clock"
            )


def test_the_operator_never_imports_the_demo() -> None:
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        if parts[0] in ("demo", "cli"):
            continue
        assert "stackscaler.demo" not in path.read_text(), path
