"""Typed, frozen spec objects, parsed once from a raw resource.

``parse_resource(doc)`` validates the document against the CRD schema (the
same defaults and rules as the API server, see :mod:`.validation`), then
builds the typed objects and runs the checks the API server cannot do
(cron syntax, IANA time zones, overlapping step bands). Every problem is
collected and raised together as :class:`~stackscaler.errors.InvalidSpec`,
each naming its field path and the fix. Downstream code never indexes raw
dicts.

Pure: no I/O (time zones come from the tz database, loaded on first use).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stackscaler.errors import FieldError, InvalidSpec
from stackscaler.model.crds import BACKLOG_METRIC, WARMUP_SECONDS_BY_TARGET
from stackscaler.model.cron import CronExpression, CronSyntaxError
from stackscaler.model.predictive import PredictiveSpec, parse_predictive, predictive_errors
from stackscaler.model.table import (
    CONSUMED_METRIC,
    DYNAMODB_NAMESPACE,
    TABLE_METRIC_PERIOD_SECONDS,
    TABLE_METRIC_STALE_SECONDS,
    THROTTLES_METRIC,
    TableDimension,
)
from stackscaler.model.validation import validate_document


class Mode(enum.StrEnum):
    ACTIVE = "Active"
    DRY_RUN = "DryRun"


class TargetType(enum.StrEnum):
    VALUE = "Value"
    """The metric is per capacity unit (average CPU %): ratio form."""
    AVERAGE_VALUE = "AverageValue"
    """The metric is a total (backlog, request rate): divided by the target per unit."""


class AdjustmentType(enum.StrEnum):
    CHANGE = "ChangeInCapacity"
    PERCENT = "PercentChangeInCapacity"
    EXACT = "ExactCapacity"


class UnavailableAction(enum.StrEnum):
    HOLD = "Hold"
    FALLBACK = "Fallback"


class Select(enum.StrEnum):
    MAX = "Max"
    MIN = "Min"


# --- metric sources -------------------------------------------------------


@dataclass(frozen=True)
class CloudWatchQuery:
    id: str
    namespace: str
    metric_name: str
    dimensions: tuple[tuple[str, str], ...]
    statistic: str


@dataclass(frozen=True)
class CloudWatchSource:
    namespace: str | None
    metric_name: str | None
    dimensions: tuple[tuple[str, str], ...]
    statistic: str
    unit: str | None
    expression: str | None
    queries: tuple[CloudWatchQuery, ...]
    period_seconds: int
    region: str | None
    role_arn: str | None
    per_second: bool = False
    """The value is the period's statistic divided by the period's seconds (a Sum read as
    a rate). Not in the CRD: set by implicit metrics (a table's consumed capacity)."""
    absent_is_zero: bool = False
    """No datapoint in the complete periods reads as 0, not unknown: for metrics AWS
    publishes only when non-zero (DynamoDB's throttle events). Not in the CRD."""


@dataclass(frozen=True)
class PrometheusSource:
    server_address: str
    query: str
    timeout_seconds: int


@dataclass(frozen=True)
class SqsSource:
    url: str | None
    name: str | None
    region: str | None
    role_arn: str | None
    include_in_flight: bool
    include_delayed: bool


class TierValue(enum.StrEnum):
    """What a tier source reads of the other resource (its status, as last written)."""

    METRIC = "Metric"
    """One of its metrics as it last observed it (``status.lastDecision.metrics``)."""
    DEMAND = "Demand"
    """The capacity its metrics asked for, before stabilization, cooldowns, rate limits
    and bounds (``status.lastDecision.recommendation``)."""
    DESIRED_CAPACITY = "DesiredCapacity"
    """The capacity it decided (``status.desiredCapacity``)."""
    READY_CAPACITY = "ReadyCapacity"
    """Its units that serve: ``status.currentCapacity - status.startingCapacity``."""


@dataclass(frozen=True)
class TierSource:
    """``tier``: a value of another stackscaler resource in the same namespace.

    There is no namespace: the operator reads the resource's own namespace only.
    """

    kind: str
    """WebTier, WorkerPool, ReadReplicaPool or CachePool."""
    name: str
    value: TierValue
    metric: str | None = None
    """With ``value`` Metric: the name of one of its metrics (None otherwise)."""

    def __str__(self) -> str:
        what = f"metric {self.metric}" if self.value is TierValue.METRIC else str(self.value)
        return f"{self.kind} {self.name} {what}"


MetricSource = CloudWatchSource | PrometheusSource | SqsSource | TierSource

PERCENT_CEILING = 100.0
PERCENT_METRICS = frozenset(
    {"CPUUtilization", "EngineCPUUtilization", "MemoryUtilization", "DatabaseMemoryUsagePercentage"}
)
"""CloudWatch metrics (AWS/EC2, AWS/RDS, AWS/ElastiCache, AWS/ECS) that are a percent of a
resource each unit has, so never above 100."""


def known_ceiling(source: MetricSource | None) -> float | None:
    """The most a metric can read when its source says so: 100 for a CloudWatch metric in
    percent (its unit, or one of :data:`PERCENT_METRICS` of an ``AWS/`` namespace); else None.
    A metric math expression or a Prometheus query says nothing: ``target.ceiling`` does."""
    if not isinstance(source, CloudWatchSource) or source.expression is not None:
        return None
    if source.unit == "Percent":
        return PERCENT_CEILING
    aws = (source.namespace or "").startswith("AWS/")
    return PERCENT_CEILING if aws and source.metric_name in PERCENT_METRICS else None


# --- policy pieces ----------------------------------------------------------


@dataclass(frozen=True)
class MetricTarget:
    type: TargetType
    value: float
    ceiling: float | None = None
    """The most a ``Value`` metric can read (100 for a utilization in percent); None: no
    known ceiling. The policy keeps the band's scale-out edge below it."""


@dataclass(frozen=True)
class Step:
    lower: float | None
    upper: float | None
    adjustment: int

    def contains(self, value: float) -> bool:
        return (self.lower is None or value >= self.lower) and (
            self.upper is None or value < self.upper
        )


@dataclass(frozen=True)
class StepScaling:
    adjustment_type: AdjustmentType
    steps: tuple[Step, ...]
    min_adjustment_magnitude: int | None = None


@dataclass(frozen=True)
class MetricSpec:
    name: str
    source: MetricSource | None
    target: MetricTarget | None = None
    step_scaling: StepScaling | None = None
    activation_threshold: float = 0.0
    stale_after_seconds: int = 300
    throttle: bool = False
    """A count of requests the target refused for lack of capacity (a table's
    ``throttles``): the policy scales out at once while it is above zero."""


@dataclass(frozen=True)
class MaxStep:
    units: int | None
    percent: int | None
    period_seconds: int = 60
    select: Select = Select.MAX


@dataclass(frozen=True)
class DirectionBehavior:
    cooldown_seconds: int
    stabilization_window_seconds: int
    max_step: MaxStep | None
    tolerance: float | None = None
    """``behavior.<direction>.tolerance``: this side of the band; None: ``spec.tolerance``."""


@dataclass(frozen=True)
class Behavior:
    scale_out: DirectionBehavior
    scale_in: DirectionBehavior


@dataclass(frozen=True)
class Tolerance:
    """The band around a target inside which nothing changes, by side: a metric may read
    up to ``1 + above`` times its target before a scale-out, and down to ``1 - below`` times
    it before a scale-in (the HPA's ``behavior.scaleUp/scaleDown.tolerance``)."""

    above: float
    below: float

    @classmethod
    def both(cls, tolerance: float) -> Tolerance:
        return cls(tolerance, tolerance)

    def holds(self, ratio: float) -> bool:
        """``ratio`` (value / target) is inside the band (the HPA's float comparison,
        ``|1 - ratio| <= tolerance``, on the side ``ratio`` is on)."""
        return abs(1.0 - ratio) <= self.side(ratio)

    def side(self, ratio: float) -> float:
        """The tolerance of the side of the band that ``ratio`` is on."""
        return self.above if ratio >= 1.0 else self.below


DEFAULT_TOLERANCE = Tolerance(above=0.2, below=0.1)
"""Without ``spec.tolerance`` or a direction's own: a 50% target may run to 60% before a
scale-out and falls below 45% for a scale-in (docs/policy.md, rule 2)."""
TABLE_DEFAULT_TOLERANCE = Tolerance.both(0.2)
"""A TableCapacity's: each decrease spends one of the table's daily decreases."""


@dataclass(frozen=True)
class Schedule:
    name: str
    cron: CronExpression
    time_zone: ZoneInfo
    duration_seconds: int
    min_capacity: int | None
    max_capacity: int | None


@dataclass(frozen=True)
class OnMetricsUnavailable:
    failure_threshold: int = 3
    action: UnavailableAction = UnavailableAction.HOLD
    fallback_capacity: int | None = None


@dataclass(frozen=True)
class ScalingSpec:
    """The scaling block every kind shares: what the policy core decides from."""

    min_capacity: int
    max_capacity: int
    metrics: tuple[MetricSpec, ...]
    behavior: Behavior
    tolerance: float = 0.1
    """The band on both sides where a direction sets none (:attr:`band`); a parsed
    resource's directions always carry theirs (``spec.tolerance`` or the kind's default)."""
    schedules: tuple[Schedule, ...] = ()
    on_metrics_unavailable: OnMetricsUnavailable = OnMetricsUnavailable()
    mode: Mode = Mode.ACTIVE
    poll_interval_seconds: int = 30
    warmup_seconds: int | None = None
    """``spec.warmupSeconds``: how long a new unit takes to contribute to its metrics.
    None when the resource sets none: the target's default applies (:func:`warmup`)."""
    predictive: PredictiveSpec | None = None
    """``spec.predictive``: the forecast of one of the metrics, None without one."""

    @property
    def band(self) -> Tolerance:
        """The tolerance band: each direction's own, else ``tolerance`` (``spec.tolerance``)."""
        out, in_ = self.behavior.scale_out.tolerance, self.behavior.scale_in.tolerance
        return Tolerance(
            self.tolerance if out is None else out, self.tolerance if in_ is None else in_
        )

    def metric(self, name: str) -> MetricSpec:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)


