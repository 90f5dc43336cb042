"""TableCapacity: the provisioned read or write capacity of a DynamoDB table or GSI.

The kind's own pieces of the API, kept out of :mod:`stackscaler.model.crds`
(which holds the shared scaling block and joins them in): the target schema,
the kind's defaults and rules, and the implicit metrics.

One resource scales one dimension, as Application Auto Scaling's scalable
dimensions do (``dynamodb:table:ReadCapacityUnits``,
``dynamodb:index:WriteCapacityUnits``, ...): a table's read and write
capacity, and each of its global secondary indexes, are separate resources.

Two implicit metrics, read from CloudWatch's ``AWS/DynamoDB`` namespace
(``TableName``, plus ``GlobalSecondaryIndexName`` for an index):

* ``consumed``: Consumed{Read|Write}CapacityUnits, the period's Sum divided by
  its seconds (units per second, what a provisioned unit serves), tracked as an
  AverageValue of ``targetUtilization`` / 100 per provisioned unit: desired =
  ceil(consumed / 0.70) at the default 70 %.
* ``throttles``: {Read|Write}ThrottleEvents, the period's Sum. DynamoDB
  publishes it only in minutes that have throttled events, so a period without
  a datapoint is 0 here (the one metric where missing is read as zero; an error
  reading it is still unknown). Marked ``throttle`` for the policy: above zero
  it scales out at once; on its own it never lowers the capacity.

Pure: no I/O.
"""

from __future__ import annotations

import enum

from stackscaler.model.schema import JSON, Rule, integer, number, obj, rule, string

TABLE_KIND = "TableCapacity"
TABLE_TARGET_KIND = "Table"
CONSUMED_METRIC = "consumed"
"""The implicit metric of consumed capacity units per second (reserved name)."""
THROTTLES_METRIC = "throttles"
"""The implicit metric of throttled read or write events per period (reserved name)."""
TABLE_METRICS = (CONSUMED_METRIC, THROTTLES_METRIC)
TABLE_MAX_CAPACITY = 40_000
"""DynamoDB's default per-table quota of read (and of write) capacity units."""
TARGET_UTILIZATION_DEFAULT = 70
"""Application Auto Scaling's default target for DynamoDB (%)."""
TARGET_UTILIZATION_MIN, TARGET_UTILIZATION_MAX = 20, 90
"""The range Application Auto Scaling accepts for DynamoDB target tracking (%)."""
TABLE_METRIC_PERIOD_SECONDS = 60
"""DynamoDB publishes consumed capacity and throttle events per minute."""
TABLE_METRIC_STALE_SECONDS = 300
TABLE_SCALE_IN_WINDOW_SECONDS = 900
"""Scale-in follows the highest recommendation of 15 minutes (AAS: 15 datapoints below)."""
TABLE_SCALE_OUT_WINDOW_SECONDS = 60
"""Scale-out follows the lowest recommendation of the last minute (AAS: 2 one-minute
datapoints above): one noisy minute does not buy capacity that costs a scarce decrease
to give back (python -m bench.table: 7.4% more RCU-hours than AAS with no window, 7.3%
fewer with 60 s). Throttling skips it (policy rule 3)."""
TABLE_NAME_PATTERN = r"^[a-zA-Z0-9_.-]{3,255}$"
"""DynamoDB table and index names: 3 to 255 of a-z, A-Z, 0-9, '_', '-' and '.'."""
DYNAMODB_NAMESPACE = "AWS/DynamoDB"


class TableDimension(enum.StrEnum):
    """Which provisioned throughput a TableCapacity scales."""

    READ = "Read"
    WRITE = "Write"

    @property
    def consumed_metric(self) -> str:
        return f"Consumed{self.value}CapacityUnits"

    @property
    def throttle_metric(self) -> str:
        return f"{self.value}ThrottleEvents"

    @property
    def units_field(self) -> str:
        """The ProvisionedThroughput field: ReadCapacityUnits or WriteCapacityUnits."""
        return f"{self.value}CapacityUnits"


def table_target(region: JSON, role_arn: JSON) -> JSON:
    """The ``spec.target`` of a TableCapacity (region and roleArn as every AWS target's)."""
    return obj(
        "What to scale: one dimension (read or write capacity units) of a DynamoDB table in "
        "provisioned mode, or of one of its global secondary indexes. A table's read and "
        "write capacity and each index are separate resources, as Application Auto "
        "Scaling's scalable dimensions.",
        {
            "kind": string("Kind of the target.", enum=[TABLE_TARGET_KIND]),
            "name": string(
                "Table name: 3 to 255 letters, digits, '_', '-' or '.'.",
                pattern=TABLE_NAME_PATTERN,
                min_length=3,
                max_length=255,
            ),
            "index": string(
                "A global secondary index of the table: scale the index's capacity instead of "
                "the table's (it has its own decrease budget).",
                pattern=TABLE_NAME_PATTERN,
                min_length=3,
                max_length=255,
            ),
            "dimension": string(
                "Read (ReadCapacityUnits) or Write (WriteCapacityUnits).",
                enum=[d.value for d in TableDimension],
            ),
            "region": region,
            "roleArn": role_arn,
        },
        required=["kind", "name", "dimension"],
    )


def target_utilization() -> JSON:
    return number(
        "Percent of the provisioned capacity units to keep consumed: the implicit metric "
        "'consumed' (consumed units per second, the minute's Sum / 60) is tracked at "
        "targetUtilization / 100 per provisioned unit (desired = ceil(consumed / 0.70) at "
        "the default). The range and default are Application Auto Scaling's for DynamoDB.",
        minimum=TARGET_UTILIZATION_MIN,
        maximum=TARGET_UTILIZATION_MAX,
        default=TARGET_UTILIZATION_DEFAULT,
    )


def reserved_metrics_rule() -> Rule:
    names = ", ".join(f"'{n}'" for n in TABLE_METRICS)
    return rule(
        "!has(self.metrics) || self.metrics.all(m, !(m.name in ["
        + ", ".join(f"'{n}'" for n in TABLE_METRICS)
        + "]))",
        f"the metric names {names} are reserved for the table's implicit metrics; rename "
        "the metric",
        lambda n: all(m.get("name") not in TABLE_METRICS for m in n.get("metrics", ())),
        field_path=".metrics",
    )


def decreases_status() -> JSON:
    return obj(
        "TableCapacity only: the decrease budget of the table (or index) as DynamoDB last "
        "reported it: 4 decreases at any time in a UTC day, plus one for each hour without "
        "a decrease, at most 27 a day.",
        {
            "today": integer("Decreases spent in the current UTC day.", fmt="int64"),
            "left": integer("Decreases that can be spent now.", fmt="int64"),
            "nextEarnedAt": string(
                "While no decrease is left: when the next one is earned (an hour after the "
                "last, or the next UTC midnight).",
                fmt="date-time",
            ),
        },
    )


def table_capacity_properties(max_capacity: int) -> dict[str, JSON]:
    """The TableCapacity's own bounds (DynamoDB's minimum is 1 unit)."""
    return {
        "minCapacity": integer(
            "Lower bound of the provisioned capacity units (DynamoDB's minimum is 1).",
            minimum=1,
            maximum=max_capacity,
            default=1,
        ),
        "maxCapacity": integer(
            f"Upper bound of the provisioned capacity units (the default account quota is "
            f"{TABLE_MAX_CAPACITY} per table and dimension).",
            minimum=1,
            maximum=max_capacity,
        ),
    }
