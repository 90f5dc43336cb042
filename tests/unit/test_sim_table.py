"""The simulated DynamoDB table (sim/table.py), the Application Auto Scaling baseline
(sim/aas_dynamodb.py) and the table's runs (sim/table_run.py). Pure and fast."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackscaler.model.spec import parse_resource
from stackscaler.policy import DecreaseBudget
from stackscaler.sim.aas_dynamodb import AasTableController
from stackscaler.sim.table import (
    MAX_DECREASES_PER_DAY,
    DecreaseLedger,
    Dimension,
    on_demand_price,
    unit_hour_price,
    utc_day,
)
from stackscaler.sim.table_run import TableConfig, TableTier, run_table, troughs

MIDNIGHT = datetime(2026, 11, 27, tzinfo=UTC).timestamp()
HOUR = 3600.0


def table_doc(name: str, dimension: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stackscaler.dev/v1alpha1",
        "kind": "TableCapacity",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "target": {"kind": "Table", "name": "shop-sessions", "dimension": dimension},
            "minCapacity": 5,
            "maxCapacity": 4000,
            **spec,
        },
    }


def tier(name: str, dimension: str, per_unit: float = 60.0, **spec: Any) -> TableTier:
    r = parse_resource(table_doc(name, dimension, **spec))
    return TableTier(r.key, dimension, r.scaling, 0.7, per_unit)


# --- the decrease budget, as the world enforces it -------------------------------


def test_four_at_any_time_then_one_an_hour_after_the_last() -> None:
    ledger = DecreaseLedger()
    assert all(ledger.request(MIDNIGHT + 60 * k) for k in range(4))
    assert not ledger.request(MIDNIGHT + 30 * 60)  # the 5th within the hour: refused
    assert ledger.refused == 1
    assert not ledger.request(MIDNIGHT + 180 + HOUR - 1)
    assert ledger.request(MIDNIGHT + 180 + HOUR)  # an hour after the last
    assert ledger.decreases_today(MIDNIGHT + 2 * HOUR) == 5
    assert ledger.decreases_today(MIDNIGHT + 24 * HOUR) == 0  # a new UTC day
    assert all(ledger.request(MIDNIGHT + 24 * HOUR + k) for k in range(4))
    assert ledger.per_day() == {utc_day(MIDNIGHT): 5, utc_day(MIDNIGHT) + 1: 4}


def test_every_hour_of_a_day_gives_at_most_27() -> None:
    ledger = DecreaseLedger()
    made = sum(ledger.request(MIDNIGHT + m * 60.0) for m in range(24 * 60))
    assert made == MAX_DECREASES_PER_DAY  # 4 in the first minutes, then one an hour (23)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 3 * 86_400, allow_nan=False), min_size=1, max_size=120))
def test_the_ledger_never_exceeds_27_a_day_and_agrees_with_the_policys_budget(
    offsets: list[float],
) -> None:
    ledger = DecreaseLedger()
    for off in sorted(offsets):
        t = MIDNIGHT + off
        budget = DecreaseBudget(ledger.decreases_today(t), ledger.last)
        # two independent readings of AWS's rule: the world's and the policy's
        assert ledger.allows(t) == (budget.left(t) > 0)
        ledger.request(t)
    assert max(ledger.per_day().values()) <= MAX_DECREASES_PER_DAY


# --- burst capacity and throttling -----------------------------------------------


def test_burst_capacity_as_aws_documents_it() -> None:
    """AWS's example: 150 RCUs unused for 5 minutes hold 45,000 units of burst, which
    serve 200 RCUs for 900 s; then the excess is throttled."""
    table = Dimension(150)
    assert table.burst == 45_000
    served = [table.serve(200.0, 60.0) for _ in range(16)]
    assert all(s.throttled_units == 0 for s in served[:15])
    assert served[15].throttled_units == pytest.approx(50 * 60)
    assert served[15].consumed == pytest.approx(150)  # refused requests consume nothing


def test_unused_capacity_refills_burst_up_to_300_seconds_and_a_decrease_trims_it() -> None:
    table = Dimension(100)
    table.serve(400.0, 60.0)  # draws 18,000 of the 30,000
    assert table.burst == pytest.approx(12_000)
    table.serve(0.0, 60.0)
    table.serve(0.0, 60.0)
    table.serve(0.0, 60.0)
    assert table.burst == pytest.approx(30_000)  # capped at 300 s x 100
    table.resize(10)
    assert table.burst == pytest.approx(3_000)


def test_no_burst_throttles_at_once() -> None:
    s = Dimension(10, burst_seconds=0).serve(12.0, 60.0)
    assert s.throttled_units == pytest.approx(120.0)
    assert s.consumed == pytest.approx(10.0)


def test_prices() -> None:
    assert unit_hour_price("Read") == 0.00013
    assert unit_hour_price("Write") == 0.00065
    assert on_demand_price("Read", 2e6) == pytest.approx(0.25)
    assert on_demand_price("Write", 2e6) == pytest.approx(1.25)


# --- Application Auto Scaling ----------------------------------------------------


def test_aas_scales_out_after_two_datapoints_above_the_target() -> None:
    aas = AasTableController(70, 5, 4000)
    assert aas.observe(0, 80.0, 100) == 100  # one datapoint above 70: no alarm yet
    assert aas.observe(60, 90.0, 100) == 129  # two: ceil(90 / 0.7)


def test_aas_scales_in_after_fifteen_datapoints_20_points_below() -> None:
    aas = AasTableController(70, 5, 4000)
    for k in range(14):
        assert aas.observe(60 * k, 40.0, 100) == 100
    assert aas.observe(60 * 14, 40.0, 100) == 58  # ceil(40 / 0.7)
    aas = AasTableController(70, 5, 4000)
    for k in range(30):  # 51 of 100: above the low alarm's 50, so never scales in
        assert aas.observe(60 * k, 51.0, 100) == 100


# --- runs of a table -------------------------------------------------------------


def step_down(minutes_high: int, minutes_low: int, high: float, low: float) -> list[float]:
    return [high] * minutes_high + [low] * minutes_low


def test_aas_spends_a_decrease_per_dimension_the_default_one_per_tick() -> None:
    tiers = [tier("r", "Read"), tier("w", "Write", per_unit=600.0)]
    demand = step_down(60, 60, 60_000.0, 6_000.0)
    cfg = TableConfig(start=datetime(2026, 11, 27, 1, tzinfo=UTC))
    aas = run_table(tiers, demand, "target-tracking", cfg)
    default = run_table(tiers, demand, "default", cfg)
    assert [t.lowerings for t in aas.tiers] == [1, 1]
    assert aas.decreases == 2  # two UpdateTable calls
    assert [t.lowerings for t in default.tiers] == [1, 1]
    assert default.decreases == 1  # lowered together: one UpdateTable, one decrease
    # both came down to the oracle's need (ceil(100 / 0.7), ceil(10 / 0.7))
    assert [t.capacity_unit_hours > 0 for t in default.tiers] == [True, True]
    assert default.trough_max_ratio == 0.0  # no full UTC day in two hours


def test_a_step_up_throttles_aas_longer_than_the_default_policy() -> None:
    tiers = [tier("r", "Read")]
    demand = step_down(30, 0, 600.0, 0) + [60_000.0] * 30  # 10 -> 1,000 RCU/s
    cfg = TableConfig()
    aas = run_table(tiers, demand, "target-tracking", cfg)
    default = run_table(tiers, demand, "default", cfg)
    oracle = run_table(tiers, demand, "oracle", cfg)
    assert oracle.throttled_minutes == 0
    assert 0 < default.throttled_minutes <= aas.throttled_minutes


@settings(max_examples=8, deadline=None)
@given(
    st.lists(st.floats(0, 120_000, allow_nan=False), min_size=26, max_size=26),
    st.integers(1, 60),
)
def test_decreases_are_counted_per_update_table_and_never_exceed_27_a_day(
    levels: list[float], repeat: int
) -> None:
    """Demand that moves every ``repeat`` minutes, over 26 hours (across a UTC midnight):
    AAS lowers each dimension with its own UpdateTable, the default policy lowers both
    in one; neither gets more than the table's 27 in a UTC day."""
    demand = [levels[(m // repeat) % len(levels)] for m in range(26 * 60)]
    tiers = [tier("r", "Read"), tier("w", "Write", per_unit=600.0)]
    for policy in ("default", "target-tracking"):
        r = run_table(tiers, demand, policy, TableConfig())
        lowered = [t.lowerings for t in r.tiers]
        if policy == "target-tracking":
            assert r.decreases == sum(lowered)
        else:
            assert max(lowered) <= r.decreases <= sum(lowered)
        assert r.max_decreases_per_day <= MAX_DECREASES_PER_DAY
        assert r.decreases == sum(r.decreases_per_day)


def test_trough_ratio_per_full_utc_day() -> None:
    # two full UTC days: 23 busy hours, a quiet hour 03:00-04:00
    day = [60_000.0] * 180 + [600.0] * 60 + [60_000.0] * 1200
    tiers = [tier("r", "Read")]
    oracle = run_table(
        tiers, day * 2, "oracle", TableConfig(start=datetime(2026, 11, 27, tzinfo=UTC))
    )
    assert len(oracle.tiers[0].trough_ratios) == 2
    assert oracle.trough_max_ratio <= 1.0
    peak = run_table(
        tiers, day * 2, "static-peak", TableConfig(start=datetime(2026, 11, 27, tzinfo=UTC))
    )
    # the peak's 1,429 units over the trough's ceil(10 / 0.7) = 15
    assert peak.tiers[0].trough_ratios[0] == pytest.approx(1429 / 15)


def test_a_gap_in_the_log_is_no_trough() -> None:
    """Ten minutes or more without a single request is the log's outage: the day is judged
    on its least-demand hour free of gaps; a day with no such hour is not judged."""
    start = datetime(2026, 11, 27, tzinfo=UTC)
    gap_day = [60_000.0] * 600 + [0.0] * 30 + [60_000.0] * 300 + [600.0] * 60 + [60_000.0] * 450
    dark_day = [0.0] * 1440
    days = troughs([d / 60 for d in gap_day + dark_day], start.timestamp(), 60.0)
    assert len(days) == 1  # the dark day has no trough
    day, first, last = days[0]
    assert (first, last) == (930, 989)  # the quiet hour, not the 30 minutes of nothing
    assert day == utc_day(start.timestamp())
    r = run_table([tier("r", "Read")], gap_day + dark_day, "oracle", TableConfig(start=start))
    assert r.tiers[0].trough_days == (day,)
    assert r.to_dict()["tiers"][0]["trough_oracle_ratios"] == {"2026-11-27": 1.0}


def test_on_demand_bills_every_request_unit() -> None:
    tiers = [tier("r", "Read"), tier("w", "Write", per_unit=600.0)]
    r = run_table(tiers, [6_000.0] * 60, "oracle", TableConfig())
    assert r.tiers[0].request_units == pytest.approx(6_000 * 60)  # 100 RCU/s for an hour
    assert r.tiers[1].request_units == pytest.approx(600 * 60)
    assert r.on_demand_cost == pytest.approx(0.36 * 0.125 + 0.036 * 0.625)


def test_a_policy_that_does_not_apply_to_a_table_is_refused() -> None:
    with pytest.raises(ValueError, match="does not apply to a table"):
        run_table([tier("r", "Read")], [1.0], "hpa", TableConfig())
