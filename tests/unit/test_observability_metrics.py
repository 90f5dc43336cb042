"""OperatorMetrics series and labels, and the JSON/text log formats."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry

from stackscaler import __version__
from stackscaler.aws.clients import CallHook
from stackscaler.aws.ratelimit import RateLimit, RateLimiters
from stackscaler.errors import (
    AccessDenied,
    InvalidSpec,
    MetricStale,
    MetricUnavailable,
    PermanentError,
    TargetNotFound,
    TemporaryError,
    Throttled,
)
from stackscaler.observability import OperatorMetrics, configure_logging
from stackscaler.observability.metrics import ERROR_CLASSES
from stackscaler.policy import (
    Decision,
    Direction,
    History,
    Limit,
    MetricObservation,
    Observations,
    decide,
)
from tests.unit.policy_helpers import NOW, metric, obs, scaling

RES = {"kind": "WebTier", "namespace": "shop", "name": "web"}
OTHER = {"kind": "WebTier", "namespace": "shop", "name": "api"}
ARGS = ("WebTier", "shop", "web")

THREE = scaling(
    [metric("cpu", 50), metric("rps", 100, "AverageValue"), metric("latency", 0.2)],
    max_capacity=5,
)


@pytest.fixture
def m() -> OperatorMetrics:
    return OperatorMetrics()


def val(m: OperatorMetrics, name: str, /, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def per_metric(metric_name: str) -> dict[str, str]:
    return {**RES, "metric": metric_name}


def series_of(registry: CollectorRegistry, labels: dict[str, str]) -> list[str]:
    """Every sample (name and labels) whose labels include ``labels``."""
    return [
        f"{s.name}{s.labels}"
        for family in registry.collect()
        for s in family.samples
        if labels.items() <= s.labels.items()
    ]


def three(current: int, **values: float | None) -> Decision:
    return decide(THREE, obs(current, **values), History(), NOW)


# --- record_decision -------------------------------------------------------------------


def test_record_decision_sets_capacities_bounds_and_metric_series(m: OperatorMetrics) -> None:
    d = three(3, cpu=300, rps=50, latency=0.1)  # cpu asks 18, max 5
    assert (d.desired, d.limited_by) == (5, Limit.MAX_CAPACITY)
    m.record_decision(*ARGS, d)

    assert val(m, "stackscaler_capacity_current", **RES) == 3
    assert val(m, "stackscaler_capacity_desired", **RES) == 5
    assert val(m, "stackscaler_capacity_min", **RES) == 1
    assert val(m, "stackscaler_capacity_max", **RES) == 5
    assert val(m, "stackscaler_metric_value", **per_metric("cpu")) == 300
    assert val(m, "stackscaler_metric_value", **per_metric("rps")) == 50
    assert val(m, "stackscaler_metric_value", **per_metric("latency")) == 0.1
    assert val(m, "stackscaler_metric_target", **per_metric("cpu")) == 50
    assert val(m, "stackscaler_metric_target", **per_metric("rps")) == 100
    for name in ("cpu", "rps", "latency"):
        assert val(m, "stackscaler_metric_known", **per_metric(name)) == 1
    assert (
        val(m, "stackscaler_decisions_total", **RES, direction="Out", limited_by="maxCapacity") == 1
    )


def test_capacity_in_flight_follows_each_decision(m: OperatorMetrics) -> None:
    spec = scaling([metric("cpu", 50)], max_capacity=20)
    # 6 units, 2 of them starting (the 4 ready ones carry the load), 1 being removed
    starting = Observations(6, {"cpu": MetricObservation(50.0)}, starting=2, leaving=1)
    m.record_decision(*ARGS, decide(spec, starting, History(), NOW))
    assert val(m, "stackscaler_capacity_current", **RES) == 6
    assert val(m, "stackscaler_capacity_starting", **RES) == 2
    assert val(m, "stackscaler_capacity_leaving", **RES) == 1
    settled = Observations(6, {"cpu": MetricObservation(50.0)})
    m.record_decision(*ARGS, decide(spec, settled, History(), NOW))
    assert val(m, "stackscaler_capacity_starting", **RES) == 0  # known to be none: 0, kept
    assert val(m, "stackscaler_capacity_leaving", **RES) == 0


def test_decisions_are_counted_by_direction_and_limit(m: OperatorMetrics) -> None:
    m.record_decision(*ARGS, three(3, cpu=300, rps=50, latency=0.1))
    m.record_decision(*ARGS, three(3, cpu=300, rps=50, latency=0.1))
    m.record_decision(*ARGS, three(4, cpu=50, rps=50, latency=0.1))  # on target: no change
    out_limited = {**RES, "direction": "Out", "limited_by": "maxCapacity"}
    unchanged = {**RES, "direction": "None", "limited_by": "none"}
    assert val(m, "stackscaler_decisions_total", **out_limited) == 2
    assert val(m, "stackscaler_decisions_total", **unchanged) == 1
    assert val(m, "stackscaler_capacity_current", **RES) == 4  # gauges follow the last one


def test_unknown_metric_loses_its_value_series_and_is_marked_unknown(
    m: OperatorMetrics,
) -> None:
    m.record_decision(*ARGS, three(3, cpu=90, rps=50, latency=0.1))
    assert val(m, "stackscaler_metric_value", **per_metric("rps")) == 50

    m.record_decision(*ARGS, three(3, cpu=90, rps=None, latency=0.1))
    assert val(m, "stackscaler_metric_value", **per_metric("rps")) is None  # missing, not 0
    assert val(m, "stackscaler_metric_known", **per_metric("rps")) == 0
    assert val(m, "stackscaler_metric_target", **per_metric("rps")) == 100
    # the other metrics are untouched
    assert val(m, "stackscaler_metric_value", **per_metric("cpu")) == 90
    assert val(m, "stackscaler_metric_known", **per_metric("cpu")) == 1

    m.record_decision(*ARGS, three(3, cpu=90, rps=70, latency=0.1))
    assert val(m, "stackscaler_metric_value", **per_metric("rps")) == 70
    assert val(m, "stackscaler_metric_known", **per_metric("rps")) == 1


def test_unknown_from_the_start_has_no_value_series(m: OperatorMetrics) -> None:
    m.record_decision(*ARGS, three(3, cpu=None, rps=None, latency=None))
    for name in ("cpu", "rps", "latency"):
        assert val(m, "stackscaler_metric_value", **per_metric(name)) is None
        assert val(m, "stackscaler_metric_known", **per_metric(name)) == 0


def test_stale_metric_is_unknown_too(m: OperatorMetrics) -> None:
    spec = scaling([metric("cpu", 50)])
    fresh = Observations(3, {"cpu": MetricObservation(90, NOW)})
    m.record_decision(*ARGS, decide(spec, fresh, History(), NOW))
    assert val(m, "stackscaler_metric_value", **per_metric("cpu")) == 90

    old = Observations(3, {"cpu": MetricObservation(90, NOW - timedelta(days=1))})
    m.record_decision(*ARGS, decide(spec, old, History(), NOW))
    assert val(m, "stackscaler_metric_value", **per_metric("cpu")) is None
    assert val(m, "stackscaler_metric_known", **per_metric("cpu")) == 0


def test_metric_dropped_from_the_spec_loses_all_its_series(m: OperatorMetrics) -> None:
    m.record_decision(*ARGS, three(3, cpu=90, rps=50, latency=0.1))
    only_cpu = decide(scaling([metric("cpu", 50)]), obs(3, cpu=90), History(), NOW)
    m.record_decision(*ARGS, only_cpu)
    assert series_of(m.registry, per_metric("rps")) == []
    assert series_of(m.registry, per_metric("latency")) == []
    assert val(m, "stackscaler_metric_value", **per_metric("cpu")) == 90


def test_step_scaling_metric_has_no_target_series(m: OperatorMetrics) -> None:
    stepped = metric("cpu")
    del stepped["target"]
    stepped["stepScaling"] = {
        "adjustmentType": "ChangeInCapacity",
        "steps": [{"upperBound": 30, "adjustment": -1}, {"lowerBound": 70, "adjustment": 1}],
    }
    d = decide(scaling([stepped]), obs(5, cpu=80), History(), NOW)
    m.record_decision(*ARGS, d)
    assert val(m, "stackscaler_metric_value", **per_metric("cpu")) == 80
    assert val(m, "stackscaler_metric_target", **per_metric("cpu")) is None


# --- forget ------------------------------------------------------------------------------


def test_forget_removes_every_series_of_the_resource_only(m: OperatorMetrics) -> None:
    for args in (ARGS, ("WebTier", "shop", "api")):
        m.record_decision(*args, three(3, cpu=300, rps=None, latency=0.1))
        m.record_decision(*args, three(5, cpu=50, rps=50, latency=0.1), at=1.8e9)
        m.record_scale(*args, Direction.OUT)
        m.record_scale(*args, Direction.IN)
        m.record_error(*args, Throttled("slow down"))
        m.record_error(*args, ValueError("boom"))
        m.set_mode(*args, paused=True, dry_run=False)
    assert len(series_of(m.registry, RES)) > 15

    m.forget(*ARGS)

    assert series_of(m.registry, RES) == []
    left = series_of(m.registry, OTHER)
    assert len(left) > 15
    assert val(m, "stackscaler_metric_value", **OTHER, metric="cpu") == 50
    # operator-wide series stay
    assert val(m, "stackscaler_build_info", version=__version__) == 1


def test_last_decision_time_and_status_writes(m: OperatorMetrics) -> None:
    """The decision's time per resource (every tick, written or not); writes per result."""
    m.record_decision(*ARGS, three(3, cpu=90, rps=50, latency=0.1))
    assert val(m, "stackscaler_last_decision_timestamp_seconds", **RES) is None
    m.record_decision(*ARGS, three(3, cpu=90, rps=50, latency=0.1), at=1_800_000_030.0)
    assert val(m, "stackscaler_last_decision_timestamp_seconds", **RES) == 1_800_000_030.0
    assert val(m, "stackscaler_status_writes_total", result="skipped") == 0
    m.record_status_write("written")
    m.record_status_write("skipped")
    m.record_status_write("skipped")
    assert val(m, "stackscaler_status_writes_total", result="written") == 1
    assert val(m, "stackscaler_status_writes_total", result="skipped") == 2
    m.forget(*ARGS)
    assert val(m, "stackscaler_last_decision_timestamp_seconds", **RES) is None
    assert val(m, "stackscaler_status_writes_total", result="written") == 1  # not per resource


