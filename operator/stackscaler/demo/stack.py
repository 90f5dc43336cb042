"""examples/stack.yaml with the demo's overrides, and the facts the demo needs from it. Pure.

The demo applies the example stack as written except where demo time or the
AWS stand-in (moto) require otherwise; every override is listed in
:attr:`DemoStack.notes` and printed when the demo starts:

* every tier: the operator's clock runs 6x faster than in production:
  ``pollIntervalSeconds`` 5 (the CRD's minimum) instead of the default 30,
  CloudWatch periods of 10 s instead of 60, and so cooldowns, stabilization
  windows and rate-limit periods x1/6, keeping their proportions to what the
  operator senses (a scale-out cooldown shorter than the metric's delay would
  count the same overload twice). The story's traffic runs faster still
  (30x with 1 story minute = 2 s), so relative to the traffic the operator
  reacts 5x more slowly than in production: a harder test, not an easier one;
* every CloudWatch metric: ``periodSeconds`` 10 (high-resolution datapoints,
  published with ``StorageResolution=1``) and ``staleAfterSeconds`` 30;
* web: the Prometheus ``requests-per-minute`` metric becomes the CloudWatch
  metric ``StackscalerDemo/RequestsPerMinute`` (no Prometheus runs here);
  the ``business-hours`` schedule is removed (it follows the real clock,
  not story time);
* read replicas: the ``SEARCH`` expression becomes
  ``StackscalerDemo/ReplicaCPUUtilization``, which the load generator
  publishes as the replicas' average (moto does not evaluate ``SEARCH``);
* cache: moto lacks ElastiCache ``IncreaseReplicaCount`` /
  ``DecreaseReplicaCount``, so the CachePool scales a StatefulSet of the same
  name in the local control plane, on ``StackscalerDemo/EngineCPUUtilization``;
* workers: a job takes a worker 1 s instead of 0.1 s (10 messages per worker
  instead of 100): moto's SQS slows down when thousands of messages wait;
* the sessions table (TableCapacity, read and write): created in moto at its
  ``minCapacity``; the load generator publishes its consumed capacity and
  throttled requests to ``AWS/DynamoDB`` as DynamoDB would. Its metrics keep
  DynamoDB's one-minute period (the operator reads them as DynamoDB publishes
  them), so the table follows the story a minute or more late.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stackscaler import API_GROUP, API_VERSION
from stackscaler.model.crds import KINDS, WARMUP_SECONDS_BY_TARGET
from stackscaler.model.spec import (
    AutoScalingGroupTarget,
    CloudWatchSource,
    DBInstanceTarget,
    ReplicationGroupTarget,
    Resource,
    TableTarget,
    TargetType,
    WorkloadTarget,
    parse_resource,
)
from stackscaler.model.validation import apply_defaults

DEMO_NAMESPACE = "StackscalerDemo"
"""CloudWatch namespace of the metrics only the load generator publishes."""
POLL_SECONDS = 5
PERIOD_SECONDS = 10
TIME_FACTOR = PERIOD_SECONDS / 60
"""The operator's clock runs 6x faster than in production: it polls every 5 s instead of 30
and reads 10-s periods instead of 60-s ones, so cooldowns, windows and rate-limit periods
shrink alike."""
STALE_SECONDS = 30
SECONDS_PER_JOB = 1.0
DEFAULT_REGION = "us-east-1"
PART_OF = {"app.kubernetes.io/part-of": "stackscaler-demo"}


@dataclass(frozen=True)
class Tier:
    """One tier of the demo stack, as the table and the summary name it."""

    kind: str
    name: str
    namespace: str
    target: str
    """What it scales, for people: ``ASG shop-web``."""
    metric: str
    """The metric the summary's "over target" follows."""
    target_value: float
    tolerance: float
    """The band's scale-out side: "over target" is above ``target_value x (1 + tolerance)``."""
    min_capacity: int
    max_capacity: int

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"

    @property
    def plural(self) -> str:
        return KINDS[self.kind].plural