# --- targets ----------------------------------------------------------------


@dataclass(frozen=True)
class AutoScalingGroupTarget:
    name: str
    region: str | None
    role_arn: str | None
    sync_min_max: bool
    kind: str = "AutoScalingGroup"


@dataclass(frozen=True)
class WorkloadTarget:
    kind: str  # Deployment | StatefulSet
    name: str


@dataclass(frozen=True)
class ReplicaTemplate:
    instance_class: str | None
    identifier_prefix: str | None
    availability_zones: tuple[str, ...]
    parameter_group_name: str | None
    promotion_tier: int | None
    tags: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class DBInstanceTarget:
    name: str
    engine: str
    region: str | None
    role_arn: str | None
    template: ReplicaTemplate
    kind: str = "DBInstance"


@dataclass(frozen=True)
class DBClusterTarget:
    name: str
    region: str | None
    role_arn: str | None
    template: ReplicaTemplate
    kind: str = "DBCluster"


@dataclass(frozen=True)
class ReplicationGroupTarget:
    name: str
    node_group_id: str | None
    region: str | None
    role_arn: str | None
    kind: str = "ReplicationGroup"


@dataclass(frozen=True)
class TableTarget:
    """One dimension of a DynamoDB table's provisioned capacity, or of one of its GSIs."""

    name: str
    index: str | None
    dimension: TableDimension
    region: str | None
    role_arn: str | None
    kind: str = "Table"

    def __str__(self) -> str:
        where = f"table {self.name}" + (f" index {self.index}" if self.index else "")
        return f"{where} {self.dimension.value.lower()} capacity"