def test_forget_of_an_unknown_resource_is_harmless(m: OperatorMetrics) -> None:
    m.forget("WebTier", "nowhere", "nothing")
    m.record_decision(*ARGS, three(3, cpu=90, rps=50, latency=0.1))
    m.forget(*ARGS)
    m.forget(*ARGS)
    assert series_of(m.registry, RES) == []


def test_a_forgotten_resource_can_come_back(m: OperatorMetrics) -> None:
    d = three(3, cpu=60, rps=50, latency=0.1)  # cpu asks 4
    assert (d.desired, d.limited_by) == (4, None)
    m.record_decision(*ARGS, d)
    m.forget(*ARGS)
    m.record_decision(*ARGS, d)
    assert val(m, "stackscaler_metric_value", **per_metric("rps")) == 50
    out = {**RES, "direction": "Out", "limited_by": "none"}
    assert val(m, "stackscaler_decisions_total", **out) == 1  # counted afresh


# --- errors, scale actions, modes --------------------------------------------------------


class QuotaExceededForTenantAcme(TemporaryError):
    """A subclass outside the allow-list: reported as its allow-listed base."""


class FreeTextNamedError(Exception):
    pass


@pytest.mark.parametrize(
    ("exc", "label"),
    [
        (InvalidSpec([]), "InvalidSpec"),
        (MetricUnavailable("down"), "MetricUnavailable"),
        (MetricStale("old"), "MetricStale"),
        (Throttled("slow"), "Throttled"),
        (TargetNotFound("asg gone"), "TargetNotFound"),
        (AccessDenied("autoscaling:SetDesiredCapacity"), "AccessDenied"),
        (PermanentError("nope"), "PermanentError"),
        (TemporaryError("later"), "TemporaryError"),
        (QuotaExceededForTenantAcme("x"), "TemporaryError"),
        (ValueError("boom"), "other"),
        (FreeTextNamedError("x"), "other"),
        (KeyError("k"), "other"),
    ],
)
def test_errors_are_labelled_by_allow_listed_class(
    m: OperatorMetrics, exc: BaseException, label: str
) -> None:
    m.record_error(*ARGS, exc)
    assert val(m, "stackscaler_errors_total", **RES, error=label) == 1


