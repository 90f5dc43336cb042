"""Invalid documents, each with the field path and message the user must see.

Shared by the validation tests (messages) and the CRD tests (the CEL rules
and their Python twins agree on every one of them).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.conftest import DELETE, example, mutate


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], dict[str, Any]]
    path: str
    message: str
    offline_only: bool = False
    """Only the operator can check this (the API server accepts it)."""


def _m(kind: str, *changes: tuple[str, Any]) -> Callable[[], dict[str, Any]]:
    def make() -> dict[str, Any]:
        doc = example(kind)
        for path, value in changes:
            doc = mutate(doc, path, value)
        return doc

    return make


DEPLOYMENT = {"kind": "Deployment", "name": "web"}

CASES: list[Case] = [
    # --- types and bounds (OpenAPI) ---
    Case(
        "string-for-int",
        _m("WebTier", ("spec.minCapacity", "two")),
        "spec.minCapacity",
        "must be an integer, got string 'two'",
    ),
    Case(
        "negative-cooldown",
        _m("WebTier", ("spec.behavior.scaleIn.cooldownSeconds", -5)),
        "spec.behavior.scaleIn.cooldownSeconds",
        "must be >= 0, got -5",
    ),
    Case(
        "negative-min",
        _m("WebTier", ("spec.minCapacity", -1)),
        "spec.minCapacity",
        "must be >= 0, got -1",
    ),
    Case(
        "zero-max",
        _m("WebTier", ("spec.maxCapacity", 0)),
        "spec.maxCapacity",
        "must be >= 1, got 0",
    ),
    Case(
        "target-value-zero",
        _m("WebTier", ("spec.metrics[0].target.value", 0)),
        "spec.metrics[0].target.value",
        "must be > 0, got 0",
    ),
    Case(
        "tolerance-above-one",
        _m("WebTier", ("spec.tolerance", 1.5)),
        "spec.tolerance",
        "must be <= 1, got 1.5",
    ),
    Case(
        "scale-in-tolerance-negative",
        _m("WebTier", ("spec.behavior.scaleIn.tolerance", -0.1)),
        "spec.behavior.scaleIn.tolerance",
        "must be >= 0, got -0.1",
    ),
    Case(
        "bool-for-number",
        _m("WebTier", ("spec.tolerance", True)),
        "spec.tolerance",
        "must be a number, got boolean true",
    ),
    Case(
        "poll-too-fast",
        _m("WebTier", ("spec.pollIntervalSeconds", 1)),
        "spec.pollIntervalSeconds",
        "must be >= 5, got 1",
    ),
    Case(
        "negative-warmup",
        _m("WebTier", ("spec.warmupSeconds", -1)),
        "spec.warmupSeconds",
        "must be >= 0, got -1",
    ),
    Case(
        "warmup-over-an-hour",  # AWS's DefaultInstanceWarmup is 0-3600 too
        _m("ReadReplicaPool", ("spec.warmupSeconds", 3601)),
        "spec.warmupSeconds",
        "must be <= 3600, got 3601",
    ),
    Case(
        "warmup-with-unit",
        _m("CachePool", ("spec.warmupSeconds", "10m")),
        "spec.warmupSeconds",
        "must be an integer, got string '10m'",
    ),
    Case(
        "fractional-warmup",
        _m("WorkerPool", ("spec.warmupSeconds", 90.5)),
        "spec.warmupSeconds",
        "must be an integer",
    ),
    Case(
        "bad-mode",
        _m("WebTier", ("spec.mode", "dryrun")),
        "spec.mode",
        "must be one of Active, DryRun; got 'dryrun'; did you mean 'DryRun'?",
    ),
    Case(
        "bad-region",
        _m("WebTier", ("spec.target.region", "US East")),
        "spec.target.region",
        "does not match the pattern",
    ),
    Case(
        "metrics-not-list",
        _m("WebTier", ("spec.metrics", {"name": "cpu"})),
        "spec.metrics",
        "must be a list, got object",
    ),
    Case(
        "duplicate-metric",
        _m("WebTier", ("spec.metrics[1].name", "cpu")),
        "spec.metrics[1]",
        "duplicate entry with name='cpu'",
    ),
    Case(
        "bad-metric-name",
        _m("WebTier", ("spec.metrics[0].name", "CPU_Util")),
        "spec.metrics[0].name",
        "does not match the pattern",
    ),
    # --- unknown and missing fields ---
    Case(
        "unknown-field-typo",
        _m("WebTier", ("spec.behaviour", {})),
        "spec.behaviour",
        "unknown field 'behaviour'; did you mean 'behavior'?",
    ),
    Case(
        "unknown-nested-field",
        _m("WebTier", ("spec.behavior.scaleIn.coolDown", 5)),
        "spec.behavior.scaleIn.coolDown",
        "unknown field 'coolDown'",
    ),
    Case(
        "missing-target",
        _m("WebTier", ("spec.target", DELETE)),
        "spec.target",
        "required field is missing",
    ),
    Case(
        "missing-max",
        _m("WebTier", ("spec.maxCapacity", DELETE)),
        "spec.maxCapacity",
        "required field is missing",
    ),
    Case(
        "missing-target-name",
        _m("WebTier", ("spec.target.name", DELETE)),
        "spec.target.name",
        "required field is missing",
    ),
    Case(
        "bad-target-kind",
        _m("WebTier", ("spec.target.kind", "autoscalinggroup")),
        "spec.target.kind",
        "did you mean 'AutoScalingGroup'?",
    ),
    Case(
        "wrong-kind-for-pool",
        _m("WebTier", ("spec.target.kind", "DBInstance")),
        "spec.target.kind",
        "must be one of AutoScalingGroup, Deployment, StatefulSet",
    ),
    # --- cross-field rules (CEL) ---
    Case(
        "min-above-max",
        _m("WebTier", ("spec.minCapacity", 50)),
        "spec.minCapacity",
        "minCapacity (50) must be <= maxCapacity (40)",
    ),
    Case(
        "two-sources",
        _m("WebTier", ("spec.metrics[1].cloudWatch", {"namespace": "A", "metricName": "B"})),
        "spec.metrics[1]",
        "set exactly one metric source",
    ),
    Case(
        "no-source",
        _m("WebTier", ("spec.metrics[0].cloudWatch", DELETE)),
        "spec.metrics[0]",
        "set exactly one metric source",
    ),
    Case(
        "target-and-steps",
        _m(
            "WebTier",
            ("spec.metrics[0].stepScaling", {"steps": [{"lowerBound": 80, "adjustment": 1}]}),
        ),
        "spec.metrics[0]",
        "set exactly one of target (target tracking) or stepScaling",
    ),
    Case(
        "metricname-and-expression",
        _m("WebTier", ("spec.metrics[0].cloudWatch.expression", "m1 * 2")),
        "spec.metrics[0].cloudWatch",
        "set exactly one of metricName",
    ),
    Case(
        "cw-metric-without-namespace",
        _m("WebTier", ("spec.metrics[0].cloudWatch.namespace", DELETE)),
        "spec.metrics[0].cloudWatch.namespace",
        "namespace is required with metricName",
    ),
    Case(
        "cw-queries-without-expression",
        _m(
            "WebTier",
            (
                "spec.metrics[0].cloudWatch.queries",
                [{"id": "m1", "namespace": "AWS/EC2", "metricName": "CPUUtilization"}],
            ),
        ),
        "spec.metrics[0].cloudWatch.queries",
        "queries are only used by an expression",
    ),
    Case(
        "cw-period",
        _m("WebTier", ("spec.metrics[0].cloudWatch.periodSeconds", 90)),
        "spec.metrics[0].cloudWatch.periodSeconds",
        "must be 1, 5, 10, 30 or a multiple of 60",
    ),
    Case(
        "region-on-deployment",
        _m("WebTier", ("spec.target", {**DEPLOYMENT, "region": "us-east-1"})),
        "spec.target",
        "apply only to target kind AutoScalingGroup",
    ),
    Case(
        "fallback-needs-capacity",
        _m("WebTier", ("spec.onMetricsUnavailable.fallbackCapacity", DELETE)),
        "spec.onMetricsUnavailable.fallbackCapacity",
        "fallbackCapacity is required",
    ),
    Case(
        "fallback-out-of-bounds",
        _m("WebTier", ("spec.onMetricsUnavailable.fallbackCapacity", 1)),
        "spec.onMetricsUnavailable.fallbackCapacity",
        "within [minCapacity, maxCapacity]",
    ),
    Case(
        "schedule-without-bounds",
        _m("WebTier", ("spec.schedules[0].minCapacity", DELETE)),
        "spec.schedules[0]",
        "must set minCapacity, maxCapacity or both",
    ),
    Case(
        "schedule-min-above-max",
        _m("WebTier", ("spec.schedules[0].minCapacity", 41)),
        "spec.schedules",
        "a schedule's minCapacity must be <= its maxCapacity",
    ),
    Case(
        "schedule-own-min-above-own-max",
        _m("WebTier", ("spec.schedules[0].minCapacity", 10), ("spec.schedules[0].maxCapacity", 5)),
        "spec.schedules[0].minCapacity",
        "minCapacity must be <= maxCapacity",
    ),
    Case(
        "max-step-empty",
        _m("WebTier", ("spec.behavior.scaleIn.maxStep", {"periodSeconds": 60})),
        "spec.behavior.scaleIn.maxStep",
        "set units, percent or both",
    ),
    Case(
        "no-metrics-no-schedules",
        _m("WebTier", ("spec.metrics", DELETE), ("spec.schedules", DELETE)),
        "spec.metrics",
        "set at least one metric or schedule",
    ),
    Case(
        "step-bounds-reversed",
        _m(
            "WebTier",
            ("spec.metrics[0].target", DELETE),
            (
                "spec.metrics[0].stepScaling",
                {"steps": [{"lowerBound": 80, "upperBound": 70, "adjustment": 1}]},
            ),
        ),
        "spec.metrics[0].stepScaling.steps[0].lowerBound",
        "lowerBound must be < upperBound",
    ),
    Case(
        "ceiling-on-average-value",
        _m(
            "WebTier",
            ("spec.metrics[0].target", {"type": "AverageValue", "value": 100, "ceiling": 1000}),
        ),
        "spec.metrics[0].target.ceiling",
        "ceiling applies to a Value target and must be greater than value",
    ),
    Case(
        "ceiling-not-above-target",
        _m("WebTier", ("spec.metrics[0].target", {"type": "Value", "value": 90, "ceiling": 90})),
        "spec.metrics[0].target.ceiling",
        "ceiling applies to a Value target and must be greater than value",
    ),
    Case(
        "queue-url-and-name",
        _m("WorkerPool", ("spec.queue.url", "https://sqs.us-east-1.amazonaws.com/1/jobs")),
        "spec.queue",
        "set exactly one of url or name",
    ),
    Case(
        "queue-region-with-url",
        _m(
            "WorkerPool",
            ("spec.queue.name", DELETE),
            ("spec.queue.url", "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"),
        ),
        "spec.queue.region",
        "region is only used with name",
    ),
    Case(
        "queue-both-targets",
        _m("WorkerPool", ("spec.queue.backlogPerWorker", 100)),
        "spec.queue",
        "set exactly one of backlogPerWorker or latency",
    ),
    Case(
        "queue-no-target",
        _m("WorkerPool", ("spec.queue.latency", DELETE)),
        "spec.queue",
        "set exactly one of backlogPerWorker or latency",
    ),
    Case(
        "latency-below-message-time",
        _m("WorkerPool", ("spec.queue.latency.acceptableSeconds", 0.05)),
        "spec.queue.latency.acceptableSeconds",
        "acceptableSeconds must be >= secondsPerMessage",
    ),
    Case(
        "reserved-backlog-name",
        _m(
            "WorkerPool",
            (
                "spec.metrics",
                [
                    {
                        "name": "backlog",
                        "target": {"value": 1},
                        "prometheus": {"serverAddress": "http://p:9090", "query": "up"},
                    }
                ],
            ),
        ),
        "spec.metrics",
        "the metric name 'backlog' is reserved",
    ),
    Case(
        "missing-queue",
        _m("WorkerPool", ("spec.queue", DELETE)),
        "spec.queue",
        "required field is missing",
    ),
    Case(
        "rds-too-many-replicas",
        _m("ReadReplicaPool", ("spec.maxCapacity", 16)),
        "spec.maxCapacity",
        "must be <= 15, got 16",
    ),
    Case(
        "rds-oracle-limit",
        _m("ReadReplicaPool", ("spec.target.engine", "oracle"), ("spec.maxCapacity", 6)),
        "spec.maxCapacity",
        "Oracle and SQL Server allow at most 5 read replicas",
    ),
    Case(
        "rds-missing-engine",
        _m("ReadReplicaPool", ("spec.target.engine", DELETE)),
        "spec.target.engine",
        "engine is required for kind DBInstance",
    ),
    Case(
        "aurora-with-engine",
        _m("ReadReplicaPool", ("spec.target.kind", "DBCluster")),
        "spec.target",
        "engine apply only to target kind DBInstance",
    ),
    Case(
        "rds-bad-engine",
        _m("ReadReplicaPool", ("spec.target.engine", "aurora")),
        "spec.target.engine",
        "must be one of mysql, mariadb, postgres, oracle, sqlserver",
    ),
    Case(
        "elasticache-replica-limit",
        _m("CachePool", ("spec.maxCapacity", 6)),
        "spec.maxCapacity",
        "ElastiCache allows at most 5 replicas per shard",
    ),
    Case(
        "statefulset-with-node-group",
        _m(
            "CachePool",
            ("spec.target", {"kind": "StatefulSet", "name": "c", "nodeGroupId": "0001"}),
        ),
        "spec.target",
        "apply only to target kind ReplicationGroup",
    ),
    # --- semantic checks (beyond CEL) ---
    Case(
        "bad-cron",
        _m("WebTier", ("spec.schedules[0].cron", "0 25 * * *")),
        "spec.schedules[0].cron",
        "hour field '25': value 25 out of range 0-23",
    ),
    Case(
        "cron-wrong-fields",
        _m("WebTier", ("spec.schedules[0].cron", "0 8 * *")),
        "spec.schedules[0].cron",
        "expected 5 fields",
    ),
    Case(
        "bad-timezone",
        _m("WebTier", ("spec.schedules[0].timeZone", "Mars/Olympus_Mons")),
        "spec.schedules[0].timeZone",
        "unknown time zone 'Mars/Olympus_Mons'",
    ),
    Case(
        "overlapping-steps",
        _m(
            "WebTier",
            ("spec.metrics[0].target", DELETE),
            (
                "spec.metrics[0].stepScaling",
                {
                    "steps": [
                        {"lowerBound": 70, "upperBound": 90, "adjustment": 1},
                        {"lowerBound": 80, "adjustment": 2},
                    ]
                },
            ),
        ),
        "spec.metrics[0].stepScaling.steps[1]",
        "overlaps band",
    ),
    # --- document level ---
    Case(
        "bad-api-version",
        _m("WebTier", ("apiVersion", "stackscaler.dev/v1")),
        "apiVersion",
        "must be stackscaler.dev/v1alpha1",
    ),
    Case(
        "missing-name",
        _m("WebTier", ("metadata.name", DELETE)),
        "metadata.name",
        "required field is missing",
    ),
]

CASES.append(
    Case(
        "stale-shorter-than-period",
        _m(
            "WebTier",
            ("spec.metrics[0].cloudWatch.periodSeconds", 300),
            ("spec.metrics[0].staleAfterSeconds", 120),
        ),
        "spec.metrics[0].staleAfterSeconds",
        "staleAfterSeconds must be >= cloudWatch.periodSeconds",
    )
)

# --- names and addresses that reach logs, Events and AWS calls (log injection) ---
# A newline and a right-to-left override in a target name forged an ERROR line in the
# text log (issue 10, finding 6): every name has a pattern now, the same on both sides.
FORGED = "web\n2026-11-26T12:00:00.000Z ERROR   stackscaler: \u202eforged"
_PATTERN = "does not match the pattern"
CASES += [
    Case(
        "asg-name-log-injection",
        _m("WebTier", ("spec.target.name", FORGED)),
        "spec.target.name",
        _PATTERN,
    ),
    # Python's `$` also matches before a final newline; RE2's (the API server's) does not
    Case(
        "asg-name-trailing-newline",
        _m("WebTier", ("spec.target.name", "shop-web\n")),
        "spec.target.name",
        _PATTERN,
    ),
    Case(
        "asg-name-colon",  # AWS: ASCII 33-126 but ':'
        _m("WorkerPool", ("spec.target.name", "shop:workers")),
        "spec.target.name",
        _PATTERN,
    ),
    Case(
        "deployment-name-not-dns",
        _m("WebTier", ("spec.target", {"kind": "Deployment", "name": "Web_App"})),
        "spec.target.name",
        "a Deployment or StatefulSet name must be a DNS subdomain",
    ),
    Case(
        "statefulset-name-not-dns",
        _m("CachePool", ("spec.target", {"kind": "StatefulSet", "name": "Sessions"})),
        "spec.target.name",
        "a Deployment or StatefulSet name must be a DNS subdomain",
    ),
    Case(
        "db-identifier-double-hyphen",  # AWS: a letter first, no '--', no trailing '-'
        _m("ReadReplicaPool", ("spec.target.name", "shop--db")),
        "spec.target.name",
        _PATTERN,
    ),
    Case(
        "db-cluster-identifier-bidi",
        _m(
            "ReadReplicaPool",
            ("spec.target.kind", "DBCluster"),
            ("spec.target.engine", DELETE),
            ("spec.target.name", "analytics\u202e"),
        ),
        "spec.target.name",
        _PATTERN,
    ),
    Case(
        "replication-group-id-too-long",  # AWS: 1-40 characters
        _m("CachePool", ("spec.target.name", "s" * 41)),
        "spec.target.name",
        "a replication group id has 1 to 40 letters, digits or hyphens",
    ),
    Case(
        "replication-group-id-control",
        _m("CachePool", ("spec.target.name", "shop-sessions\x1b[2J")),
        "spec.target.name",
        _PATTERN,
    ),
    Case(
        "queue-name-newline",
        _m("WorkerPool", ("spec.queue.name", "shop-jobs\nERROR")),
        "spec.queue.name",
        _PATTERN,
    ),
    Case(
        "queue-url-bidi",
        _m(
            "WorkerPool",
            ("spec.queue.name", DELETE),
            ("spec.queue.region", DELETE),
            ("spec.queue.url", "https://sqs.us-east-1.amazonaws.com/123456789012/jobs\u202e"),
        ),
        "spec.queue.url",
        _PATTERN,
    ),
    Case(
        "prometheus-address-nbsp",  # Python's \s is Unicode, RE2's ASCII: now one class
        _m("WebTier", ("spec.metrics[1].prometheus.serverAddress", "http://p:9090/\u00a0x")),
        "spec.metrics[1].prometheus.serverAddress",
        _PATTERN,
    ),
    Case(
        "cw-namespace-control",
        _m("WebTier", ("spec.metrics[0].cloudWatch.namespace", "AWS/EC2\r")),
        "spec.metrics[0].cloudWatch.namespace",
        _PATTERN,
    ),
    Case(
        "cw-metric-name-bidi",
        _m("WebTier", ("spec.metrics[0].cloudWatch.metricName", "CPU\u2066Utilization")),
        "spec.metrics[0].cloudWatch.metricName",
        _PATTERN,
    ),
    Case(
        "cw-dimension-name-colon",  # AWS: cannot start with ':'
        _m("WebTier", ("spec.metrics[0].cloudWatch.dimensions[0].name", ":AutoScalingGroupName")),
        "spec.metrics[0].cloudWatch.dimensions[0].name",
        _PATTERN,
    ),
    Case(
        "cw-dimension-value-injection",
        _m("WebTier", ("spec.metrics[0].cloudWatch.dimensions[0].value", FORGED)),
        "spec.metrics[0].cloudWatch.dimensions[0].value",
        _PATTERN,
    ),
    Case(
        "cw-dimension-value-blank",  # AWS: at least one non-whitespace character
        _m("WebTier", ("spec.metrics[0].cloudWatch.dimensions[0].value", "   ")),
        "spec.metrics[0].cloudWatch.dimensions[0].value",
        _PATTERN,
    ),
    Case(
        "role-arn-bidi",
        _m("WebTier", ("spec.target.roleArn", "arn:aws:iam::123456789012:role/web\u202e")),
        "spec.target.roleArn",
        _PATTERN,
    ),
    Case(
        "role-arn-bad-role-name",  # IAM: role names are [A-Za-z0-9_+=,.@-]{1,64}
        _m("WebTier", ("spec.target.roleArn", "arn:aws:iam::123456789012:role/web tier")),
        "spec.target.roleArn",
        _PATTERN,
    ),
    Case(
        "replica-tag-value-newline",
        _m(
            "ReadReplicaPool",
            ("spec.target.replicaTemplate.tags", [{"key": "team", "value": "shop\nERROR"}]),
        ),
        "spec.target.replicaTemplate.tags[0].value",
        _PATTERN,
    ),
]

# --- tier sources (another resource of the same namespace) ---
TIER = {"kind": "WebTier", "name": "web", "value": "Metric", "metric": "requests-per-minute"}
CASES += [
    Case(
        "tier-metric-missing",
        _m(
            "CachePool",
            ("spec.metrics[0].cloudWatch", DELETE),
            ("spec.metrics[0].tier", {k: v for k, v in TIER.items() if k != "metric"}),
        ),
        "spec.metrics[0].tier.metric",
        "metric is required with value Metric",
    ),
    Case(
        "tier-metric-forbidden",
        _m(
            "CachePool",
            ("spec.metrics[0].cloudWatch", DELETE),
            ("spec.metrics[0].tier", {**TIER, "value": "DesiredCapacity"}),
        ),
        "spec.metrics[0].tier.metric",
        "metric is only used with value Metric",
    ),
    Case(
        "tier-and-cloudwatch",
        _m("CachePool", ("spec.metrics[0].tier", TIER)),
        "spec.metrics[0]",
        "set exactly one metric source: cloudWatch, prometheus or tier",
    ),
    Case(
        "tier-follows-itself",
        _m(
            "WebTier",
            ("spec.metrics[1].prometheus", DELETE),
            ("spec.metrics[1].tier", {**TIER, "metric": "cpu"}),
        ),
        "spec.metrics",
        "a tier source must not name the resource itself",
    ),
    Case(
        "tier-name-log-injection",
        _m(
            "CachePool",
            ("spec.metrics[0].cloudWatch", DELETE),
            ("spec.metrics[0].tier", {**TIER, "name": FORGED}),
        ),
        "spec.metrics[0].tier.name",
        _PATTERN,
    ),
    Case(
        "tier-unknown-kind",
        _m(
            "CachePool",
            ("spec.metrics[0].cloudWatch", DELETE),
            ("spec.metrics[0].tier", {**TIER, "kind": "Deployment"}),
        ),
        "spec.metrics[0].tier.kind",
        "must be one of WebTier, WorkerPool, ReadReplicaPool, CachePool",
    ),
    Case(
        "tier-value-unknown",
        _m(
            "CachePool",
            ("spec.metrics[0].cloudWatch", DELETE),
            ("spec.metrics[0].tier", {**TIER, "value": "demand"}),
        ),
        "spec.metrics[0].tier.value",
        "did you mean 'Demand'?",
    ),
]

# --- spec.predictive (issue 14) ---
_FORECAST = {"mode": "ForecastOnly", "metric": "cpu"}
CASES += [
    Case(
        "predictive-bad-mode",
        _m("WebTier", ("spec.predictive", {**_FORECAST, "mode": "forecastonly"})),
        "spec.predictive.mode",
        "must be one of ForecastOnly, ForecastAndScale; got 'forecastonly'; "
        "did you mean 'ForecastOnly'?",
    ),
    Case(
        "predictive-missing-metric",
        _m("WebTier", ("spec.predictive", {"mode": "ForecastAndScale"})),
        "spec.predictive.metric",
        "required field is missing",
    ),
    Case(
        "predictive-unknown-metric",
        _m("WebTier", ("spec.predictive", {**_FORECAST, "metric": "cpux"})),
        "spec.predictive.metric",
        "predictive.metric 'cpux' is not a target-tracking metric of this resource; use one "
        "of: cpu, requests-per-minute",
    ),
    Case(
        "predictive-step-scaling-metric",
        _m(
            "WebTier",
            ("spec.metrics[0].target", DELETE),
            ("spec.metrics[0].stepScaling", {"steps": [{"lowerBound": 80, "adjustment": 2}]}),
            ("spec.predictive", _FORECAST),
        ),
        "spec.predictive.metric",
        "predictive.metric 'cpu' is not a target-tracking metric of this resource; use one "
        "of: requests-per-minute",
    ),
    Case(
        "predictive-metric-injection",
        _m("WebTier", ("spec.predictive", {**_FORECAST, "metric": "cpu\nERROR forged"})),
        "spec.predictive.metric",
        "does not match the pattern",
    ),
    Case(
        "predictive-history-too-long",
        _m(
            "CachePool",
            ("spec.predictive", {**_FORECAST, "metric": "engine-cpu", "historyDays": 15}),
        ),
        "spec.predictive.historyDays",
        "must be <= 14, got 15",
    ),
    Case(
        "predictive-history-too-short",
        _m("WebTier", ("spec.predictive", {**_FORECAST, "historyDays": 1})),
        "spec.predictive.historyDays",
        "must be >= 2, got 1",
    ),
    Case(
        "predictive-lead-too-long",
        _m("WebTier", ("spec.predictive", {**_FORECAST, "leadSeconds": 3601})),
        "spec.predictive.leadSeconds",
        "must be <= 3600, got 3601",
    ),
    Case(
        "predictive-refresh-not-multiple",
        _m("WebTier", ("spec.predictive", {**_FORECAST, "refreshSeconds": 1000})),
        "spec.predictive.refreshSeconds",
        "refreshSeconds must be a multiple of 300",
    ),
    Case(
        "predictive-refresh-too-often",
        _m("WebTier", ("spec.predictive", {**_FORECAST, "refreshSeconds": 60})),
        "spec.predictive.refreshSeconds",
        "must be >= 300, got 60",
    ),
    Case(
        "predictive-max-error-zero",
        _m("WebTier", ("spec.predictive", {**_FORECAST, "maxError": 0})),
        "spec.predictive.maxError",
        "must be > 0, got 0",
    ),
    Case(
        "predictive-unknown-field",
        _m("WebTier", ("spec.predictive", {**_FORECAST, "minSkil": 0})),
        "spec.predictive.minSkil",
        "unknown field 'minSkil'",
    ),
    Case(
        "predictive-workers-unknown-metric",
        _m("WorkerPool", ("spec.predictive", {**_FORECAST, "metric": "queue"})),
        "spec.predictive.metric",
        "predictive.metric 'queue' is not a target-tracking metric of this resource; use one "
        "of: backlog",
    ),
    Case(
        "predictive-metrics-insights",
        _m(
            "ReadReplicaPool",
            (
                "spec.metrics[0].cloudWatch",
                {
                    "expression": 'SELECT AVG(CPUUtilization) FROM SCHEMA("AWS/RDS", '
                    "DBInstanceIdentifier)",
                    "periodSeconds": 60,
                },
            ),
            ("spec.predictive", {**_FORECAST, "metric": "replica-cpu"}),
        ),
        "spec.predictive.metric",
        "metric 'replica-cpu' is a Metrics Insights query (SELECT)",
    ),
]

# --- TableCapacity (issue 15): DynamoDB provisioned capacity ---
TABLE: dict[str, Any] = {
    "apiVersion": "stackscaler.dev/v1alpha1",
    "kind": "TableCapacity",
    "metadata": {"name": "sessions-read", "namespace": "shop"},
    "spec": {
        "target": {
            "kind": "Table",
            "name": "shop-sessions",
            "dimension": "Read",
            "region": "us-east-1",
        },
        "minCapacity": 5,
        "maxCapacity": 4000,
    },
}


def _t(*changes: tuple[str, Any]) -> Callable[[], dict[str, Any]]:
    def make() -> dict[str, Any]:
        doc = copy.deepcopy(TABLE)
        for path, value in changes:
            doc = mutate(doc, path, value)
        return doc

    return make


_CPU = {
    "name": "consumed",
    "cloudWatch": {"namespace": "AWS/DynamoDB", "metricName": "ReturnedItemCount"},
    "target": {"type": "AverageValue", "value": 100},
}
CASES += [
    Case(
        "table-reserved-metric",
        _t(("spec.metrics", [_CPU])),
        "spec.metrics",
        "the metric names 'consumed', 'throttles' are reserved for the table's implicit metrics",
    ),
    Case(
        "table-predictive-unknown-metric",
        _t(("spec.predictive", {**_FORECAST, "metric": "reads"})),
        "spec.predictive.metric",
        "predictive.metric 'reads' is not a target-tracking metric of this resource; use one "
        "of: consumed",
    ),
    Case(
        "table-dimension-case",
        _t(("spec.target.dimension", "read")),
        "spec.target.dimension",
        "must be one of Read, Write; got 'read'; did you mean 'Read'?",
    ),
    Case(
        "table-name-injection",
        _t(("spec.target.name", FORGED)),
        "spec.target.name",
        _PATTERN,
    ),
    Case(
        "table-index-too-short",
        _t(("spec.target.index", "ix")),
        "spec.target.index",
        "at least 3",
    ),
    Case(
        "table-over-quota",
        _t(("spec.maxCapacity", 40001)),
        "spec.maxCapacity",
        "must be <= 40000, got 40001",
    ),
    Case(
        "table-min-zero",
        _t(("spec.minCapacity", 0)),
        "spec.minCapacity",
        "must be >= 1, got 0",
    ),
    Case(
        "table-utilization-above-aas",
        _t(("spec.targetUtilization", 95)),
        "spec.targetUtilization",
        "must be <= 90, got 95",
    ),
    Case(
        "table-unknown-target-kind",
        _t(("spec.target.kind", "GlobalTable")),
        "spec.target.kind",
        "must be one of Table",
    ),
]

# Checks only the operator's model makes (the API server accepts these documents).
OFFLINE_ONLY = {
    "bad-cron",
    "cron-wrong-fields",
    "bad-timezone",
    "overlapping-steps",
    "predictive-metrics-insights",
}
CASES = [Case(c.id, c.make, c.path, c.message, c.id in OFFLINE_ONLY) for c in CASES]
