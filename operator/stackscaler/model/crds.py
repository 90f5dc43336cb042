"""The stackscaler API (group ``stackscaler.dev``, version ``v1alpha1``).

This module is the single source of truth for the four custom resources:
``crds/*.yaml`` is generated from it (``make crds``), the offline validator
(``stackscaler validate``) walks the same schemas, and the typed model reads
the defaults applied from them. A test fails when the committed YAML
differs from what this module generates.

All kinds share one scaling block (bounds, metrics, behavior, schedules,
missing-metric rules, mode, poll interval) and differ in their ``target``
and, for WorkerPool, the SQS ``queue``. Targets follow the Kubernetes union
convention of ``scaleTargetRef``: a discriminating ``kind`` plus a ``name``
and the fields that only that kind takes, so ``kubectl get`` can show the
target without the operator running.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from stackscaler import API_GROUP, API_VERSION
from stackscaler.model import table
from stackscaler.model.predictive import (
    forecast_status_schema,
    predictive_metric_rule,
    predictive_schema,
)
from stackscaler.model.schema import (
    JSON,
    Node,
    Rule,
    array,
    boolean,
    exactly_one,
    integer,
    number,
    obj,
    only_when,
    python_regex,
    rule,
    string,
)

MAX_CAPACITY_LIMIT = 100_000
RDS_MAX_REPLICAS = 15
RDS_MAX_REPLICAS_COMMERCIAL = 5
ELASTICACHE_MAX_REPLICAS = 5
BACKLOG_METRIC = "backlog"
"""Name of WorkerPool's implicit SQS queue metric (reserved)."""
WARMUP_SECONDS_MAX = 3600
"""The longest warm-up (AWS allows 0-3600 s of DefaultInstanceWarmup too)."""
WARMUP_SECONDS_BY_TARGET: dict[str, int] = {
    "AutoScalingGroup": 180,  # EC2 boot, health check, caches
    "DBInstance": 600,  # an RDS read replica
    "DBCluster": 600,  # an Aurora reader
    "ReplicationGroup": 600,  # an ElastiCache replica
    "Deployment": 30,  # pod start and readiness
    "StatefulSet": 30,
    "Table": 0,  # provisioned capacity units: a change applies at once
}
"""``spec.warmupSeconds`` when a resource sets none (an Auto Scaling group's own
DefaultInstanceWarmup comes first): the simulator's warm-up per target kind."""

# Patterns are read by the API server's Go regexp (RE2 syntax) and, through
# schema.python_regex, by Python: RE2's \x{...} escapes and its end-of-text `$`
# are translated there. Names reach logs, Events, status and AWS calls, so every
# name has one: no controls, no bidi or other invisible characters (a newline and
# a U+202E in a target name once forged a log line).
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
REGION_PATTERN = r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$"
ROLE_ARN_PATTERN = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/([!-~]+/)?[A-Za-z0-9_+=,.@-]{1,64}$"
"""IAM: a path of printable ASCII between slashes, a role name of [A-Za-z0-9_+=,.@-]{1,64}."""
_INVISIBLE = (
    r"\x00-\x1f\x7f-\x9f\x{61c}\x{180e}\x{200b}-\x{200f}\x{2028}-\x{202e}"
    r"\x{2060}-\x{206f}\x{feff}\x{fff9}-\x{fffb}\x{e0000}-\x{e007f}"
)
TEXT_PATTERN = rf"^[^{_INVISIBLE}]*$"
"""Free text without controls (C0, DEL, C1), bidi controls, zero-width or tag characters."""
ASG_NAME_PATTERN = r"^[!-9;-~]+$"
"""EC2 Auto Scaling: any ASCII character 33 to 126 but the colon."""
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A Kubernetes object name (DNS-1123 subdomain), for Deployments and StatefulSets."""
AWS_IDENTIFIER_PATTERN = r"^[A-Za-z](-?[A-Za-z0-9])*$"
"""RDS instance and cluster identifiers, ElastiCache replication group ids, DB parameter
group names: a letter first, then letters, digits and single hyphens, no hyphen last."""
QUEUE_NAME_PATTERN = r"^([A-Za-z0-9_-]{1,75}[.]fifo|[A-Za-z0-9_-]{1,80})$"
"""SQS: up to 80 letters, digits, '-' and '_', a FIFO queue's ending in .fifo."""
URL_PATTERN = r"^https?://[!-~]+$"
"""An http(s) URL: printable ASCII, no space (an international name is punycode)."""
CLOUDWATCH_NAME_PATTERN = r"^([!-9;-~]| +[!-~])[ -~]*$"
"""CloudWatch namespaces and dimension names: printable ASCII, not blank, no leading ':'."""
CLOUDWATCH_VALUE_PATTERN = r"^ *[!-~][ -~]*$"
"""CloudWatch dimension values: printable ASCII with at least one non-blank character."""


# --------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------


def _region() -> JSON:
    return string(
        "AWS region of the resource, for example us-east-1. Defaults to the operator's "
        "region (AWS_REGION / the default credential chain).",
        pattern=REGION_PATTERN,
        max_length=32,
    )


def _role_arn() -> JSON:
    return string(
        "IAM role to assume for this resource's AWS calls (cross-account). Defaults to the "
        "operator's own identity (IRSA, EKS Pod Identity or the default credential chain).",
        pattern=ROLE_ARN_PATTERN,
        max_length=2048,
    )


def _aws_name(what: str, max_length: int = 255, pattern: str = TEXT_PATTERN) -> JSON:
    return string(what, pattern=pattern, min_length=1, max_length=max_length)


_WORKLOAD_KINDS = ("Deployment", "StatefulSet")


def _workload_name_rule() -> Rule:
    """A Deployment or StatefulSet target is named like any Kubernetes object."""
    dns = python_regex(DNS_SUBDOMAIN_PATTERN)
    return rule(
        "!has(self.name) || !(self.kind in ['Deployment', 'StatefulSet']) || "
        f"(size(self.name) <= 253 && self.name.matches('{DNS_SUBDOMAIN_PATTERN}'))",
        "a Deployment or StatefulSet name must be a DNS subdomain: at most 253 lower-case "
        "letters, digits, '-' and '.', starting and ending with a letter or digit",
        lambda n: (
            "name" not in n
            or n["kind"] not in _WORKLOAD_KINDS
            or (len(n["name"]) <= 253 and dns.search(n["name"]) is not None)
        ),
        field_path=".name",
    )