def test_error_labels_are_bounded_and_never_carry_messages(m: OperatorMetrics) -> None:
    message = "AccessDenied: user arn:aws:iam::123:role/x may not call ssm:GetParameter"
    for exc in (
        AccessDenied(message),
        RuntimeError(message),
        type("Weird Name With Spaces", (Exception,), {})(message),
        MetricStale(message),
    ):
        m.record_error(*ARGS, exc)
    errors = next(f for f in m.registry.collect() if f.name == "stackscaler_errors")
    labels = {s.labels["error"] for s in errors.samples}
    assert labels <= {*ERROR_CLASSES, "other"}
    assert labels == {"AccessDenied", "other", "MetricStale"}
    everything = [v for f in m.registry.collect() for s in f.samples for v in s.labels.values()]
    assert all(message not in v for v in everything)
    assert val(m, "stackscaler_errors_total", **RES, error="other") == 2


def test_events_are_counted_by_kind_type_reason_and_result(m: OperatorMetrics) -> None:
    m.record_event("WebTier", "Normal", "ScaledOut", "posted")
    m.record_event("WebTier", "Normal", "ScaledOut", "posted")
    m.record_event("WebTier", "Warning", "TargetNotFound", "suppressed")
    m.record_event("CachePool", "Warning", "AccessDenied", "failed")
    events = "stackscaler_events_total"
    assert val(m, events, kind="WebTier", type="Normal", reason="ScaledOut", result="posted") == 2
    assert (
        val(m, events, kind="WebTier", type="Warning", reason="TargetNotFound", result="suppressed")
        == 1
    )
    assert (
        val(m, events, kind="CachePool", type="Warning", reason="AccessDenied", result="failed")
        == 1
    )
    with pytest.raises(ValueError, match="unknown Event result"):
        m.record_event("WebTier", "Normal", "ScaledOut", "sent")