@dataclass(frozen=True)
class MetricId:
    """A plain CloudWatch metric the load generator publishes."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TableFacts:
    """One TableCapacity of the demo stack: a dimension of a DynamoDB table (or index)."""

    name: str
    namespace: str
    table: str
    index: str | None
    dimension: str
    """Read or Write."""
    min_capacity: int
    max_capacity: int
    target_utilization: float
    kind: str = "TableCapacity"

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"

    @property
    def plural(self) -> str:
        return KINDS[self.kind].plural

    @property
    def target(self) -> str:
        """What it scales, for people: ``DynamoDB shop-user-sessions read``."""
        where = self.table + (f"/{self.index}" if self.index else "")
        return f"DynamoDB {where} {self.dimension.lower()}"

    def metric(self, name: str) -> MetricId:
        """The table's ``AWS/DynamoDB`` metric ``name`` with its dimensions."""
        dims: tuple[tuple[str, str], ...] = (("TableName", self.table),)
        if self.index:
            dims += (("GlobalSecondaryIndexName", self.index),)
        return MetricId("AWS/DynamoDB", name, dims)


@dataclass(frozen=True)
class StackFacts:
    """What the AWS stand-in and the load model need to know about the demo stack."""

    region: str
    web: Tier
    workers: Tier
    readers: Tier
    cache: Tier
    web_asg: str
    workers_asg: str
    queue: str
    db: str
    db_engine: str
    replica_prefix: str
    replica_class: str | None
    replica_zones: tuple[str, ...]
    statefulset: str
    seconds_per_job: float
    backlog_per_worker: float
    web_cpu_metric: MetricId
    web_requests_metric: MetricId | None
    replica_cpu_metric: MetricId
    cache_cpu_metric: MetricId
    tables: tuple[TableFacts, ...] = ()
    """The stack's TableCapacity resources (none: the demo drives no table)."""

    @property
    def tiers(self) -> tuple[Tier, Tier, Tier, Tier]:
        return (self.web, self.workers, self.readers, self.cache)


@dataclass(frozen=True)
class DemoStack:
    documents: tuple[dict[str, Any], ...]
    """Namespace, StatefulSet and the four stackscaler resources, in apply order."""
    notes: tuple[str, ...]
    """The overrides, one line each, for people."""
    facts: StackFacts


def _scaled(seconds: int, factor: float, minimum: int = 0) -> int:
    return max(minimum, round(seconds * factor))


def _cloudwatch_metric(
    name: str, metric_name: str, dimensions: Mapping[str, str], target: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "cloudWatch": {
            "namespace": DEMO_NAMESPACE,
            "metricName": metric_name,
            "dimensions": [{"name": k, "value": v} for k, v in dimensions.items()],
            "statistic": "Average",
            "periodSeconds": PERIOD_SECONDS,
        },
        "target": copy.deepcopy(target),
        "staleAfterSeconds": STALE_SECONDS,
    }


def _one(docs: Sequence[Mapping[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d.get("kind") == kind]
    if len(found) != 1:
        raise ValueError(f"the demo needs exactly one {kind} in the stack, found {len(found)}")
    return apply_defaults(found[0])


def _time_overrides(doc: dict[str, Any], factor: float) -> list[str]:
    spec = doc["spec"]
    spec["pollIntervalSeconds"] = POLL_SECONDS
    changes = []
    for direction, label in (("scaleOut", "scale-out"), ("scaleIn", "scale-in")):
        b = spec["behavior"][direction]
        for key, what in (
            ("cooldownSeconds", "cooldown"),
            ("stabilizationWindowSeconds", "stabilization"),
        ):
            old = int(b[key])
            b[key] = _scaled(old, factor)
            if old:
                changes.append(f"{label} {what} {old}->{b[key]} s")
        step = b.get("maxStep")
        if step:
            step["periodSeconds"] = _scaled(int(step["periodSeconds"]), factor, 1)
    kind = str(spec["target"]["kind"])
    warmup = spec.get("warmupSeconds", WARMUP_SECONDS_BY_TARGET.get(kind, 0))
    spec["warmupSeconds"] = _scaled(int(warmup), factor)
    if warmup:
        changes.append(f"warm-up {warmup}->{spec['warmupSeconds']} s")
    return changes


def _statefulset(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name, **PART_OF}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "memcached",
                            "image": "memcached:1.6",
                            "ports": [{"containerPort": 11211, "name": "memcache"}],
                        }
                    ]
                },
            },
        },
    }