def _dimensions() -> JSON:
    return array(
        "CloudWatch dimensions that identify the metric.",
        obj(
            "One CloudWatch dimension.",
            {
                "name": _aws_name(
                    "Dimension name, for example AutoScalingGroupName.",
                    pattern=CLOUDWATCH_NAME_PATTERN,
                ),
                "value": _aws_name("Dimension value.", 1024, pattern=CLOUDWATCH_VALUE_PATTERN),
            },
            required=["name", "value"],
        ),
        max_items=30,
        map_keys=["name"],
    )


_STATISTIC_PATTERN = (
    r"^(Average|Sum|Minimum|Maximum|SampleCount|(p|tm|tc|ts|wm)[0-9]{1,2}(\.[0-9]+)?)$"
)


def _cloudwatch() -> JSON:
    return obj(
        "Read the metric from Amazon CloudWatch with GetMetricData (batched with every other "
        "resource due in the same tick). Give namespace + metricName (+ dimensions, statistic), "
        "or a metric-math expression over named queries.",
        {
            "namespace": _aws_name(
                "Metric namespace, for example AWS/EC2 or AWS/ApplicationELB.",
                pattern=CLOUDWATCH_NAME_PATTERN,
            ),
            "metricName": _aws_name("Metric name, for example CPUUtilization."),
            "dimensions": _dimensions(),
            "statistic": string(
                "Statistic of each period: Average, Sum, Minimum, Maximum, SampleCount or a "
                "percentile such as p90.",
                pattern=_STATISTIC_PATTERN,
                default="Average",
            ),
            "unit": string("Unit to request, for example Percent or Count.", max_length=32),
            "expression": string(
                "Metric-math expression (for example 'm1 / m2 * 100'); the ids it uses are "
                "defined in queries. Exclusive with metricName.",
                min_length=1,
                max_length=2048,
            ),
            "queries": array(
                "Named metric statistics that the expression refers to by id.",
                obj(
                    "One metric statistic used by the expression.",
                    {
                        "id": string(
                            "Id the expression uses; starts with a lower-case letter.",
                            pattern=r"^[a-z][a-zA-Z0-9_]*$",
                            max_length=255,
                        ),
                        "namespace": _aws_name(
                            "Metric namespace.", pattern=CLOUDWATCH_NAME_PATTERN
                        ),
                        "metricName": _aws_name("Metric name."),
                        "dimensions": _dimensions(),
                        "statistic": string(
                            "Statistic of each period.",
                            pattern=_STATISTIC_PATTERN,
                            default="Average",
                        ),
                    },
                    required=["id", "namespace", "metricName"],
                ),
                max_items=10,
                map_keys=["id"],
            ),
            "periodSeconds": integer(
                "Aggregation period. The newest, still incomplete period is never used.",
                minimum=1,
                maximum=86400,
                default=60,
            ),
            "region": _region(),
            "roleArn": _role_arn(),
        },
        rules=[
            exactly_one(
                ["metricName", "expression"],
                "set exactly one of metricName (a single metric) or expression (metric math)",
            ),
            rule(
                "!has(self.metricName) || has(self.namespace)",
                "namespace is required with metricName",
                lambda n: "metricName" not in n or "namespace" in n,
                field_path=".namespace",
                reason="FieldValueRequired",
            ),
            rule(
                "has(self.expression) || !has(self.queries)",
                "queries are only used by an expression; set expression or remove queries",
                lambda n: "expression" in n or "queries" not in n,
                field_path=".queries",
                reason="FieldValueForbidden",
            ),
            rule(
                "!has(self.expression) || (!has(self.namespace) && !has(self.dimensions))",
                "with expression, put namespace and dimensions inside queries",
                lambda n: "expression" not in n or ("namespace" not in n and "dimensions" not in n),
                reason="FieldValueForbidden",
            ),
            rule(
                "self.periodSeconds in [1, 5, 10, 30] || self.periodSeconds % 60 == 0",
                "periodSeconds must be 1, 5, 10, 30 or a multiple of 60 (CloudWatch periods)",
                lambda n: n["periodSeconds"] in (1, 5, 10, 30) or n["periodSeconds"] % 60 == 0,
                field_path=".periodSeconds",
            ),
        ],
    )


def _prometheus() -> JSON:
    return obj(
        "Read the metric from a Prometheus-compatible HTTP API with an instant query. The query "
        "must return exactly one series; an empty result or a stale sample is unknown, never 0. "
        "Credentials (bearer token, basic auth, CA) are operator settings per server address, "
        "never stored in the resource.",
        {
            "serverAddress": string(
                "Base URL of the Prometheus server, for example http://prometheus.monitoring:9090.",
                pattern=URL_PATTERN,
                max_length=2048,
            ),
            "query": string(
                "PromQL instant query returning one series, for example "
                'sum(rate(http_requests_total{job="web"}[2m])).',
                min_length=1,
                max_length=8192,
            ),
            "timeoutSeconds": integer(
                "HTTP timeout of the query.", minimum=1, maximum=120, default=10
            ),
        },
        required=["serverAddress", "query"],
    )


TIER_VALUES = ("Metric", "Demand", "DesiredCapacity", "ReadyCapacity")
"""What a tier source reads of the other resource (model.spec.TierValue)."""


def _tier() -> JSON:
    return obj(
        "Read a value of another stackscaler resource in this resource's namespace, as the "
        "operator last recorded it in that resource's status (a ReadReplicaPool following the "
        "web tier's demand scales a warm-up before its own CPU moves). There is no namespace "
        "field: only the same namespace is read. A missing resource, a missing metric or a "
        "value older than staleAfterSeconds is unknown, never 0. Tier sources must not form a "
        "cycle (a resource that follows itself, directly or through others).",
        {
            "kind": string(
                "Kind of the other resource.",
                enum=["WebTier", "WorkerPool", "ReadReplicaPool", "CachePool"],
            ),
            "name": string(
                "Name of the other resource (in this resource's namespace).",
                pattern=DNS_SUBDOMAIN_PATTERN,
                max_length=253,
            ),
            "value": string(
                "Metric: one of its metrics as it last observed it (its sample time counts "
                "for staleness). Demand: the capacity its metrics asked for, before "
                "stabilization, cooldowns, rate limits and bounds (unknown while any of its "
                "metrics is unknown). DesiredCapacity: the capacity it decided. "
                "ReadyCapacity: its units that serve (current minus starting).",
                enum=list(TIER_VALUES),
            ),
            "metric": string(
                "With value Metric: the name of one of its metrics.",
                pattern=NAME_PATTERN,
                max_length=63,
            ),
        },
        required=["kind", "name", "value"],
        rules=[
            rule(
                "self.value != 'Metric' || has(self.metric)",
                "metric is required with value Metric: name one of the other resource's metrics",
                lambda n: n["value"] != "Metric" or "metric" in n,
                field_path=".metric",
                reason="FieldValueRequired",
            ),
            rule(
                "self.value == 'Metric' || !has(self.metric)",
                "metric is only used with value Metric; remove it",
                lambda n: n["value"] == "Metric" or "metric" not in n,
                field_path=".metric",
                reason="FieldValueForbidden",
            ),
        ],
    )