Target = (
    AutoScalingGroupTarget
    | WorkloadTarget
    | DBInstanceTarget
    | DBClusterTarget
    | ReplicationGroupTarget
    | TableTarget
)


@dataclass(frozen=True)
class QueueSpec:
    source: SqsSource
    backlog_per_worker: float
    latency_seconds: float | None
    seconds_per_message: float | None


@dataclass(frozen=True)
class Resource:
    """One parsed stackscaler resource."""

    kind: str
    name: str
    namespace: str | None
    uid: str | None
    generation: int | None
    target: Target
    scaling: ScalingSpec
    queue: QueueSpec | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace or 'default'}/{self.name}"


@dataclass(frozen=True)
class Warmup:
    """The warm-up a resource's units get, and where it comes from (for reasons)."""

    seconds: int
    source: str
    """spec.warmupSeconds, the target's own setting, or the target kind's default."""

    def __str__(self) -> str:
        return f"warm-up {self.seconds} s ({self.source})"


CLOUDWATCH_DELIVERY_SECONDS = 60
"""How late CloudWatch's newest complete period arrives, on top of the period itself."""


def metric_lag(resource: Resource) -> int:
    """Seconds from a unit serving to the first datapoint of its per-unit metrics that
    includes it fully: the longest CloudWatch period of a per-unit metric (a Value
    target or step scaling) plus CloudWatch's delivery delay. 0 without such a metric
    (totals and backlogs measure demand, whoever serves it) and for Prometheus, whose
    query decides its own window (count it in warmupSeconds).
    """
    lags = [
        m.source.period_seconds + CLOUDWATCH_DELIVERY_SECONDS
        for m in resource.scaling.metrics
        if isinstance(m.source, CloudWatchSource)
        and not m.throttle  # refused requests: demand, whoever serves it
        and (
            m.step_scaling is not None
            or (m.target is not None and m.target.type is TargetType.VALUE)
        )
    ]
    return max(lags, default=0)


