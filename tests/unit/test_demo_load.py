"""The demo's load model: calibration, load per tier, the queue, over-target accounting."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from stackscaler.demo import load as lm
from stackscaler.demo.load import (
    Capacities,
    LoadModel,
    QueueState,
    TierTally,
    backlog_per_worker,
    calibrate,
    datapoints,
    load_at,
    over_target,
    queue_step,
    utilization,
)
from stackscaler.demo.stack import StackFacts, demo_stack
from tests.conftest import EXAMPLES, load_docs


@pytest.fixture(scope="module")
def facts() -> StackFacts:
    return demo_stack(load_docs(EXAMPLES / "stack.yaml"), minute_seconds=2.0).facts


@pytest.fixture(scope="module")
def model(facts: StackFacts) -> LoadModel:
    return calibrate(facts, 304.4, minute_seconds=2.0)


def test_calibration_sizes_every_tier_at_the_peak(facts: StackFacts, model: LoadModel) -> None:
    assert model.scale == 140.0  # 0.9 x 40 instances x 1,200 req/min / 304.4, two digits
    peak = 304.4 * model.scale
    # web: about 90% of maxCapacity at the 50% CPU target
    assert peak / (model.web_requests_per_instance * 0.5) == pytest.approx(35.5, abs=0.1)
    # workers: about a quarter of 50, each doing a job per second
    jobs_per_second = peak / model.requests_per_job / model.minute_seconds
    assert jobs_per_second / (1 / model.seconds_per_job) == pytest.approx(12.5, rel=0.03)
    # replicas: source + 3 replicas at the 60% target
    caps = Capacities(web=36, workers=12, replicas=3, cache=3)
    load = load_at(model, peak, caps)
    assert load.replica_cpu == pytest.approx(60, rel=0.03)
    assert load.cache_cpu == pytest.approx(60, rel=0.03)
    assert load.web_cpu == pytest.approx(49.3, abs=0.1)


def test_a_larger_scale_loads_every_tier_more(facts: StackFacts, model: LoadModel) -> None:
    doubled = calibrate(facts, 304.4, minute_seconds=2.0, scale=280.0)
    assert doubled.scale == 280.0
    # the tiers' sizes stay those of the default: twice the traffic needs twice the units
    assert replace(doubled, scale=model.scale) == model


@pytest.mark.parametrize(
    ("work", "units", "per_unit", "expected"),
    [(1200, 1, 2400, 50.0), (9000, 2, 2400, 100.0), (0, 3, 10, 0.0), (5, 0, 10, None)],
)
def test_utilization(work: float, units: int, per_unit: float, expected: float | None) -> None:
    assert utilization(work, units, per_unit) == expected


def test_load_at(model: LoadModel) -> None:
    load = load_at(model, 6000.0, Capacities(web=5, workers=1, replicas=1, cache=1))
    assert load.web_cpu == pytest.approx(50.0)  # 6,000 / (5 x 2,400)
    assert load.jobs == pytest.approx(6000 / model.requests_per_job)
    assert load.replica_cpu == pytest.approx(100 * 6000 / (2 * model.reads_per_db_instance))
    assert load.cache_cpu == pytest.approx(100 * 24000 / model.cache_ops_per_node)


def test_no_units_no_datapoint(facts: StackFacts, model: LoadModel) -> None:
    load = load_at(model, 6000.0, Capacities(web=0, workers=0, replicas=0, cache=0))
    assert load.web_cpu is None and load.replica_cpu is None and load.cache_cpu is None
    published = datapoints(facts, load)
    # only the request rate: no instance, no CPU metric (unknown, never 0)
    assert [(d.metric.name, d.value) for d in published] == [("RequestsPerMinute", 6000.0)]
    full = datapoints(facts, load_at(model, 6000.0, Capacities(5, 1, 1, 1)))
    assert [d.metric.name for d in full] == [
        "CPUUtilization",
        "RequestsPerMinute",
        "ReplicaCPUUtilization",
        "EngineCPUUtilization",
    ]
    assert full[0].unit == "Percent"


def test_queue_arrivals_keep_their_fractions(model: LoadModel) -> None:
    # 3 jobs per story minute of 2 s: 1.5 per second
    first = queue_step(model, jobs_per_minute=3, workers=0, backlog=0, dt=1.0, state=QueueState())
    assert (first.send, first.consume) == (1, 0)
    second = queue_step(model, jobs_per_minute=3, workers=0, backlog=1, dt=1.0, state=first.state)
    assert second.send == 2
    assert second.state.arrivals_carry == pytest.approx(0.0)


def test_workers_finish_one_job_per_second_each(model: LoadModel) -> None:
    step = queue_step(model, jobs_per_minute=0, workers=3, backlog=50, dt=2.0, state=QueueState())
    assert step.consume == 6
    half = queue_step(model, jobs_per_minute=0, workers=1, backlog=50, dt=0.5, state=QueueState())
    assert half.consume == 0
    again = queue_step(model, jobs_per_minute=0, workers=1, backlog=50, dt=0.5, state=half.state)
    assert again.consume == 1


def test_idle_workers_bank_no_time(model: LoadModel) -> None:
    dry = queue_step(model, jobs_per_minute=0, workers=5, backlog=1, dt=1.0, state=QueueState())
    assert dry.consume == 1
    assert dry.state.work_carry == 0.0
    # what arrives in the same tick can be worked on at once
    busy = queue_step(model, jobs_per_minute=6, workers=5, backlog=0, dt=1.0, state=QueueState())
    assert (busy.send, busy.consume) == (3, 3)


def test_the_call_budget_carries_over(model: LoadModel) -> None:
    step = queue_step(
        model,
        jobs_per_minute=1000,
        workers=100,
        backlog=500,
        dt=1.0,
        state=QueueState(),
        max_send=200,
        max_consume=50,
    )
    assert (step.send, step.consume) == (200, 50)
    assert step.state.arrivals_carry == pytest.approx(300.0)  # 500 arrived, 200 sent
    assert step.state.work_carry == pytest.approx(50.0)  # 100 could be done, 50 were


def test_over_target_beyond_the_tolerance(facts: StackFacts) -> None:
    web = facts.web  # cpu 50, tolerance 0.2 (the CRD default)
    assert not over_target(web, 60.0)
    assert over_target(web, 60.1)
    assert not over_target(web, None)


def test_backlog_per_worker() -> None:
    assert backlog_per_worker(30, 3) == 10.0
    assert backlog_per_worker(5, 0) == math.inf
    assert backlog_per_worker(0, 0) == 0.0


def test_tally_accumulates() -> None:
    t = TierTally()
    t = t.add(capacity=2, over=True, dt=1.0)
    t = t.add(capacity=7, over=False, dt=3.0)
    t = t.add(capacity=5, over=False, dt=0.0)
    assert (t.min_capacity, t.max_capacity) == (2, 7)
    assert (t.seconds, t.seconds_over) == (4.0, 1.0)
    assert t.share_over == 0.25
    assert TierTally().share_over == 0.0


def test_the_table_consumes_what_is_provisioned_and_the_rest_is_throttled() -> None:
    facts = demo_stack(load_docs(EXAMPLES / "stack.yaml"), minute_seconds=2.0).facts
    model = lm.calibrate(facts, 1000.0, minute_seconds=2.0)
    # at the story's peak the reads need 60% of maxCapacity at the 70% target
    assert model.table_reads_per_request * model.scale * 1000.0 == pytest.approx(
        0.6 * 4000 * 0.7, rel=0.01
    )
    demand = 100.0 / model.table_reads_per_request  # 100 read units per second
    read, write = lm.table_loads(
        model, demand, facts.tables, {"sessions-read": 80, "sessions-write": 50}
    )
    assert (read.demand, read.consumed, read.throttled) == pytest.approx((100, 80, 20))
    assert read.utilization == 100.0
    assert (write.demand, write.consumed, write.throttled) == pytest.approx((10, 10, 0))
    assert write.utilization == pytest.approx(20.0)
    data = lm.table_datapoints((read, write), 2.0)
    by_name = {d.metric.name: d.value for d in data}
    assert by_name == pytest.approx(
        {
            "ConsumedReadCapacityUnits": 160.0,
            "ReadThrottleEvents": 40.0,
            "ConsumedWriteCapacityUnits": 20.0,
        }
    )  # no zero throttle datapoint for the write side, as DynamoDB
