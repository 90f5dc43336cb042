"""bench/table.py: the sessions table's mapping of the trace and the claims it judges."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench import table as bench_table

TABLE = """\
apiVersion: stackscaler.dev/v1alpha1
kind: TableCapacity
metadata: {{name: {name}, namespace: shop}}
spec:
  target: {{kind: Table, name: {table}, dimension: {dimension}}}
  minCapacity: 5
  maxCapacity: 4000
"""


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    p = tmp_path / "stack.yaml"
    p.write_text(
        "---\n".join(
            [
                TABLE.format(name="sessions-read", table="shop-sessions", dimension="Read"),
                TABLE.format(name="carts-write", table="shop-carts", dimension="Write"),
                TABLE.format(name="sessions-write", table="shop-sessions", dimension="Write"),
            ]
        )
    )
    return p


def test_reads_and_writes_of_the_sessions_table(stack: Path) -> None:
    tiers = bench_table.table_tiers(stack, "sessions-read")
    assert [(t.name, t.dimension, t.capacity_per_unit) for t in tiers] == [
        ("shop/sessions-read", "Read", 60.0),  # one RCU: 60 requests a minute
        ("shop/sessions-write", "Write", 600.0),  # every 10th request writes
    ]
    assert all(t.target == pytest.approx(0.7) for t in tiers)


def test_two_days_judge_every_claim(stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_table.main(["--file", str(stack), "--days", "2"]) == 0
    out = capsys.readouterr().out
    claims = [line for line in out.splitlines() if line.startswith(("[PASS]", "[FAIL]"))]
    # per dimension and the table; the decreases; the trough per dimension
    assert len(claims) == 6
    assert any("at most 27 decreases in any UTC day" in c for c in claims)
    assert "on-demand for the same requests" in out
    assert "of 1 days" in out  # the first UTC day of the trace is partial: one full day


def test_a_missing_resource_is_named(stack: Path) -> None:
    with pytest.raises(SystemExit, match="no TableCapacity named 'nope'"):
        bench_table.table_tiers(stack, "nope")


def test_a_window_variant_replaces_both_dimensions_windows(stack: Path) -> None:
    tiers = bench_table.with_windows(bench_table.table_tiers(stack, "sessions-read"), 60, None)
    assert [t.spec.behavior.scale_out.stabilization_window_seconds for t in tiers] == [60, 60]
    assert [t.spec.behavior.scale_in.stabilization_window_seconds for t in tiers] == [900, 900]