def _not_following_itself() -> Rule:
    """At the root, where CEL sees metadata.name and kind: no tier source names the
    resource itself (longer cycles need the other resources: validate and the operator)."""
    return rule(
        "!has(self.metadata.name) || !has(self.spec.metrics) || self.spec.metrics.all(m, "
        "!has(m.tier) || m.tier.kind != self.kind || m.tier.name != self.metadata.name)",
        "a tier source must not name the resource itself (a cycle): follow another resource",
        lambda n: (
            not any(
                isinstance(m, dict)
                and isinstance(m.get("tier"), dict)
                and m["tier"].get("kind") == n.get("kind")
                and m["tier"].get("name") == (n.get("metadata") or {}).get("name")
                for m in (n.get("spec") or {}).get("metrics") or ()
            )
        ),
        field_path=".spec.metrics",
    )


def _metric_target() -> JSON:
    return obj(
        "Target tracking: keep the metric at this value.",
        {
            "type": string(
                "Value: the metric is already per capacity unit (average CPU %, requests per "
                "target): desired = ceil(current x value / target). AverageValue: the metric is "
                "a total (queue backlog, total request rate): desired = ceil(value / target).",
                enum=["Value", "AverageValue"],
                default="Value",
            ),
            "value": number("The target value; must be > 0.", minimum=0, exclusive_minimum=True),
            "ceiling": number(
                "Value targets: the most the metric can read (a utilization in percent: 100). "
                "The scale-out edge of the tolerance band stays at most halfway from the target "
                "to the ceiling, so a target near it still scales out when the metric "
                "saturates. Default: 100 for a CloudWatch metric in percent (unit Percent, or "
                "CPUUtilization, EngineCPUUtilization, MemoryUtilization, "
                "DatabaseMemoryUsagePercentage); none for other metrics.",
                minimum=0,
                exclusive_minimum=True,
            ),
        },
        required=["value"],
        rules=[
            rule(
                "!has(self.ceiling) || (self.type == 'Value' && self.ceiling > self.value)",
                "ceiling applies to a Value target and must be greater than value: the most the "
                "metric can read (100 for a percent); remove it from an AverageValue target",
                lambda n: (
                    "ceiling" not in n
                    or (n.get("type", "Value") == "Value" and n["ceiling"] > n["value"])
                ),
                field_path=".ceiling",
            )
        ],
    )


def _step_scaling() -> JSON:
    step = obj(
        "A band [lowerBound, upperBound) of the metric's value and the adjustment applied "
        "while the value is inside it. An absent bound is open (-inf or +inf).",
        {
            "lowerBound": number("Inclusive lower bound of the band."),
            "upperBound": number("Exclusive upper bound of the band."),
            "adjustment": integer(
                "Units (ChangeInCapacity), percent (PercentChangeInCapacity) or the capacity "
                "itself (ExactCapacity). Negative values scale in.",
                minimum=-MAX_CAPACITY_LIMIT,
                maximum=MAX_CAPACITY_LIMIT,
            ),
        },
        required=["adjustment"],
        rules=[
            rule(
                "!has(self.lowerBound) || !has(self.upperBound) "
                "|| self.lowerBound < self.upperBound",
                "lowerBound must be < upperBound",
                lambda n: (
                    "lowerBound" not in n
                    or "upperBound" not in n
                    or n["lowerBound"] < n["upperBound"]
                ),
                field_path=".lowerBound",
            )
        ],
    )
    return obj(
        "Step scaling: bands of the metric mapped to adjustments of the current capacity. "
        "Bands must not overlap. Outside every band nothing changes.",
        {
            "adjustmentType": string(
                "How adjustment is read.",
                enum=["ChangeInCapacity", "PercentChangeInCapacity", "ExactCapacity"],
                default="ChangeInCapacity",
            ),
            "minAdjustmentMagnitude": integer(
                "With PercentChangeInCapacity, change by at least this many units.",
                minimum=1,
                maximum=MAX_CAPACITY_LIMIT,
            ),
            "steps": array("The bands.", step, max_items=20, min_items=1),
        },
        required=["steps"],
    )


def _metric() -> JSON:
    return obj(
        "One metric the capacity follows. Each metric gives a recommendation; the capacity "
        "scales out if any metric asks for it and scales in only as far as every metric allows.",
        {
            "name": string(
                "Name of the metric within this resource (used in status, events and "
                "`stackscaler decide --metric NAME=VALUE`).",
                pattern=NAME_PATTERN,
                max_length=63,
            ),
            "cloudWatch": _cloudwatch(),
            "prometheus": _prometheus(),
            "tier": _tier(),
            "target": _metric_target(),
            "stepScaling": _step_scaling(),
            "activationThreshold": number(
                "With minCapacity 0: the resource scales from 0 to 1 only when the metric is "
                "above this value, and back to 0 when every metric is at or below its threshold.",
                default=0,
            ),
            "staleAfterSeconds": integer(
                "A sample older than this is unknown (never 0): unknown never scales in.",
                minimum=1,
                maximum=86400,
                default=300,
            ),
        },
        required=["name"],
        rules=[
            exactly_one(
                ["cloudWatch", "prometheus", "tier"],
                "set exactly one metric source: cloudWatch, prometheus or tier",
            ),
            exactly_one(
                ["target", "stepScaling"],
                "set exactly one of target (target tracking) or stepScaling",
            ),
            rule(
                "!has(self.cloudWatch) || !has(self.cloudWatch.periodSeconds) || "
                "self.staleAfterSeconds >= self.cloudWatch.periodSeconds",
                "staleAfterSeconds must be >= cloudWatch.periodSeconds: the newest complete "
                "period is up to one period old",
                lambda n: (
                    "cloudWatch" not in n
                    or n["staleAfterSeconds"] >= n["cloudWatch"].get("periodSeconds", 60)
                ),
                field_path=".staleAfterSeconds",
            ),
        ],
    )