def warmup(resource: Resource, *, target_setting: tuple[int, str] | None = None) -> Warmup:
    """How long a new unit of ``resource`` counts as starting: until it contributes to
    its metrics.

    ``spec.warmupSeconds`` when set; else ``target_setting`` (the target's own value
    and its name, as an Auto Scaling group's DefaultInstanceWarmup, which AWS defines
    the same way); else the default of the target kind
    (:data:`WARMUP_SECONDS_BY_TARGET`: the time until a unit serves) plus
    :func:`metric_lag`, the time until the first datapoint of its per-unit metrics
    includes it. Without the lag, a unit that just began to serve would count as
    ready while the newest datapoint still measured the load on fewer units, and
    the need would be multiplied by it again.
    """
    if resource.scaling.warmup_seconds is not None:
        return Warmup(resource.scaling.warmup_seconds, "spec.warmupSeconds")
    if target_setting is not None:
        return Warmup(*target_setting)
    kind = resource.target.kind
    serve, lag = WARMUP_SECONDS_BY_TARGET[kind], metric_lag(resource)
    if not lag:
        return Warmup(serve, f"the default for {kind} targets")
    return Warmup(
        serve + lag,
        f"the default for {kind} targets: {serve} s to serve + {lag} s until a datapoint "
        "includes it",
    )


def backlog_per_worker_for_latency(acceptable_seconds: float, seconds_per_message: float) -> float:
    """The AWS SQS recipe: the backlog one worker clears within the acceptable latency.

    10 s acceptable at 0.1 s per message -> 100 messages per worker.
    """
    if acceptable_seconds <= 0 or seconds_per_message <= 0:
        raise ValueError("acceptable_seconds and seconds_per_message must be > 0")
    return acceptable_seconds / seconds_per_message


# --- parsing ----------------------------------------------------------------