def test_scale_actions_count_out_and_in_only(m: OperatorMetrics) -> None:
    m.record_scale(*ARGS, Direction.OUT)
    m.record_scale(*ARGS, Direction.OUT)
    m.record_scale(*ARGS, Direction.IN)
    m.record_scale(*ARGS, Direction.NONE)
    assert val(m, "stackscaler_scale_actions_total", **RES, direction="Out") == 2
    assert val(m, "stackscaler_scale_actions_total", **RES, direction="In") == 1
    assert val(m, "stackscaler_scale_actions_total", **RES, direction="None") is None


def test_set_mode(m: OperatorMetrics) -> None:
    m.set_mode(*ARGS, paused=True, dry_run=False)
    assert val(m, "stackscaler_paused", **RES) == 1
    assert val(m, "stackscaler_dry_run", **RES) == 0
    m.set_mode(*ARGS, paused=False, dry_run=True)
    assert val(m, "stackscaler_paused", **RES) == 0
    assert val(m, "stackscaler_dry_run", **RES) == 1


# --- operator-wide -----------------------------------------------------------------------


def test_aws_call_hook_counts_calls_by_outcome(m: OperatorMetrics) -> None:
    hook: CallHook = m.aws_call_hook()  # the type AwsCaller(hook=...) takes
    hook("autoscaling", "SetDesiredCapacity", "ok")
    hook("autoscaling", "SetDesiredCapacity", "ok")
    hook("autoscaling", "SetDesiredCapacity", "throttled")
    hook("sqs", "GetQueueAttributes", "not_found")
    hook("sqs", "GetQueueAttributes", "something the caller made up")

    def calls(service: str, operation: str, outcome: str) -> float | None:
        labels = {"service": service, "operation": operation, "outcome": outcome}
        return val(m, "stackscaler_aws_calls_total", **labels)

    assert calls("autoscaling", "SetDesiredCapacity", "ok") == 2
    assert calls("autoscaling", "SetDesiredCapacity", "throttled") == 1
    assert calls("sqs", "GetQueueAttributes", "not_found") == 1
    assert calls("sqs", "GetQueueAttributes", "error") == 1  # unknown outcomes: error
    assert calls("sqs", "GetQueueAttributes", "something the caller made up") is None