def _max_step(default: JSON | None) -> JSON:
    return obj(
        "Rate limit: the capacity changes by at most this much per period in this direction. "
        "With both units and percent, select picks the larger (Max) or smaller (Min) change.",
        {
            "units": integer("Capacity units per period.", minimum=1, maximum=MAX_CAPACITY_LIMIT),
            "percent": integer(
                "Percent of the capacity at the start of the period.", minimum=1, maximum=1000
            ),
            "periodSeconds": integer(
                "Length of the sliding period.", minimum=1, maximum=3600, default=60
            ),
            "select": string(
                "Which limit wins when both are set.", enum=["Max", "Min"], default="Max"
            ),
        },
        rules=[
            rule(
                "has(self.units) || has(self.percent)",
                "set units, percent or both",
                lambda n: "units" in n or "percent" in n,
                reason="FieldValueRequired",
            )
        ],
        default=default,
    )


def _direction(what: str, cooldown: int, window: int, step: JSON | None) -> JSON:
    return obj(
        f"How the capacity {what}.",
        {
            "cooldownSeconds": integer(
                f"After a scale-{'out' if 'out' in what else 'in'}, wait this long before the "
                "next one in this direction"
                + (" (a scale-out also restarts it)." if "in" in what else "."),
                minimum=0,
                maximum=86400,
                default=cooldown,
            ),
            "stabilizationWindowSeconds": integer(
                "Follow the "
                + ("lowest" if "out" in what else "highest")
                + " recommendation of this window, to ignore short spikes and dips.",
                minimum=0,
                maximum=3600,
                default=window,
            ),
            "maxStep": _max_step(step),
            "tolerance": number(
                "This side of the tolerance band: the metric may read up to (1 + tolerance) "
                "x its target before a scale-out, or down to (1 - tolerance) x it before a "
                "scale-in, without a change (the HPA's behavior.scaleUp/scaleDown.tolerance). "
                "Unset: spec.tolerance, or the kind's default.",
                minimum=0,
                maximum=1,
            ),
        },
        default={},
    )


def _behavior(*, table_capacity: bool = False) -> JSON:
    """The shared defaults; a TableCapacity's differ: increases are unlimited and every
    decrease spends one of the table's daily budget, so neither direction is rate-limited
    by default (a scale-in goes in one step), and scale-in follows 15 minutes as
    Application Auto Scaling's does."""
    if table_capacity:
        return obj(
            "Cooldowns, stabilization and rate limits per direction. TableCapacity defaults: "
            "no maxStep in either direction (increases are unlimited; each decrease spends "
            "one of the table's daily decreases, so a scale-in goes in one step), a "
            f"{table.TABLE_SCALE_OUT_WINDOW_SECONDS} s scale-out window (throttling skips "
            f"it) and a {table.TABLE_SCALE_IN_WINDOW_SECONDS} s scale-in window.",
            {
                "scaleOut": _direction(
                    "grows (scale-out)", 60, table.TABLE_SCALE_OUT_WINDOW_SECONDS, None
                ),
                "scaleIn": _direction(
                    "shrinks (scale-in)", 120, table.TABLE_SCALE_IN_WINDOW_SECONDS, None
                ),
            },
            default={},
        )
    return obj(
        "Cooldowns, stabilization and rate limits per direction.",
        {
            "scaleOut": _direction(
                "grows (scale-out)", 60, 0, {"units": 4, "percent": 100, "periodSeconds": 60}
            ),
            "scaleIn": _direction(
                "shrinks (scale-in)", 120, 600, {"units": 1, "percent": 25, "periodSeconds": 60}
            ),
        },
        default={},
    )


def _schedules(max_capacity: int) -> JSON:
    return array(
        "Windows that raise or lower the bounds: while a window is active its minCapacity and "
        "maxCapacity replace the resource's; with several active windows the highest wins.",
        obj(
            "A recurring window.",
            {
                "name": string("Name of the window.", pattern=NAME_PATTERN, max_length=63),
                "cron": string(
                    "Start of the window: a 5-field cron expression (minute hour day-of-month "
                    "month day-of-week) or @daily, @weekly, ...",
                    min_length=1,
                    max_length=128,
                ),
                "timeZone": string(
                    "IANA time zone of the cron expression, for example America/New_York.",
                    default="UTC",
                    min_length=1,
                    max_length=64,
                ),
                "durationSeconds": integer("Length of the window.", minimum=60, maximum=31 * 86400),
                "minCapacity": integer(
                    "Lower bound while the window is active.", minimum=0, maximum=max_capacity
                ),
                "maxCapacity": integer(
                    "Upper bound while the window is active.", minimum=1, maximum=max_capacity
                ),
            },
            required=["name", "cron", "durationSeconds"],
            rules=[
                rule(
                    "has(self.minCapacity) || has(self.maxCapacity)",
                    "a schedule must set minCapacity, maxCapacity or both",
                    lambda n: "minCapacity" in n or "maxCapacity" in n,
                    reason="FieldValueRequired",
                ),
                rule(
                    "!has(self.minCapacity) || !has(self.maxCapacity) "
                    "|| self.minCapacity <= self.maxCapacity",
                    "minCapacity must be <= maxCapacity",
                    lambda n: (
                        "minCapacity" not in n
                        or "maxCapacity" not in n
                        or n["minCapacity"] <= n["maxCapacity"]
                    ),
                    field_path=".minCapacity",
                ),
            ],
        ),
        max_items=20,
        map_keys=["name"],
    )


def _on_metrics_unavailable() -> JSON:
    return obj(
        "What to do while metrics are unknown (source down, empty result, stale sample). "
        "Unknown never scales in; scale-out on the metrics that remain is allowed. After "
        "failureThreshold consecutive ticks with an unknown metric, Hold keeps the capacity and "
        "Fallback raises it to at least fallbackCapacity (never lowers it).",
        {
            "failureThreshold": integer(
                "Consecutive ticks with an unknown metric before the action applies.",
                minimum=1,
                maximum=1000,
                default=3,
            ),
            "action": string("Hold or Fallback.", enum=["Hold", "Fallback"], default="Hold"),
            "fallbackCapacity": integer(
                "Capacity floor while in Fallback; within [minCapacity, maxCapacity].",
                minimum=0,
                maximum=MAX_CAPACITY_LIMIT,
            ),
        },
        rules=[
            rule(
                # The API server checks the default {} against this rule without
                # applying nested defaults first: guard every field with has().
                "!has(self.action) || self.action != 'Fallback' || has(self.fallbackCapacity)",
                "fallbackCapacity is required when action is Fallback",
                lambda n: n.get("action") != "Fallback" or "fallbackCapacity" in n,
                field_path=".fallbackCapacity",
                reason="FieldValueRequired",
            )
        ],
        default={},
    )


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    description: str
    max_capacity: int