def _tier(resource: Resource, target: str, metric: str) -> Tier:
    spec = resource.scaling
    m = next(x for x in spec.metrics if x.name == metric)
    assert m.target is not None, f"{resource.key}: metric {metric} has no target"
    return Tier(
        kind=resource.kind,
        name=resource.name,
        namespace=resource.namespace or "default",
        target=target,
        metric=metric,
        target_value=m.target.value,
        tolerance=spec.band.above,
        min_capacity=spec.min_capacity,
        max_capacity=spec.max_capacity,
    )


def demo_stack(docs: Sequence[Mapping[str, Any]], *, minute_seconds: float) -> DemoStack:
    """The demo's documents from the example stack's, with every override listed."""
    if minute_seconds <= 0:
        raise ValueError("minute_seconds must be > 0")
    factor = TIME_FACTOR
    web, workers = _one(docs, "WebTier"), _one(docs, "WorkerPool")
    readers, cache = _one(docs, "ReadReplicaPool"), _one(docs, "CachePool")
    crs = (web, workers, readers, cache)
    tables = tuple(apply_defaults(d) for d in docs if d.get("kind") == "TableCapacity")
    notes: list[str] = []

    timing = {d["metadata"]["name"]: _time_overrides(d, factor) for d in (*crs, *tables)}
    example = next(((n, c) for n, c in timing.items() if c), None)
    notes.append(
        f"every tier: the operator's clock runs {1 / factor:g}x faster than in production: "
        f"pollIntervalSeconds {POLL_SECONDS} (the CRD's minimum), CloudWatch periods of "
        f"{PERIOD_SECONDS} s, and cooldowns, stabilization windows and rate-limit periods "
        f"x1/{1 / factor:g}"
        + (f" (e.g. {example[0]}: {', '.join(example[1])})" if example else "")
        + f"; the story's traffic runs {60 / minute_seconds:g}x faster (1 story minute = "
        f"{minute_seconds:g} s)"
    )
    for doc in crs:
        for m in doc["spec"].get("metrics", []):
            if "cloudWatch" in m:
                m["cloudWatch"]["periodSeconds"] = PERIOD_SECONDS
                m["staleAfterSeconds"] = STALE_SECONDS
    notes.append(
        f"every CloudWatch metric: periodSeconds {PERIOD_SECONDS} (high-resolution datapoints, "
        f"StorageResolution=1) and staleAfterSeconds {STALE_SECONDS}"
    )

    # web: Prometheus -> CloudWatch; no wall-clock schedules
    web_spec = web["spec"]
    asg = web_spec["target"]["name"]
    replaced = []
    for i, m in enumerate(web_spec.get("metrics", [])):
        if "prometheus" in m:
            web_spec["metrics"][i] = _cloudwatch_metric(
                m["name"], "RequestsPerMinute", {"AutoScalingGroupName": asg}, m["target"]
            )
            replaced.append(m["name"])
    dropped = [s["name"] for s in web_spec.pop("schedules", [])]
    if replaced or dropped:
        parts = []
        if replaced:
            parts.append(
                f"{', '.join(replaced)} read from CloudWatch {DEMO_NAMESPACE}/RequestsPerMinute "
                "instead of Prometheus (none runs here)"
            )
        if dropped:
            parts.append(
                f"schedule {', '.join(dropped)} removed (it follows the real clock, not story time)"
            )
        notes.append(f"{web['metadata']['name']}: " + "; ".join(parts))

    # read replicas: SEARCH -> a plain metric the load generator publishes
    db = readers["spec"]["target"]["name"]
    for i, m in enumerate(readers["spec"].get("metrics", [])):
        if "expression" in m.get("cloudWatch", {}):
            readers["spec"]["metrics"][i] = _cloudwatch_metric(
                m["name"],
                "ReplicaCPUUtilization",
                {"SourceDBInstanceIdentifier": db},
                m["target"],
            )
            notes.append(
                f"{readers['metadata']['name']}: {m['name']} read from {DEMO_NAMESPACE}/"
                "ReplicaCPUUtilization, which the load generator publishes as the replicas' "
                "average (moto does not evaluate SEARCH)"
            )

    # cache: ElastiCache replicas -> a StatefulSet in the local control plane
    cache_spec = cache["spec"]
    namespace = cache["metadata"].get("namespace", "default")
    sts = cache_spec["target"]["name"]
    if cache_spec["target"]["kind"] == "ReplicationGroup":
        cache_spec["target"] = {"kind": "StatefulSet", "name": sts}
        notes.append(
            f"{cache['metadata']['name']}: scales the StatefulSet {namespace}/{sts} in the local "
            f"control plane instead of the ElastiCache replication group {sts} (moto lacks "
            "IncreaseReplicaCount/DecreaseReplicaCount); no kubelet runs its pods, so the demo "
            "marks its replicas ready itself"
        )
    for i, m in enumerate(cache_spec.get("metrics", [])):
        if "expression" in m.get("cloudWatch", {}):
            cache_spec["metrics"][i] = _cloudwatch_metric(
                m["name"], "EngineCPUUtilization", {"StatefulSet": sts}, m["target"]
            )
            notes.append(
                f"{cache['metadata']['name']}: {m['name']} read from {DEMO_NAMESPACE}/"
                "EngineCPUUtilization, published by the load generator"
            )

    # workers: fewer, slower messages (moto's SQS is slow with thousands waiting)
    queue = workers["spec"]["queue"]
    latency = queue.get("latency")
    if latency is not None and latency["secondsPerMessage"] != SECONDS_PER_JOB:
        old = latency["secondsPerMessage"]
        latency["secondsPerMessage"] = SECONDS_PER_JOB
        per = latency["acceptableSeconds"] / SECONDS_PER_JOB
        notes.append(
            f"{workers['metadata']['name']}: a job takes a worker {SECONDS_PER_JOB:g} s instead "
            f"of {old:g} s ({per:g} messages per worker): moto's SQS slows down when thousands "
            "of messages wait"
        )

    if tables:
        names = ", ".join(str(t["metadata"]["name"]) for t in tables)
        notes.append(
            f"{names}: the DynamoDB table is created in moto at minCapacity; the load generator "
            "publishes its consumed capacity and throttled requests to AWS/DynamoDB (reads in "
            "proportion to the requests, a write per 10 reads); its metrics keep DynamoDB's "
            "60 s period, so the table follows the story a minute or more late"
        )

    namespace_doc = next(
        (copy.deepcopy(dict(d)) for d in docs if d.get("kind") == "Namespace"),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    statefulset = _statefulset(sts, namespace, int(cache_spec.get("minCapacity", 1)))
    facts = stack_facts(crs, tables)
    return DemoStack((namespace_doc, statefulset, *crs, *tables), tuple(notes), facts)


def _metric_id(resource: Resource, *, target_type: TargetType | None = None) -> MetricId | None:
    """The tier's first plain CloudWatch metric (of ``target_type``), if it has one."""
    for m in resource.scaling.metrics:
        if target_type is not None and (m.target is None or m.target.type is not target_type):
            continue
        src = m.source
        if isinstance(src, CloudWatchSource) and src.metric_name and src.namespace:
            return MetricId(src.namespace, src.metric_name, src.dimensions)
    return None


def _required(metric: MetricId | None, what: str) -> MetricId:
    if metric is None:
        raise ValueError(f"the demo needs {what} as a plain CloudWatch metric")
    return metric


def _table(resource: Resource) -> TableFacts:
    target = resource.target
    if not isinstance(target, TableTarget):  # pragma: no cover - the kind's only target
        raise ValueError("a TableCapacity scales a Table")
    consumed = resource.scaling.metrics[0]
    assert consumed.target is not None
    return TableFacts(
        name=resource.name,
        namespace=resource.namespace or "default",
        table=target.name,
        index=target.index,
        dimension=target.dimension.value,
        min_capacity=resource.scaling.min_capacity,
        max_capacity=resource.scaling.max_capacity,
        target_utilization=100.0 * consumed.target.value,
    )


def stack_facts(
    crs: Sequence[Mapping[str, Any]], tables: Sequence[Mapping[str, Any]] = ()
) -> StackFacts:
    """The facts of the (overridden) demo resources; checks they are what the demo drives."""
    parsed = {d["kind"]: parse_resource(d, source="demo stack") for d in crs}
    web, workers = parsed["WebTier"], parsed["WorkerPool"]
    readers, cache = parsed["ReadReplicaPool"], parsed["CachePool"]
    if not isinstance(web.target, AutoScalingGroupTarget):
        raise ValueError("the demo drives a WebTier on an Auto Scaling group")
    if not isinstance(workers.target, AutoScalingGroupTarget) or workers.queue is None:
        raise ValueError("the demo drives a WorkerPool on an Auto Scaling group")
    if not isinstance(readers.target, DBInstanceTarget):
        raise ValueError("the demo drives a ReadReplicaPool of a DB instance")
    if not isinstance(cache.target, WorkloadTarget | ReplicationGroupTarget):
        raise ValueError("the demo drives a CachePool")
    if workers.queue.source.name is None or workers.queue.seconds_per_message is None:
        raise ValueError("the demo's WorkerPool names its queue and uses the latency recipe")
    web_metric = next(
        m.name
        for m in web.scaling.metrics
        if m.target is not None and m.target.type is TargetType.VALUE
    )
    region = web.target.region or DEFAULT_REGION
    return StackFacts(
        region=region,
        web=_tier(web, f"ASG {web.target.name}", web_metric),
        workers=_tier(workers, f"ASG {workers.target.name}", workers.scaling.metrics[-1].name),
        readers=_tier(readers, f"RDS {readers.target.name}", readers.scaling.metrics[0].name),
        cache=_tier(
            cache, f"{cache.target.kind} {cache.target.name}", cache.scaling.metrics[0].name
        ),
        web_asg=web.target.name,
        workers_asg=workers.target.name,
        queue=workers.queue.source.name,
        db=readers.target.name,
        db_engine=readers.target.engine,
        replica_prefix=readers.target.template.identifier_prefix or f"{readers.target.name}-",
        replica_class=readers.target.template.instance_class,
        replica_zones=readers.target.template.availability_zones,
        statefulset=cache.target.name,
        seconds_per_job=workers.queue.seconds_per_message,
        backlog_per_worker=workers.queue.backlog_per_worker,
        web_cpu_metric=_required(
            _metric_id(web, target_type=TargetType.VALUE), "the web tier's CPU"
        ),
        web_requests_metric=_metric_id(web, target_type=TargetType.AVERAGE_VALUE),
        replica_cpu_metric=_required(_metric_id(readers), "the read replicas' CPU"),
        cache_cpu_metric=_required(_metric_id(cache), "the cache's CPU"),
        tables=tuple(_table(parse_resource(d, source="demo stack")) for d in tables),
    )


def is_custom_resource(doc: Mapping[str, Any]) -> bool:
    return doc.get("apiVersion") == f"{API_GROUP}/{API_VERSION}" and doc.get("kind") in KINDS