def test_limiter_wait_hook_counts_waits_from_the_real_limiter(m: OperatorMetrics) -> None:
    now = [100.0]  # a clock that moves only when the limiter sleeps: no race with real time

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiters = RateLimiters(
        {"sqs": RateLimit(1000.0, 1)},
        on_wait=m.limiter_wait_hook(),
        clock=lambda: now[0],
        sleep=sleep,
    )
    bucket = limiters.bucket("sqs", "eu-west-1")
    bucket.acquire()  # the burst token: no wait
    assert val(m, "stackscaler_rate_limiter_waits_total", service="sqs", region="eu-west-1") in (
        None,
        0,
    )
    waited = bucket.acquire()  # the bucket is empty: this one waits a token's 1 ms
    assert waited == pytest.approx(0.001)
    labels = {"service": "sqs", "region": "eu-west-1"}
    assert val(m, "stackscaler_rate_limiter_waits_total", **labels) == 1
    assert val(m, "stackscaler_rate_limiter_wait_seconds_total", **labels) == pytest.approx(waited)


def test_observe_reconcile_counts_each_reconcile_also_when_it_fails(m: OperatorMetrics) -> None:
    with m.observe_reconcile("WebTier"):
        pass
    with pytest.raises(RuntimeError), m.observe_reconcile("WebTier"):
        raise RuntimeError("reconcile failed")
    assert val(m, "stackscaler_reconcile_duration_seconds_count", kind="WebTier") == 2
    inf = val(m, "stackscaler_reconcile_duration_seconds_bucket", kind="WebTier", le="+Inf")
    assert inf == 2
    total = val(m, "stackscaler_reconcile_duration_seconds_sum", kind="WebTier")
    assert total is not None
    assert total >= 0
    buckets = {
        s.labels["le"]
        for f in m.registry.collect()
        if f.name == "stackscaler_reconcile_duration_seconds"
        for s in f.samples
        if s.name.endswith("_bucket")
    }
    assert {"0.01", "30.0", "+Inf"} <= buckets


def test_resources_and_build_info(m: OperatorMetrics) -> None:
    m.set_resources("WebTier", 3)
    m.set_resources("WorkerPool", 0)
    m.set_resources("WebTier", 4)
    assert val(m, "stackscaler_resources", kind="WebTier") == 4
    assert val(m, "stackscaler_resources", kind="WorkerPool") == 0
    assert val(m, "stackscaler_build_info", version=__version__) == 1


# --- the registry ------------------------------------------------------------------------