def _scaling_properties(max_capacity: int, *, metrics_min: int | None) -> dict[str, JSON]:
    return {
        "minCapacity": integer(
            "Lower bound of the capacity. 0 allows scaling to zero (see activationThreshold).",
            minimum=0,
            maximum=max_capacity,
            default=1,
        ),
        "maxCapacity": integer("Upper bound of the capacity.", minimum=1, maximum=max_capacity),
        "metrics": array(
            "Metrics the capacity follows.",
            _metric(),
            max_items=10,
            min_items=metrics_min,
            map_keys=["name"],
        ),
        "behavior": _behavior(),
        "tolerance": number(
            "Relative deviation from a target inside which nothing changes, on both sides "
            "(0.2 = 20%; the HPA's default is 0.1); behavior.scaleOut.tolerance and "
            "behavior.scaleIn.tolerance set one side. Unset: 0.2 above the target and 0.1 "
            "below it (a TableCapacity: 0.2 both ways, as each decrease is rationed), the "
            "best trade-off on real traffic in `make bench` (docs/simulate.md).",
            minimum=0,
            maximum=1,
        ),
        "schedules": _schedules(max_capacity),
        "onMetricsUnavailable": _on_metrics_unavailable(),
        "mode": string(
            "Active changes capacity; DryRun only records what it would do (shadow mode).",
            enum=["Active", "DryRun"],
            default="Active",
        ),
        "pollIntervalSeconds": integer(
            "How often the resource is reconciled.", minimum=5, maximum=3600, default=30
        ),
        "predictive": predictive_schema(NAME_PATTERN),
    }


_WARMUP_NOTES = {
    "AutoScalingGroup": "the group's DefaultInstanceWarmup if set, else {s} (from EC2 LaunchTime)",
    "DBInstance": "{s} (from InstanceCreateTime)",
    "DBCluster": "{s} (from InstanceCreateTime)",
    "ReplicationGroup": "{s} (from CacheClusterCreateTime)",
    "Deployment": "{s}, for `stackscaler simulate` only: the operator counts availableReplicas, "
    "so the workload's minReadySeconds is its warm-up",
}
_WARMUP_NOTES["StatefulSet"] = _WARMUP_NOTES["Deployment"]
_WARMUP_NOTES["Table"] = "{s} (provisioned capacity applies at once)"


def _warmup(target_kinds: list[str]) -> JSON:
    """spec.warmupSeconds, with the defaults of this kind's target kinds (alike ones joined)."""
    notes: dict[str, list[str]] = {}
    for k in target_kinds:
        notes.setdefault(_WARMUP_NOTES[k].format(s=WARMUP_SECONDS_BY_TARGET[k]), []).append(k)
    defaults = "; ".join(f"{', '.join(kinds)}: {note}" for note, kinds in notes.items())
    return integer(
        "Seconds a new unit (instance, replica, node) takes to contribute to its metrics, from "
        "its launch. Until then it is starting: capacity already ordered, not yet in the "
        f"metrics. Default by target kind: {defaults}; a default is the time until the unit "
        "serves, to which the operator adds the time until a datapoint of a per-unit "
        "CloudWatch metric includes it (its periodSeconds plus 60 s of delivery).",
        minimum=0,
        maximum=WARMUP_SECONDS_MAX,
    )


def _scaling_rules(*, needs_metrics: bool) -> list[Rule]:
    rules = [
        rule(
            "self.minCapacity <= self.maxCapacity",
            "minCapacity must be <= maxCapacity",
            lambda n: n["minCapacity"] <= n["maxCapacity"],
            field_path=".minCapacity",
            explain=lambda n: (
                f"minCapacity ({n['minCapacity']}) must be <= maxCapacity "
                f"({n['maxCapacity']}): lower minCapacity or raise maxCapacity"
            ),
        ),
        rule(
            "!has(self.onMetricsUnavailable) || "
            "!has(self.onMetricsUnavailable.fallbackCapacity) || "
            "(self.onMetricsUnavailable.fallbackCapacity >= self.minCapacity && "
            "self.onMetricsUnavailable.fallbackCapacity <= self.maxCapacity)",
            "fallbackCapacity must be within [minCapacity, maxCapacity]",
            _fallback_in_bounds,
            field_path=".onMetricsUnavailable.fallbackCapacity",
        ),
        rule(
            "!has(self.schedules) || self.schedules.all(s, "
            "(has(s.maxCapacity) ? s.maxCapacity : self.maxCapacity) >= "
            "(has(s.minCapacity) ? s.minCapacity : self.minCapacity))",
            "a schedule's minCapacity must be <= its maxCapacity, or the resource's "
            "maxCapacity when the schedule sets none (and likewise for maxCapacity)",
            _schedules_consistent,
            field_path=".schedules",
        ),
    ]
    if needs_metrics:
        rules.append(
            rule(
                "(has(self.metrics) && size(self.metrics) > 0) || "
                "(has(self.schedules) && size(self.schedules) > 0)",
                "set at least one metric or schedule",
                lambda n: bool(n.get("metrics")) or bool(n.get("schedules")),
                field_path=".metrics",
                reason="FieldValueRequired",
            )
        )
    return rules


def _fallback_in_bounds(n: Node) -> bool:
    fb = n.get("onMetricsUnavailable", {}).get("fallbackCapacity")
    return fb is None or n["minCapacity"] <= fb <= n["maxCapacity"]


def _schedules_consistent(n: Node) -> bool:
    for s in n.get("schedules", ()):
        lo = s.get("minCapacity", n["minCapacity"])
        hi = s.get("maxCapacity", n["maxCapacity"])
        if hi < lo:
            return False
    return True


def _workload_or_asg_target() -> JSON:
    return obj(
        "What to scale: an EC2 Auto Scaling group, or a Deployment or StatefulSet in the "
        "resource's namespace (through its /scale subresource).",
        {
            "kind": string(
                "Kind of the target.", enum=["AutoScalingGroup", "Deployment", "StatefulSet"]
            ),
            "name": _aws_name(
                "Name of the Auto Scaling group (ASCII 33-126 but ':') or of the workload "
                "(a DNS subdomain).",
                pattern=ASG_NAME_PATTERN,
            ),
            "region": _region(),
            "roleArn": _role_arn(),
            "syncMinMax": boolean(
                "AutoScalingGroup only: keep the group's MinSize/MaxSize equal to "
                "minCapacity/maxCapacity. Otherwise the desired capacity is clamped to the "
                "group's own MinSize/MaxSize and the clamp is reported."
            ),
        },
        required=["kind", "name"],
        rules=[
            only_when(["AutoScalingGroup"], ["region", "roleArn", "syncMinMax"]),
            _workload_name_rule(),
        ],
    )


