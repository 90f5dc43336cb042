"""``stackscaler simulate`` on a TableCapacity: the table's dimensions together, the
report's table and JSON, the flags that do not apply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stackscaler.cli import main

TABLE = """\
apiVersion: stackscaler.dev/v1alpha1
kind: TableCapacity
metadata: {{name: {name}, namespace: shop}}
spec:
  target: {{kind: Table, name: {table}, dimension: {dimension}, region: us-east-1}}
  minCapacity: 5
  maxCapacity: 4000
"""


@pytest.fixture
def stack(tmp_path: Path) -> str:
    docs = [
        TABLE.format(name="sessions-read", table="shop-sessions", dimension="Read"),
        TABLE.format(name="sessions-write", table="shop-sessions", dimension="Write"),
        TABLE.format(name="carts-read", table="shop-carts", dimension="Read"),
    ]
    p = tmp_path / "stack.yaml"
    p.write_text("---\n".join(docs))
    return str(p)


@pytest.fixture
def trace(tmp_path: Path) -> str:
    rows = [600] * 30 + [6000] * 60 + [300] * 60  # requests per minute
    p = tmp_path / "trace.csv"
    p.write_text("minute,requests\n" + "".join(f"{i},{d}\n" for i, d in enumerate(rows)))
    return str(p)


def test_a_table_runs_with_its_other_dimension(
    stack: str, trace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["simulate", "-f", stack, "--tier", "sessions-read", "--trace", trace,
         "--capacity-per-unit", "60", "--capacity-per-unit", "sessions-write=600",
         "--policy", "all", "--json", "-"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "shop/sessions-write (Write: one unit serves 600 per row interval)" in out
    assert "carts" not in out  # another table: not simulated with it
    assert "on-demand for the same trace" in out
    data = json.loads(out[out.index("{") :])
    names = [r["policy"] for r in data["reports"]]
    assert names == ["default", "target-tracking", "static-peak", "oracle"]
    oracle = data["reports"][-1]
    assert not oracle["budgeted"]
    read, write = oracle["tiers"]
    assert (read["dimension"], write["dimension"]) == ("Read", "Write")
    # 100 RCU/s for an hour -> ceil(100 / 0.7) = 143 RCUs while it lasts
    assert read["peak_capacity"] == 143 and write["peak_capacity"] == 15
    assert read["request_units"] == pytest.approx((600 * 30 + 6000 * 60 + 300 * 60) / 60 * 60)
    assert oracle["on_demand_cost"] == pytest.approx(
        read["request_units"] / 1e6 * 0.125 + write["request_units"] / 1e6 * 0.625, abs=1e-4
    )
    for r in data["reports"][:3]:
        assert r["budgeted"] and r["max_decreases_per_utc_day"] <= 27


def test_a_table_alone_in_its_file(
    tmp_path: Path, trace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "one.yaml"
    p.write_text(TABLE.format(name="t", table="shop-sessions", dimension="Write"))
    assert main(["simulate", "-f", str(p), "--trace", trace, "--json", "-"]) == 0
    data = json.loads((out := capsys.readouterr().out)[out.index("{") :])
    assert data["policy"] == "default" and len(data["tiers"]) == 1
    assert data["tiers"][0]["dimension"] == "Write"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--policy", "hpa"], "policy 'hpa' does not apply to a TableCapacity"),
        (["--warmup", "60"], "--warmup does not apply to a TableCapacity"),
        (["--price", "1"], "--price does not apply to a TableCapacity"),
        (["--capacity-per-unit", "nope=3"], "nope is not simulated"),
    ],
)
def test_flags_that_do_not_apply(
    stack: str, trace: str, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", "-f", stack, "--tier", "sessions-read", "--trace", trace, *flags])
    assert code == 1
    assert message in capsys.readouterr().err


def test_two_resources_for_one_dimension_are_refused(
    tmp_path: Path, trace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = [
        TABLE.format(name="a", table="shop-sessions", dimension="Read"),
        TABLE.format(name="b", table="shop-sessions", dimension="Read"),
    ]
    p = tmp_path / "twice.yaml"
    p.write_text("---\n".join(docs))
    assert list(yaml.safe_load_all(p.read_text()))[1]["metadata"]["name"] == "b"
    assert main(["simulate", "-f", str(p), "--tier", "a", "--trace", trace]) == 1
    assert "a second Read resource" in capsys.readouterr().err