EXPECTED = {
    "stackscaler_capacity_current": "gauge",
    "stackscaler_capacity_desired": "gauge",
    "stackscaler_capacity_min": "gauge",
    "stackscaler_capacity_max": "gauge",
    "stackscaler_capacity_starting": "gauge",
    "stackscaler_capacity_leaving": "gauge",
    "stackscaler_metric_value": "gauge",
    "stackscaler_metric_target": "gauge",
    "stackscaler_metric_known": "gauge",
    "stackscaler_last_decision_timestamp_seconds": "gauge",
    "stackscaler_decisions": "counter",
    "stackscaler_status_writes": "counter",
    "stackscaler_events": "counter",
    "stackscaler_errors": "counter",
    "stackscaler_scale_actions": "counter",
    "stackscaler_paused": "gauge",
    "stackscaler_dry_run": "gauge",
    "stackscaler_forecast_floor": "gauge",
    "stackscaler_forecast_refreshes": "counter",
    "stackscaler_reconcile_duration_seconds": "histogram",
    "stackscaler_decision_seconds": "histogram",
    "stackscaler_decision_lateness_seconds": "histogram",
    "stackscaler_aws_calls": "counter",
    "stackscaler_rate_limiter_wait_seconds": "counter",
    "stackscaler_rate_limiter_waits": "counter",
    "stackscaler_resources": "gauge",
    "stackscaler_build_info": "gauge",
}


def test_exactly_the_documented_metrics_each_with_help(m: OperatorMetrics) -> None:
    families = {f.name: f for f in m.registry.collect()}
    assert {name: f.type for name, f in families.items()} == EXPECTED
    for f in families.values():
        assert len(f.documentation) > 20, f.name


def test_instances_do_not_share_or_touch_the_default_registry() -> None:
    a, b = OperatorMetrics(), OperatorMetrics()  # would raise on a shared registry
    a.record_decision(*ARGS, three(3, cpu=90, rps=50, latency=0.1))
    assert b.registry.get_sample_value("stackscaler_capacity_current", RES) is None
    assert prometheus_client.REGISTRY.get_sample_value("stackscaler_capacity_current", RES) is None
    given = CollectorRegistry()
    assert OperatorMetrics(given).registry is given


# --- logging -----------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_json_logging_writes_one_parsable_object_per_line() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    log = logging.getLogger("stackscaler.test")
    log.info("scaled %s to %d", "web", 5, extra={"resource": "shop/web", "kind": "WebTier"})
    log.debug("not at info level")
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("reconcile failed", extra={"resource": "shop/web"})

    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO"
    assert first["logger"] == "stackscaler.test"
    assert first["message"] == "scaled web to 5"
    assert first["resource"] == "shop/web"
    assert first["kind"] == "WebTier"
    assert "exception" not in first
    stamp = datetime.fromisoformat(first["time"])
    assert first["time"].endswith("Z")
    assert stamp.utcoffset() == timedelta(0)
    assert second["level"] == "ERROR"
    assert "ValueError: bad value" in second["exception"]
    assert "Traceback" in second["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_json_logging_keeps_strange_extras_valid_json() -> None:
    out = io.StringIO()
    configure_logging("json", "debug", stream=out)
    logging.getLogger("x").debug(
        "m", extra={"ratio": float("nan"), "when": NOW, "names": ("a", "b"), "level": "fake"}
    )
    doc = json.loads(out.getvalue())  # strict: NaN would not parse in other readers
    assert doc["ratio"] == "nan"
    assert doc["when"] == str(NOW)
    assert doc["names"] == ["a", "b"]
    assert doc["level"] == "DEBUG"  # an extra never overrides the standard fields


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_is_idempotent() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", "info", stream=first)
    configure_logging("json", "info", stream=second)
    configure_logging("json", "info", stream=second)
    logging.getLogger("stackscaler.test").info("once")
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1
    ours = [h for h in logging.getLogger().handlers if type(h).__module__.endswith("logs")]
    assert len(ours) == 1


@pytest.mark.usefixtures("restore_logging")
def test_text_logging_is_readable_and_carries_extras() -> None:
    out = io.StringIO()
    configure_logging("text", "WARNING", stream=out)
    log = logging.getLogger("stackscaler.test")
    log.info("hidden")
    log.warning("throttled", extra={"resource": "shop/web", "kind": "WebTier"})
    line = out.getvalue().strip()
    assert "\n" not in line
    assert "WARNING" in line
    assert "stackscaler.test: throttled" in line
    assert "kind=WebTier" in line
    assert "resource=shop/web" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="level"):
        configure_logging("json", "loud")
    with pytest.raises(ValueError, match="format"):
        configure_logging("yaml", "info")  # type: ignore[arg-type]