def _queue() -> JSON:
    return obj(
        "The SQS queue the workers consume. Its backlog (visible messages, plus in-flight and "
        "delayed when enabled) is the implicit metric named 'backlog', tracked per worker.",
        {
            "url": string(
                "Queue URL, for example https://sqs.us-east-1.amazonaws.com/123456789012/jobs.",
                pattern=URL_PATTERN,
                max_length=2048,
            ),
            "name": string(
                "Queue name (with region), instead of url.",
                pattern=QUEUE_NAME_PATTERN,
                max_length=80,
            ),
            "region": _region(),
            "roleArn": _role_arn(),
            "includeInFlight": boolean(
                "Count messages received but not yet deleted (being processed).", default=False
            ),
            "includeDelayed": boolean("Count delayed messages.", default=False),
            "backlogPerWorker": number(
                "Target messages per worker: desired = ceil(backlog / backlogPerWorker).",
                minimum=0,
                exclusive_minimum=True,
            ),
            "latency": obj(
                "Derive backlogPerWorker from a latency goal (the AWS recipe): "
                "backlogPerWorker = acceptableSeconds / secondsPerMessage.",
                {
                    "acceptableSeconds": number(
                        "How long a message may wait before it is processed.",
                        minimum=0,
                        exclusive_minimum=True,
                    ),
                    "secondsPerMessage": number(
                        "How long one worker takes per message (measured average).",
                        minimum=0,
                        exclusive_minimum=True,
                    ),
                },
                required=["acceptableSeconds", "secondsPerMessage"],
                rules=[
                    rule(
                        "self.acceptableSeconds >= self.secondsPerMessage",
                        "acceptableSeconds must be >= secondsPerMessage (a backlog of at least "
                        "one message per worker)",
                        lambda n: n["acceptableSeconds"] >= n["secondsPerMessage"],
                        field_path=".acceptableSeconds",
                    )
                ],
            ),
            "activationBacklog": number(
                "With minCapacity 0: scale from 0 to 1 only when the backlog is above this.",
                minimum=0,
                default=0,
            ),
            "staleAfterSeconds": integer(
                "A backlog reading older than this is unknown.",
                minimum=1,
                maximum=86400,
                default=300,
            ),
        },
        rules=[
            exactly_one(["url", "name"], "set exactly one of url or name (with region)"),
            rule(
                "!has(self.region) || has(self.name)",
                "region is only used with name (a URL already names its region)",
                lambda n: "region" not in n or "name" in n,
                field_path=".region",
                reason="FieldValueForbidden",
            ),
            exactly_one(
                ["backlogPerWorker", "latency"],
                "set exactly one of backlogPerWorker or latency",
            ),
        ],
    )


def _replica_template() -> JSON:
    return obj(
        "How new replicas (or Aurora readers) are created. Every replica the operator creates "
        "is tagged with the resource's uid and namespace/name; only those are ever deleted.",
        {
            "instanceClass": _aws_name(
                "DB instance class, for example db.r6g.large. Defaults to the source's class."
            ),
            "identifierPrefix": string(
                "Prefix of the new instances' identifiers; a short random suffix is added. "
                "Defaults to the source's identifier followed by '-ro-'.",
                pattern=r"^[a-zA-Z][a-zA-Z0-9-]{0,50}$",
                max_length=51,
            ),
            "availabilityZones": array(
                "Spread new replicas round-robin over these zones.",
                string(
                    "An availability zone, for example us-east-1a.",
                    pattern=r"^[a-z0-9-]+$",
                    max_length=32,
                ),
                max_items=10,
            ),
            "parameterGroupName": _aws_name(
                "DB parameter group of new replicas.", pattern=AWS_IDENTIFIER_PATTERN
            ),
            "promotionTier": integer(
                "Aurora only: failover priority of new readers (0-15).", minimum=0, maximum=15
            ),
            "tags": array(
                "Extra tags for new replicas.",
                obj(
                    "One tag.",
                    {
                        "key": _aws_name("Tag key.", 128),
                        "value": string("Tag value.", pattern=TEXT_PATTERN, max_length=256),
                    },
                    required=["key", "value"],
                ),
                max_items=40,
                map_keys=["key"],
            ),
        },
        default={},
    )


def _replica_target() -> JSON:
    return obj(
        "The database whose read capacity is scaled: an RDS source instance (DBInstance: its "
        "read replicas are the capacity) or an Aurora cluster (DBCluster: its readers are).",
        {
            "kind": string("Kind of the target.", enum=["DBInstance", "DBCluster"]),
            "name": _aws_name(
                "DB instance identifier of the source, or the cluster identifier: a letter, "
                "then letters, digits and single hyphens, no hyphen last.",
                63,
                pattern=AWS_IDENTIFIER_PATTERN,
            ),
            "engine": string(
                "DBInstance only: engine family of the source; decides the replica limit "
                "(15; 5 for Oracle and SQL Server).",
                enum=["mysql", "mariadb", "postgres", "oracle", "sqlserver"],
            ),
            "region": _region(),
            "roleArn": _role_arn(),
            "replicaTemplate": _replica_template(),
        },
        required=["kind", "name"],
        rules=[
            rule(
                "self.kind != 'DBInstance' || has(self.engine)",
                "engine is required for kind DBInstance",
                lambda n: n["kind"] != "DBInstance" or "engine" in n,
                field_path=".engine",
                reason="FieldValueRequired",
            ),
            only_when(["DBInstance"], ["engine"]),
        ],
    )


def _replication_group_id_rule() -> Rule:
    ident = python_regex(AWS_IDENTIFIER_PATTERN)
    return rule(
        "!has(self.name) || self.kind != 'ReplicationGroup' || "
        f"(size(self.name) <= 40 && self.name.matches('{AWS_IDENTIFIER_PATTERN}'))",
        "a replication group id has 1 to 40 letters, digits or hyphens: a letter first, "
        "no two hyphens in a row and no hyphen last",
        lambda n: (
            "name" not in n
            or n["kind"] != "ReplicationGroup"
            or (len(n["name"]) <= 40 and ident.search(n["name"]) is not None)
        ),
        field_path=".name",
    )