class _Builder:
    """Builds typed objects from a document that passed every check."""

    def cloudwatch(self, d: Mapping[str, Any]) -> CloudWatchSource:
        return CloudWatchSource(
            namespace=d.get("namespace"),
            metric_name=d.get("metricName"),
            dimensions=_dims(d),
            statistic=d["statistic"],
            unit=d.get("unit"),
            expression=d.get("expression"),
            queries=tuple(
                CloudWatchQuery(q["id"], q["namespace"], q["metricName"], _dims(q), q["statistic"])
                for q in d.get("queries", ())
            ),
            period_seconds=d["periodSeconds"],
            region=d.get("region"),
            role_arn=d.get("roleArn"),
        )

    def step_scaling(self, d: Mapping[str, Any]) -> StepScaling:
        steps = tuple(
            Step(s.get("lowerBound"), s.get("upperBound"), s["adjustment"]) for s in d["steps"]
        )
        return StepScaling(
            AdjustmentType(d["adjustmentType"]), steps, d.get("minAdjustmentMagnitude")
        )

    def metric(self, d: Mapping[str, Any]) -> MetricSpec:
        source: MetricSource | None = None
        if "cloudWatch" in d:
            source = self.cloudwatch(d["cloudWatch"])
        elif "prometheus" in d:
            p = d["prometheus"]
            source = PrometheusSource(p["serverAddress"], p["query"], p["timeoutSeconds"])
        elif "tier" in d:
            t = d["tier"]
            source = TierSource(t["kind"], t["name"], TierValue(t["value"]), t.get("metric"))
        target = None
        if "target" in d:
            t = d["target"]
            kind = TargetType(t["type"])
            ceiling = t.get("ceiling")
            if ceiling is None and kind is TargetType.VALUE:
                ceiling = known_ceiling(source)
            target = MetricTarget(
                kind, float(t["value"]), None if ceiling is None else float(ceiling)
            )
        steps = self.step_scaling(d["stepScaling"]) if "stepScaling" in d else None
        return MetricSpec(
            name=d["name"],
            source=source,
            target=target,
            step_scaling=steps,
            activation_threshold=float(d["activationThreshold"]),
            stale_after_seconds=d["staleAfterSeconds"],
        )

    def schedule(self, d: Mapping[str, Any]) -> Schedule:
        return Schedule(
            name=d["name"],
            cron=CronExpression.parse(d["cron"]),
            time_zone=_zone(d["timeZone"]),
            duration_seconds=d["durationSeconds"],
            min_capacity=d.get("minCapacity"),
            max_capacity=d.get("maxCapacity"),
        )

    def scaling(
        self, spec: Mapping[str, Any], extra: tuple[MetricSpec, ...], default: Tolerance
    ) -> ScalingSpec:
        """``default``: the kind's band where neither ``spec.tolerance`` nor a direction's
        own tolerance is set; ``spec.tolerance`` sets both sides."""
        metrics = extra + tuple(self.metric(m) for m in spec.get("metrics", ()))
        schedules = tuple(self.schedule(raw) for raw in spec.get("schedules", ()))
        b = spec["behavior"]
        omu = spec["onMetricsUnavailable"]
        both = spec.get("tolerance")
        band = default if both is None else Tolerance.both(float(both))
        return ScalingSpec(
            min_capacity=spec["minCapacity"],
            max_capacity=spec["maxCapacity"],
            metrics=metrics,
            behavior=Behavior(
                _direction(b["scaleOut"], band.above), _direction(b["scaleIn"], band.below)
            ),
            tolerance=band.above,
            schedules=schedules,
            on_metrics_unavailable=OnMetricsUnavailable(
                omu["failureThreshold"],
                UnavailableAction(omu["action"]),
                omu.get("fallbackCapacity"),
            ),
            mode=Mode(spec["mode"]),
            poll_interval_seconds=spec["pollIntervalSeconds"],
            warmup_seconds=spec.get("warmupSeconds"),
            predictive=parse_predictive(spec.get("predictive")),
        )


def _bound(v: float) -> str:
    return f"{v:g}".replace("inf", "+inf").replace("-+", "-")


