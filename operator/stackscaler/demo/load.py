"""The load model: what the stand-in stack feels under the story's demand. Pure.

Demand is requests per story minute. Every tier's load follows from it and
from the capacity the stand-in reports at that moment:

* **web**: one instance serves ``web_requests_per_instance`` requests per
  story minute at 100% CPU (2,400, so the tier's two targets, 50% CPU and
  1,200 requests per minute per instance, agree); CPU = demand / (InService
  instances x that), capped at 100%. The requests-per-minute metric is the
  demand itself.
* **workers**: one job (one SQS message) arrives per ``requests_per_job``
  requests; a worker (an InService instance of the workers' group) finishes
  one job every ``seconds_per_job`` wall seconds (the WorkerPool's
  ``secondsPerMessage``, so its latency recipe holds in wall time). The load
  generator sends the arrivals and deletes what the workers finish.
* **read replicas**: one read per request, spread over the source and its
  replicas; one DB instance serves ``reads_per_db_instance`` reads per story
  minute at 100% CPU; the replicas' CPU = reads / ((1 + replicas) x that).
* **cache**: ``cache_ops_per_request`` operations per request over the
  StatefulSet's replicas; engine CPU = operations / (replicas x
  ``cache_ops_per_node``).

* **sessions table** (DynamoDB, provisioned): one read of a session item
  (1 read unit) per request and one write (1 write unit) per
  ``requests_per_write`` requests, as units per wall second; what exceeds
  the provisioned units is throttled (no burst capacity is modelled), and
  consumed capacity never exceeds what is provisioned. Each tick publishes
  the units consumed and the requests throttled during it, so CloudWatch's
  Sum over a minute / 60 is the rate, as DynamoDB's own metrics.

A tier with no units has no CPU datapoint at all (as CloudWatch: no
instance, no metric): unknown for the operator, never 0.

:func:`calibrate` sizes the model so that, at the story's (10-minute
averaged) peak, the web tier needs 90% of its ``maxCapacity`` at its CPU
target, the workers 25% of theirs, and the replicas and the cache 60% of
theirs, and the table's read capacity 60% of its ``maxCapacity`` at its target
utilization. A larger ``--scale`` loads every tier more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stackscaler.demo.stack import MetricId, StackFacts, TableFacts, Tier
from stackscaler.demo.story import round_sig

WEB_REQUESTS_PER_INSTANCE = 2400.0
READS_PER_REQUEST = 1.0
CACHE_OPS_PER_REQUEST = 4.0
PEAK_SHARE_WEB = 0.9
PEAK_SHARE_WORKERS = 0.25
PEAK_SHARE_READERS = 0.6
PEAK_SHARE_CACHE = 0.6
PEAK_SHARE_TABLE = 0.6
REQUESTS_PER_WRITE = 10.0


@dataclass(frozen=True)
class LoadModel:
    scale: float
    """Trace requests x this = story demand."""
    minute_seconds: float
    """Wall seconds per story minute."""
    web_requests_per_instance: float
    requests_per_job: float
    seconds_per_job: float
    reads_per_request: float
    reads_per_db_instance: float
    cache_ops_per_request: float
    cache_ops_per_node: float
    table_reads_per_request: float = 0.0
    """Read units per wall second for each request per story minute of demand."""
    requests_per_write: float = REQUESTS_PER_WRITE


def calibrate(
    facts: StackFacts, raw_peak: float, *, minute_seconds: float, scale: float | None = None
) -> LoadModel:
    """Size the load model for this stack and this story (see the module docstring)."""
    if raw_peak <= 0:
        raise ValueError("the story's peak must be > 0")
    per_instance_at_target = WEB_REQUESTS_PER_INSTANCE * facts.web.target_value / 100.0
    reference = PEAK_SHARE_WEB * facts.web.max_capacity * per_instance_at_target
    if scale is None:
        scale = round_sig(reference / raw_peak)
    jobs_per_wall_second = PEAK_SHARE_WORKERS * facts.workers.max_capacity / facts.seconds_per_job
    db_instances = 1 + max(1, round(PEAK_SHARE_READERS * facts.readers.max_capacity))
    cache_nodes = max(1, round(PEAK_SHARE_CACHE * facts.cache.max_capacity))
    return LoadModel(
        scale=scale,
        minute_seconds=minute_seconds,
        web_requests_per_instance=WEB_REQUESTS_PER_INSTANCE,
        requests_per_job=round_sig(reference / (jobs_per_wall_second * minute_seconds)),
        seconds_per_job=facts.seconds_per_job,
        reads_per_request=READS_PER_REQUEST,
        reads_per_db_instance=round_sig(
            reference * READS_PER_REQUEST / (db_instances * facts.readers.target_value / 100.0)
        ),
        cache_ops_per_request=CACHE_OPS_PER_REQUEST,
        cache_ops_per_node=round_sig(
            reference * CACHE_OPS_PER_REQUEST / (cache_nodes * facts.cache.target_value / 100.0)
        ),
        table_reads_per_request=_table_reads(facts, reference),
    )


def _table_reads(facts: StackFacts, reference: float) -> float:
    reads = [t for t in facts.tables if t.dimension == "Read"]
    if not reads:
        return 0.0
    t = reads[0]
    return PEAK_SHARE_TABLE * t.max_capacity * t.target_utilization / 100.0 / reference


@dataclass(frozen=True)
class TableLoad:
    """One TableCapacity's dimension at one moment, in units per wall second."""

    table: TableFacts
    demand: float
    """Units the requests ask for."""
    provisioned: int
    consumed: float
    throttled: float

    @property
    def utilization(self) -> float | None:
        """Percent of the provisioned units consumed (None with nothing provisioned)."""
        return utilization(self.consumed, self.provisioned, 1.0)