def _cache_target() -> JSON:
    return obj(
        "What to scale: the replicas per shard of an ElastiCache (Redis OSS / Valkey) "
        "replication group, or a StatefulSet in the resource's namespace.",
        {
            "kind": string("Kind of the target.", enum=["ReplicationGroup", "StatefulSet"]),
            "name": _aws_name(
                "Replication group id (1 to 40 letters, digits or hyphens, a letter first) or "
                "StatefulSet name (a DNS subdomain).",
                63,
                pattern=r"^[A-Za-z0-9]([-.A-Za-z0-9]*[A-Za-z0-9])?$",
            ),
            "nodeGroupId": string(
                "ReplicationGroup only: scale this shard only (default: every shard).",
                pattern=r"^[0-9]{4}$",
            ),
            "region": _region(),
            "roleArn": _role_arn(),
        },
        required=["kind", "name"],
        rules=[
            only_when(["ReplicationGroup"], ["nodeGroupId", "region", "roleArn"]),
            _replication_group_id_rule(),
            _workload_name_rule(),
        ],
    )


def _status(kind: str) -> JSON:
    condition = obj(
        "A condition in the Kubernetes convention.",
        {
            "type": string(
                "Ready, MetricsAvailable, ScalingLimited, Fallback, Paused, DryRun, "
                "OutOfBandChange or Conflict.",
                max_length=64,
            ),
            "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": string("CamelCase reason.", max_length=128),
            "message": string("Human-readable detail.", max_length=4096),
            "lastTransitionTime": string("When status last changed.", fmt="date-time"),
            "observedGeneration": integer("Generation the condition is about.", fmt="int64"),
        },
        required=["type", "status"],
    )
    metric_value = obj(
        "A metric's value and recommendation at the last decision.",
        {
            "name": string("Metric name.", max_length=63),
            "value": number("Observed value; absent when unknown."),
            "target": number("Target value."),
            "recommendation": integer("Capacity this metric asked for.", fmt="int64"),
            "state": string("Known, Unknown or Stale.", max_length=16),
            "time": string(
                "When the value was measured (its sample's time); absent when unknown.",
                fmt="date-time",
            ),
        },
        required=["name"],
    )
    return obj(
        "Observed state, written by the operator through the status subresource only.",
        {
            "observedGeneration": integer("Generation of the last reconciled spec.", fmt="int64"),
            "currentCapacity": integer("Capacity observed at the target.", fmt="int64"),
            "desiredCapacity": integer("Capacity the policy decided.", fmt="int64"),
            "startingCapacity": integer(
                "Units of currentCapacity that do not produce the metrics yet (launching, in "
                "warm-up, being created, not ready): capacity in flight, as of the last decision "
                "written.",
                fmt="int64",
            ),
            "leavingCapacity": integer(
                "Units being removed, not part of currentCapacity, as of the last decision "
                "written.",
                fmt="int64",
            ),
            "appliedCapacity": integer(
                "Capacity the operator last set at the target (a different current capacity "
                "means someone else changed it).",
                fmt="int64",
            ),
            "pendingAction": obj(
                "A scale action the operator is sending: written before the change goes to "
                "the target and removed once it is recorded, so that an operator restarted in "
                "between recognises its own action, keeps the cooldown and posts its Event.",
                {
                    "time": string("When the action was decided.", fmt="date-time"),
                    "from": integer("Capacity before the action.", fmt="int64"),
                    "to": integer("Capacity the action asks for.", fmt="int64"),
                    "headline": string("The decision's headline.", max_length=1024),
                },
                required=["time", "from", "to"],
            ),
            "lastScaleTime": string("Time of the last scale action.", fmt="date-time"),
            "lastScaleOutTime": string("Time of the last scale-out.", fmt="date-time"),
            "lastScaleInTime": string("Time of the last scale-in.", fmt="date-time"),
            "lastDecision": obj(
                "The last decision and why.",
                {
                    "time": string("When it was decided.", fmt="date-time"),
                    "direction": string("Out, In or None.", max_length=8),
                    "limitedBy": string("The rule that limited it, if any.", max_length=64),
                    "recommendation": integer(
                        "The capacity the metrics asked for, before stabilization, cooldowns, "
                        "rate limits and bounds (a tier source's Demand); absent while a metric "
                        "is unknown or the resource has no metric.",
                        fmt="int64",
                    ),
                    "reasons": array(
                        "Human-readable reasons.",
                        string("A reason.", max_length=1024),
                        max_items=32,
                    ),
                    "metrics": array("Per-metric values.", metric_value, max_items=11),
                },
            ),
            "history": obj(
                "Bounded state the policy needs across restarts (cooldowns, stabilization "
                "windows, rate-limit periods, consecutive metric failures). Owned by the policy.",
                {},
                preserve_unknown=True,
            ),
            "forecast": forecast_status_schema(),
            **({"decreases": table.decreases_status()} if kind == table.TABLE_KIND else {}),
            "conditions": array(
                "Ready, MetricsAvailable, ScalingLimited, Fallback, Paused, DryRun, "
                "OutOfBandChange, Conflict.",
                condition,
                max_items=16,
                map_keys=["type"],
            ),
        },
    )


KINDS: dict[str, KindInfo] = {
    k.kind: k
    for k in (
        KindInfo(
            "WebTier",
            "webtiers",
            ("wt",),
            "A stateless web tier (EC2 Auto Scaling group or Deployment) kept on target by CPU, "
            "ALB RequestCountPerTarget, any CloudWatch metric or a PromQL query.",
            MAX_CAPACITY_LIMIT,
        ),
        KindInfo(
            "WorkerPool",
            "workerpools",
            ("wp",),
            "Workers (EC2 Auto Scaling group or Deployment) sized from an SQS queue's backlog: "
            "backlog per worker, or a latency goal.",
            MAX_CAPACITY_LIMIT,
        ),
        KindInfo(
            "ReadReplicaPool",
            "readreplicapools",
            ("rrp",),
            "RDS read replicas of a source instance (MySQL, MariaDB, PostgreSQL, Oracle, SQL "
            "Server) or Aurora readers, created from a template; only replicas the operator "
            "created are ever deleted, one at a time.",
            RDS_MAX_REPLICAS,
        ),
        KindInfo(
            "CachePool",
            "cachepools",
            ("cp",),
            "ElastiCache replication-group replicas per shard, or a StatefulSet.",
            MAX_CAPACITY_LIMIT,
        ),
        KindInfo(
            table.TABLE_KIND,
            "tablecapacities",
            ("tc",),
            "The provisioned read or write capacity units of a DynamoDB table or one of its "
            "global secondary indexes, kept at a target utilization of the consumed capacity "
            "and raised at once on throttling; decreases are spent within DynamoDB's daily "
            "budget.",
            table.TABLE_MAX_CAPACITY,
        ),
    )
}