def _path_order(e: FieldError) -> list[str | int]:
    """Sort errors in document order of their paths (numeric list indexes)."""
    return [int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", e.path) if p]


def _dims(d: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((x["name"], x["value"]) for x in d.get("dimensions", ()))


def _direction(d: Mapping[str, Any], tolerance: float) -> DirectionBehavior:
    """One direction; ``tolerance``: its side of the band unless it sets its own."""
    ms = d.get("maxStep")
    return DirectionBehavior(
        cooldown_seconds=d["cooldownSeconds"],
        stabilization_window_seconds=d["stabilizationWindowSeconds"],
        max_step=None
        if ms is None
        else MaxStep(ms.get("units"), ms.get("percent"), ms["periodSeconds"], Select(ms["select"])),
        tolerance=float(d.get("tolerance", tolerance)),
    )


def _zone(name: str) -> ZoneInfo:
    try:
        if name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as UTC, America/New_York or "
            "Europe/Berlin"
        ) from exc


def _template(d: Mapping[str, Any]) -> ReplicaTemplate:
    return ReplicaTemplate(
        instance_class=d.get("instanceClass"),
        identifier_prefix=d.get("identifierPrefix"),
        availability_zones=tuple(d.get("availabilityZones", ())),
        parameter_group_name=d.get("parameterGroupName"),
        promotion_tier=d.get("promotionTier"),
        tags=tuple((t["key"], t["value"]) for t in d.get("tags", ())),
    )


def _target(kind: str, t: Mapping[str, Any]) -> Target:
    tk = t["kind"]
    if tk == "AutoScalingGroup":
        return AutoScalingGroupTarget(
            t["name"], t.get("region"), t.get("roleArn"), bool(t.get("syncMinMax", False))
        )
    if tk in ("Deployment", "StatefulSet"):
        return WorkloadTarget(tk, t["name"])
    if tk == "DBInstance":
        return DBInstanceTarget(
            t["name"],
            t["engine"],
            t.get("region"),
            t.get("roleArn"),
            _template(t["replicaTemplate"]),
        )
    if tk == "DBCluster":
        return DBClusterTarget(
            t["name"], t.get("region"), t.get("roleArn"), _template(t["replicaTemplate"])
        )
    if tk == "ReplicationGroup":
        return ReplicationGroupTarget(
            t["name"], t.get("nodeGroupId"), t.get("region"), t.get("roleArn")
        )
    if tk == "Table":
        return TableTarget(
            t["name"],
            t.get("index"),
            TableDimension(t["dimension"]),
            t.get("region"),
            t.get("roleArn"),
        )
    raise AssertionError(f"{kind}: target kind {tk!r} passed schema validation")  # pragma: no cover


def _queue(q: Mapping[str, Any]) -> tuple[QueueSpec, MetricSpec]:
    source = SqsSource(
        url=q.get("url"),
        name=q.get("name"),
        region=q.get("region"),
        role_arn=q.get("roleArn"),
        include_in_flight=q["includeInFlight"],
        include_delayed=q["includeDelayed"],
    )
    latency = q.get("latency")
    if latency is not None:
        per_worker = backlog_per_worker_for_latency(
            latency["acceptableSeconds"], latency["secondsPerMessage"]
        )
    else:
        per_worker = float(q["backlogPerWorker"])
    spec = QueueSpec(
        source,
        per_worker,
        None if latency is None else float(latency["acceptableSeconds"]),
        None if latency is None else float(latency["secondsPerMessage"]),
    )
    metric = MetricSpec(
        name=BACKLOG_METRIC,
        source=source,
        target=MetricTarget(TargetType.AVERAGE_VALUE, per_worker),
        activation_threshold=float(q["activationBacklog"]),
        stale_after_seconds=q["staleAfterSeconds"],
    )
    return spec, metric


def table_metrics(target: TableTarget, target_utilization: float) -> tuple[MetricSpec, ...]:
    """A TableCapacity's implicit metrics: ``consumed`` (units per second, tracked at
    ``target_utilization`` % of each provisioned unit) and ``throttles`` (events per
    period; no datapoint is 0, as DynamoDB publishes it only when non-zero)."""
    dims: tuple[tuple[str, str], ...] = (("TableName", target.name),)
    if target.index is not None:
        dims += (("GlobalSecondaryIndexName", target.index),)

    def source(metric_name: str, *, per_second: bool, absent_is_zero: bool) -> CloudWatchSource:
        return CloudWatchSource(
            namespace=DYNAMODB_NAMESPACE,
            metric_name=metric_name,
            dimensions=dims,
            statistic="Sum",
            unit=None,
            expression=None,
            queries=(),
            period_seconds=TABLE_METRIC_PERIOD_SECONDS,
            region=target.region,
            role_arn=target.role_arn,
            per_second=per_second,
            absent_is_zero=absent_is_zero,
        )

    consumed = MetricSpec(
        name=CONSUMED_METRIC,
        source=source(target.dimension.consumed_metric, per_second=True, absent_is_zero=False),
        target=MetricTarget(TargetType.AVERAGE_VALUE, target_utilization / 100.0),
        stale_after_seconds=TABLE_METRIC_STALE_SECONDS,
    )
    # On its own (without the policy's throttle rule) the band asks for nothing while
    # nothing is throttled and holds the capacity while something is: never lower.
    throttles = MetricSpec(
        name=THROTTLES_METRIC,
        source=source(target.dimension.throttle_metric, per_second=False, absent_is_zero=True),
        step_scaling=StepScaling(AdjustmentType.EXACT, (Step(None, 1.0, 0),)),
        stale_after_seconds=TABLE_METRIC_STALE_SECONDS,
        throttle=True,
    )
    return consumed, throttles


def _list(node: Any, key: str) -> list[Any]:
    value = node.get(key) if isinstance(node, dict) else None
    return value if isinstance(value, list) else []


def _step_overlaps(steps: list[Any], path: str) -> list[FieldError]:
    bands: list[tuple[float, float, int]] = []
    for i, st in enumerate(steps):
        if not isinstance(st, dict):
            continue
        lo, hi = st.get("lowerBound", -math.inf), st.get("upperBound", math.inf)
        if isinstance(lo, int | float) and isinstance(hi, int | float) and lo < hi:
            bands.append((float(lo), float(hi), i))
    bands.sort()
    errors = []
    widest: tuple[float, float, int] | None = None  # the band reaching furthest so far
    for lo, hi, i in bands:
        if widest is not None and lo < widest[1]:
            errors.append(
                FieldError(
                    f"{path}[{i}]",
                    f"band [{_bound(lo)}, {_bound(hi)}) overlaps band {path}[{widest[2]}] "
                    f"[{_bound(widest[0])}, {_bound(widest[1])}); make the bands disjoint",
                )
            )
        if widest is None or hi > widest[1]:
            widest = (lo, hi, i)
    return errors


def semantic_errors(doc: Any) -> list[FieldError]:
    """Checks beyond the schema and CEL: cron syntax, IANA time zones, step overlaps.

    Robust to documents that failed schema validation, so every problem of a
    document is reported in one pass.
    """
    spec = doc.get("spec") if isinstance(doc, dict) else None
    errors: list[FieldError] = []
    for i, m in enumerate(_list(spec, "metrics")):
        step = m.get("stepScaling") if isinstance(m, dict) else None
        errors.extend(_step_overlaps(_list(step, "steps"), f"spec.metrics[{i}].stepScaling.steps"))
    for i, s in enumerate(_list(spec, "schedules")):
        if not isinstance(s, dict):
            continue
        cron, tz = s.get("cron"), s.get("timeZone", "UTC")
        if isinstance(cron, str):
            try:
                CronExpression.parse(cron)
            except CronSyntaxError as exc:
                errors.append(
                    FieldError(f"spec.schedules[{i}].cron", f"invalid cron expression: {exc}")
                )
        if isinstance(tz, str):
            try:
                _zone(tz)
            except ValueError as exc:
                errors.append(FieldError(f"spec.schedules[{i}].timeZone", str(exc)))
    if isinstance(spec, dict):
        errors.extend(predictive_errors(spec))
    return errors


def parse_resource(doc: Any, *, source: str = "") -> Resource:
    """Parse and validate one stackscaler resource; raise InvalidSpec with every problem."""
    defaulted, errors = validate_document(doc)
    if defaulted is not None:
        errors.extend(semantic_errors(defaulted))
    if errors or defaulted is None:
        raise InvalidSpec(sorted(errors, key=_path_order), source=source)
    b = _Builder()
    spec = defaulted["spec"]
    kind = defaulted["kind"]
    queue: QueueSpec | None = None
    extra: tuple[MetricSpec, ...] = ()
    if kind == "WorkerPool":
        queue, backlog = _queue(spec["queue"])
        extra = (backlog,)
    target = _target(kind, spec["target"])
    if isinstance(target, TableTarget):
        extra = table_metrics(target, float(spec["targetUtilization"]))
    default = TABLE_DEFAULT_TOLERANCE if isinstance(target, TableTarget) else DEFAULT_TOLERANCE
    scaling = b.scaling(spec, extra, default)
    meta = defaulted.get("metadata", {})
    return Resource(
        kind=kind,
        name=meta["name"],
        namespace=meta.get("namespace"),
        uid=meta.get("uid"),
        generation=meta.get("generation"),
        target=target,
        scaling=scaling,
        queue=queue,
    )