def table_loads(
    model: LoadModel, demand: float, tables: tuple[TableFacts, ...], units: dict[str, int]
) -> tuple[TableLoad, ...]:
    """Each table dimension's demand, consumption and throttling at ``demand``."""
    reads = demand * model.table_reads_per_request
    out = []
    for t in tables:
        want = reads if t.dimension == "Read" else reads / model.requests_per_write
        have = units.get(t.name, 0)
        consumed = min(want, float(have))
        out.append(TableLoad(t, want, have, consumed, want - consumed))
    return tuple(out)


def table_datapoints(loads: tuple[TableLoad, ...], dt: float) -> tuple[Datum, ...]:
    """What DynamoDB would publish for ``dt`` wall seconds of ``loads``: the units consumed
    (Sum over a minute / 60 = the rate) and, only when there were any, the throttled
    requests (DynamoDB publishes no zero throttle datapoints)."""
    out = []
    for x in loads:
        out.append(
            Datum(
                x.table.metric(f"Consumed{x.table.dimension}CapacityUnits"),
                x.consumed * dt,
                "Count",
            )
        )
        if x.throttled > 0:
            out.append(
                Datum(
                    x.table.metric(f"{x.table.dimension}ThrottleEvents"), x.throttled * dt, "Count"
                )
            )
    return tuple(out)


@dataclass(frozen=True)
class Capacities:
    """Units serving now, as the stand-in reports them."""

    web: int
    """InService instances of the web group."""
    workers: int
    """InService instances of the workers' group."""
    replicas: int
    """Available read replicas of the source."""
    cache: int
    """Replicas of the cache StatefulSet."""


@dataclass(frozen=True)
class Load:
    """One moment of load; rates are per story minute, CPU in percent (None: no units)."""

    demand: float
    web_cpu: float | None
    jobs: float
    reads: float
    replica_cpu: float | None
    cache_ops: float
    cache_cpu: float | None


def utilization(work: float, units: int, per_unit: float) -> float | None:
    """Percent of ``units`` x ``per_unit`` that ``work`` uses, capped at 100; None with no units."""
    if units <= 0:
        return None
    return min(100.0, 100.0 * work / (units * per_unit))


def load_at(model: LoadModel, demand: float, caps: Capacities) -> Load:
    reads = demand * model.reads_per_request
    ops = demand * model.cache_ops_per_request
    return Load(
        demand=demand,
        web_cpu=utilization(demand, caps.web, model.web_requests_per_instance),
        jobs=demand / model.requests_per_job,
        reads=reads,
        # the replicas' share: the source serves its part of the reads too
        replica_cpu=(
            utilization(reads, 1 + caps.replicas, model.reads_per_db_instance)
            if caps.replicas > 0
            else None
        ),
        cache_ops=ops,
        cache_cpu=utilization(ops, caps.cache, model.cache_ops_per_node),
    )