def spec_schema(kind: str) -> JSON:
    """The OpenAPI schema of ``.spec`` for one kind."""
    info = KINDS[kind]
    props = _scaling_properties(info.max_capacity, metrics_min=None)
    implicit = {"WorkerPool": BACKLOG_METRIC, table.TABLE_KIND: table.CONSUMED_METRIC}
    rules = _scaling_rules(needs_metrics=kind not in implicit)
    rules.append(predictive_metric_rule(implicit.get(kind)))
    if kind == table.TABLE_KIND:
        target = table.table_target(_region(), _role_arn())
        props.update(table.table_capacity_properties(info.max_capacity))
        props["behavior"] = _behavior(table_capacity=True)
        props = {"targetUtilization": table.target_utilization(), **props}
        rules.append(table.reserved_metrics_rule())
    elif kind in ("WebTier", "WorkerPool"):
        target = _workload_or_asg_target()
    elif kind == "ReadReplicaPool":
        target = _replica_target()
        props["maxCapacity"]["description"] += (
            f" RDS allows at most {RDS_MAX_REPLICAS} read replicas per source "
            f"({RDS_MAX_REPLICAS_COMMERCIAL} for Oracle and SQL Server) and 15 Aurora readers."
        )
        rules.append(
            rule(
                "self.target.kind != 'DBInstance' || !has(self.target.engine) || "
                "!(self.target.engine in ['oracle', 'sqlserver']) || self.maxCapacity <= 5",
                "Oracle and SQL Server allow at most 5 read replicas: set maxCapacity <= 5",
                lambda n: (
                    n["target"].get("engine") not in ("oracle", "sqlserver")
                    or n["maxCapacity"] <= RDS_MAX_REPLICAS_COMMERCIAL
                ),
                field_path=".maxCapacity",
            )
        )
    else:
        target = _cache_target()
        rules.append(
            rule(
                "self.target.kind != 'ReplicationGroup' || self.maxCapacity <= 5",
                "ElastiCache allows at most 5 replicas per shard: set maxCapacity <= 5",
                lambda n: (
                    n["target"]["kind"] != "ReplicationGroup"
                    or n["maxCapacity"] <= ELASTICACHE_MAX_REPLICAS
                ),
                field_path=".maxCapacity",
            )
        )
    props = {
        "target": target,
        **props,
        "warmupSeconds": _warmup(target["properties"]["kind"]["enum"]),
    }
    required = ["target", "maxCapacity"]
    if kind == "WorkerPool":
        props = {
            "target": target,
            "queue": _queue(),
            **{k: v for k, v in props.items() if k != "target"},
        }
        required.append("queue")
        props["minCapacity"] = integer(
            "Lower bound of the capacity. 0 (the default for workers) scales to zero when the "
            "queue is empty; see queue.activationBacklog.",
            minimum=0,
            maximum=info.max_capacity,
            default=0,
        )
        rules.append(
            rule(
                "!has(self.metrics) || self.metrics.all(m, m.name != 'backlog')",
                "the metric name 'backlog' is reserved for the queue; rename the metric",
                lambda n: all(m.get("name") != BACKLOG_METRIC for m in n.get("metrics", ())),
                field_path=".metrics",
            )
        )
    return obj(
        f"Desired state of the {kind}: what to scale and how.",
        props,
        required=required,
        rules=rules,
    )


@cache
def resource_schema(kind: str) -> JSON:
    """The full openAPIV3Schema of one kind (cached: treat it as read-only)."""
    return obj(
        KINDS[kind].description,
        {
            "apiVersion": string("API version: stackscaler.dev/v1alpha1."),
            "kind": string(f"Kind: {kind}."),
            "metadata": {"type": "object"},
            "spec": spec_schema(kind),
            "status": _status(kind),
        },
        required=["spec"],
        rules=[_not_following_itself()],
    )


def _printer_columns() -> list[JSON]:
    return [
        {
            "name": "Target",
            "type": "string",
            "jsonPath": ".spec.target.name",
            "description": "Name of the scaled target.",
        },
        {
            "name": "Kind",
            "type": "string",
            "jsonPath": ".spec.target.kind",
            "priority": 1,
            "description": "Kind of the scaled target.",
        },
        {
            "name": "Min",
            "type": "integer",
            "jsonPath": ".spec.minCapacity",
            "description": "minCapacity.",
        },
        {
            "name": "Max",
            "type": "integer",
            "jsonPath": ".spec.maxCapacity",
            "description": "maxCapacity.",
        },
        {
            "name": "Current",
            "type": "integer",
            "jsonPath": ".status.currentCapacity",
            "description": "Capacity observed at the target.",
        },
        {
            "name": "Desired",
            "type": "integer",
            "jsonPath": ".status.desiredCapacity",
            "description": "Capacity the policy decided.",
        },
        {
            "name": "Mode",
            "type": "string",
            "jsonPath": ".spec.mode",
            "priority": 1,
            "description": "Active or DryRun.",
        },
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            "priority": 1,
            "description": "The Ready condition.",
        },
        {
            "name": "Last Scale",
            "type": "date",
            "jsonPath": ".status.lastScaleTime",
            "description": "Time of the last scale action.",
        },
        {
            "name": "Age",
            "type": "date",
            "jsonPath": ".metadata.creationTimestamp",
            "description": "Age of the resource.",
        },
    ]


def crd(kind: str) -> JSON:
    """The CustomResourceDefinition of one kind."""
    info = KINDS[kind]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{API_GROUP}",
            "labels": {
                "app.kubernetes.io/name": "stackscaler",
                "app.kubernetes.io/part-of": "stackscaler",
            },
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": info.plural,
                "singular": kind.lower(),
                "shortNames": list(info.short_names),
                "categories": ["stackscaler"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(),
                    "schema": {"openAPIV3Schema": resource_schema(kind)},
                }
            ],
        },
    }


def all_crds() -> dict[str, JSON]:
    """File name -> CRD, for every kind, in a stable order."""
    return {f"{API_GROUP}_{KINDS[k].plural}.yaml": crd(k) for k in KINDS}


# Build every schema at import, so RULE_CHECKS holds every rule before anyone asks.
for _kind in KINDS:
    resource_schema(_kind)