@dataclass(frozen=True)
class Needs:
    """Units each tier would need at 100% to serve one moment's load (the pictures' demand)."""

    web: float
    """Web instances: requests / what one serves at 100% CPU."""
    workers: float
    """Workers: job arrivals per wall second x seconds per job."""
    replicas: float
    """Read replicas: reads / what one DB instance serves, less the source (>= 0)."""
    cache: float
    """Cache nodes: operations / what one node serves at 100%."""


def needs(model: LoadModel, load: Load) -> Needs:
    return Needs(
        web=load.demand / model.web_requests_per_instance,
        workers=load.jobs / model.minute_seconds * model.seconds_per_job,
        replicas=max(0.0, load.reads / model.reads_per_db_instance - 1.0),
        cache=load.cache_ops / model.cache_ops_per_node,
    )


@dataclass(frozen=True)
class Datum:
    metric: MetricId
    value: float
    unit: str


def datapoints(facts: StackFacts, load: Load) -> tuple[Datum, ...]:
    """What the load generator publishes to CloudWatch for ``load`` (nothing for no units)."""
    out = []
    if load.web_cpu is not None:
        out.append(Datum(facts.web_cpu_metric, load.web_cpu, "Percent"))
    if facts.web_requests_metric is not None:
        out.append(Datum(facts.web_requests_metric, load.demand, "Count"))
    if load.replica_cpu is not None:
        out.append(Datum(facts.replica_cpu_metric, load.replica_cpu, "Percent"))
    if load.cache_cpu is not None:
        out.append(Datum(facts.cache_cpu_metric, load.cache_cpu, "Percent"))
    return tuple(out)


@dataclass(frozen=True)
class QueueState:
    arrivals_carry: float = 0.0
    """Jobs arrived but not sent yet (fractions, and what did not fit a tick)."""
    work_carry: float = 0.0
    """Fractions of a job the workers have done."""


@dataclass(frozen=True)
class QueueStep:
    send: int
    """Messages to send now."""
    consume: int
    """Messages the workers finish now (to delete)."""
    state: QueueState


def queue_step(
    model: LoadModel,
    *,
    jobs_per_minute: float,
    workers: int,
    backlog: int,
    dt: float,
    state: QueueState,
    max_send: int = 200,
    max_consume: int = 200,
) -> QueueStep:
    """Jobs arriving and finished during ``dt`` wall seconds, with ``backlog`` waiting.

    Idle workers bank no time: when the queue runs dry, their spare capacity
    is lost. What exceeds ``max_send`` or ``max_consume`` (the demo's budget
    of SQS calls per tick) carries over to the next tick.
    """
    dt = max(0.0, dt)
    arrivals = jobs_per_minute / model.minute_seconds * dt + state.arrivals_carry
    send = min(math.floor(arrivals), max_send)
    capacity = max(0, workers) * dt / model.seconds_per_job + state.work_carry
    whole = math.floor(capacity)
    available = max(0, backlog) + send
    consume = min(whole, available, max_consume)
    if consume == whole:
        work_carry = capacity - whole
    elif consume == available:
        work_carry = 0.0  # the queue ran dry
    else:
        work_carry = capacity - consume  # the demo's call budget, not the workers, limited
    return QueueStep(send, consume, QueueState(arrivals - send, work_carry))


def over_target(tier: Tier, value: float | None) -> bool:
    """Whether ``value`` of the tier's metric is above its target beyond the tolerance."""
    return value is not None and value > tier.target_value * (1.0 + tier.tolerance)


def backlog_per_worker(backlog: int, workers: int) -> float:
    """Messages per worker; infinite when messages wait and no worker runs."""
    if workers > 0:
        return backlog / workers
    return math.inf if backlog > 0 else 0.0


@dataclass(frozen=True)
class TierTally:
    """What the summary reports of one tier, accumulated tick by tick."""

    seconds: float = 0.0
    seconds_over: float = 0.0
    min_capacity: int | None = None
    max_capacity: int | None = None

    def add(self, *, capacity: int, over: bool, dt: float) -> TierTally:
        return TierTally(
            seconds=self.seconds + dt,
            seconds_over=self.seconds_over + (dt if over else 0.0),
            min_capacity=capacity
            if self.min_capacity is None
            else min(self.min_capacity, capacity),
            max_capacity=capacity
            if self.max_capacity is None
            else max(self.max_capacity, capacity),
        )

    @property
    def share_over(self) -> float:
        return self.seconds_over / self.seconds if self.seconds > 0 else 0.0
