"""The CloudWatch metric source against moto in server mode (real HTTP on loopback).

moto 5.2.5 implements GetMetricData for MetricStat queries with the standard
statistics (Average, Sum, Minimum, Maximum, SampleCount), Unit filtering and
ScanBy. Its metric math (``moto/cloudwatch/metric_data_expression_parser.py``)
only evaluates an expression that *is* an id (``e1 = m1``); arithmetic,
functions and SEARCH return no data, percentiles (``p90``) have no value, and
it never paginates nor reports per-query Messages. So metric math is tested
here with identity expressions (which still prove the id rewriting, the
hidden sub-queries and that two reads using the same ids in one call do not
collide); arithmetic rewriting, percentiles, pagination, Messages, several
series and the bisection of rejected calls are tested with a scripted caller
in tests/unit/test_cloudwatch_pure.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stackscaler.aws import AwsCaller, AwsSettings
from stackscaler.errors import MetricStale, MetricUnavailable, TemporaryError
from stackscaler.metrics import MetricQuery
from stackscaler.metrics.cloudwatch import CloudWatchMetricSource, align_down
from stackscaler.model.spec import CloudWatchQuery, CloudWatchSource, MetricSpec
from tests.integration.conftest import REGION
from tests.integration.netutil import free_port

GMD = ("cloudwatch", "GetMetricData")
OTHER_REGION = "eu-west-1"


@pytest.fixture
def now() -> datetime:
    """Half a minute into a minute an hour ago: every arranged datapoint is in the past."""
    return align_down(datetime.now(UTC) - timedelta(hours=1), 60) + timedelta(seconds=30)


def cpu(
    asg: str,
    *,
    statistic: str = "Average",
    unit: str | None = None,
    region: str | None = None,
    period: int = 60,
    stale: int = 300,
    resource: str | None = None,
) -> MetricQuery:
    source = CloudWatchSource(
        namespace="AWS/EC2",
        metric_name="CPUUtilization",
        dimensions=(("AutoScalingGroupName", asg),),
        statistic=statistic,
        unit=unit,
        expression=None,
        queries=(),
        period_seconds=period,
        region=region,
        role_arn=None,
    )
    return MetricQuery(
        resource or f"default/{asg}", MetricSpec("cpu", source, stale_after_seconds=stale)
    )


def math(asg: str, expression: str, ids: tuple[str, ...], stale: int = 300) -> MetricQuery:
    source = CloudWatchSource(
        namespace=None,
        metric_name=None,
        dimensions=(),
        statistic="Average",
        unit=None,
        expression=expression,
        queries=tuple(
            CloudWatchQuery(
                i, "AWS/EC2", "CPUUtilization", (("AutoScalingGroupName", asg),), "Average"
            )
            for i in ids
        ),
        period_seconds=60,
        region=None,
        role_arn=None,
    )
    return MetricQuery(f"default/{asg}", MetricSpec("cpu", source, stale_after_seconds=stale))


def put(
    boto: Any,
    points: list[tuple[str, float, datetime]],
    *,
    region: str = REGION,
    unit: str | None = None,
) -> None:
    """CPUUtilization datapoints (asg, value, timestamp).

    In batches of 40: botocore gzips PutMetricData bodies over 10 KB, which the
    moto server fails to decompress.
    """
    cw = boto("cloudwatch", region)
    data = [
        {
            "MetricName": "CPUUtilization",
            "Dimensions": [{"Name": "AutoScalingGroupName", "Value": asg}],
            "Timestamp": at,
            "Value": value,
            **({"Unit": unit} if unit else {}),
        }
        for asg, value, at in points
    ]
    for i in range(0, len(data), 40):
        cw.put_metric_data(Namespace="AWS/EC2", MetricData=data[i : i + 40])


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


async def test_newest_complete_period_wins_and_current_period_is_ignored(
    aws: AwsCaller, boto: Any, now: datetime
) -> None:
    end = align_down(now, 60)  # start of the current, incomplete minute
    put(
        boto,
        [
            ("web", 10.0, end - minutes(3) + timedelta(seconds=5)),
            ("web", 20.0, end - minutes(2) + timedelta(seconds=5)),
            ("web", 30.0, end - minutes(1) + timedelta(seconds=5)),
            ("web", 999.0, end + timedelta(seconds=10)),  # current minute: incomplete
        ],
    )
    sample = await CloudWatchMetricSource(aws).read(cpu("web"), now)
    assert sample.value == 30.0
    assert sample.timestamp == end  # end of the newest complete period
    assert aws.clients.calls[GMD] == 1


async def test_statistic_and_unit_come_from_the_spec(
    aws: AwsCaller, boto: Any, now: datetime
) -> None:
    end = align_down(now, 60)
    minute = end - minutes(1)
    put(boto, [("web", 10.0, minute + timedelta(seconds=5)), ("web", 50.0, minute)], unit="Percent")
    put(boto, [("web", 7000.0, minute + timedelta(seconds=9))], unit="Count")
    source = CloudWatchMetricSource(aws)
    average, maximum, counted = await asyncio.gather(
        source.read(cpu("web", unit="Percent"), now),
        source.read(cpu("web", statistic="Maximum", unit="Percent"), now),
        source.read(cpu("web", statistic="SampleCount"), now),
    )
    assert (average.value, maximum.value, counted.value) == (30.0, 50.0, 3.0)
    assert aws.clients.calls[GMD] == 1


async def test_no_datapoints_is_unavailable_not_zero(
    aws: AwsCaller, boto: Any, now: datetime
) -> None:
    put(boto, [("other-asg", 42.0, align_down(now, 60) - minutes(1))])
    query = cpu("web", resource="shop/web")
    with pytest.raises(MetricUnavailable) as info:
        await CloudWatchMetricSource(aws).read(query, now)
    assert not isinstance(info.value, MetricStale)
    message = str(info.value)
    assert "shop/web" in message
    assert "metric cpu" in message
    assert "AWS/EC2/CPUUtilization" in message
    assert "no datapoints" in message


async def test_unknown_namespace_is_unavailable(aws: AwsCaller, now: datetime) -> None:
    nowhere = MetricQuery(
        "shop/web",
        MetricSpec(
            "cpu",
            CloudWatchSource(
                "Nope/Nothing", "Missing", (), "Average", None, None, (), 60, None, None
            ),
        ),
    )
    with pytest.raises(MetricUnavailable, match=r"shop/web metric cpu .*Nope/Nothing/Missing"):
        await CloudWatchMetricSource(aws).read(nowhere, now)


async def test_datapoint_older_than_stale_after_is_stale(
    aws: AwsCaller, boto: Any, now: datetime
) -> None:
    end = align_down(now, 60)
    # staleAfterSeconds 120 with 60 s periods: the window reaches back 3 minutes, so
    # the minute [end-3m, end-2m) is still fetched; it ended 2.5 minutes before now.
    put(boto, [("web", 55.0, end - minutes(3))])
    with pytest.raises(MetricStale, match=r"default/web metric cpu: newest sample is 150s old"):
        await CloudWatchMetricSource(aws).read(cpu("web", stale=120), now)
    # the same datapoint is fresh enough for a longer limit
    sample = await CloudWatchMetricSource(aws).read(cpu("web", stale=200), now)
    assert (sample.value, sample.timestamp) == (55.0, end - minutes(2))


async def test_metric_math_ids_are_rewritten_and_do_not_collide(
    aws: AwsCaller, boto: Any, now: datetime
) -> None:
    # moto evaluates identity expressions only (see the module docstring); both reads
    # use the ids m1/m2 and share one call, so the ids must have been rewritten per read
    # and resolved against each read's own sub-queries.
    minute = align_down(now, 60) - minutes(1)
    put(boto, [("blue", 11.0, minute), ("green", 22.0, minute)])
    source = CloudWatchMetricSource(aws)
    blue, green, plain = await asyncio.gather(
        source.read(math("blue", "m1", ("m1", "m2")), now),
        source.read(math("green", "m2", ("m1", "m2")), now),
        source.read(cpu("green"), now),
    )
    assert (blue.value, green.value, plain.value) == (11.0, 22.0, 22.0)
    assert blue.timestamp == align_down(now, 60)
    assert aws.clients.calls[GMD] == 1


async def test_250_concurrent_reads_cost_one_call(aws: AwsCaller, boto: Any, now: datetime) -> None:
    minute = align_down(now, 60) - minutes(1)
    put(boto, [(f"asg-{i}", float(i), minute) for i in range(250)])
    source = CloudWatchMetricSource(aws)
    samples = await asyncio.gather(*(source.read(cpu(f"asg-{i}"), now) for i in range(250)))
    assert [s.value for s in samples] == [float(i) for i in range(250)]
    assert aws.clients.calls[GMD] == 1


async def test_600_concurrent_reads_cost_two_calls(
    aws: AwsCaller, boto: Any, now: datetime
) -> None:
    minute = align_down(now, 60) - minutes(1)
    put(boto, [(f"asg-{i}", float(i), minute) for i in range(600)])
    source = CloudWatchMetricSource(aws)
    samples = await asyncio.gather(
        *(source.read(cpu(f"asg-{i}", stale=60), now) for i in range(600))
    )
    assert [s.value for s in samples] == [float(i) for i in range(600)]
    assert aws.clients.calls[GMD] == 2


async def test_regions_are_never_mixed_in_one_call(
    aws: AwsCaller, boto: Any, now: datetime
) -> None:
    minute = align_down(now, 60) - minutes(1)
    put(boto, [("web", 10.0, minute)])  # same ASG name, different values per region
    put(boto, [("web", 90.0, minute)], region=OTHER_REGION)
    source = CloudWatchMetricSource(aws)
    here, default, there = await asyncio.gather(
        source.read(cpu("web", region=REGION), now),
        source.read(cpu("web"), now),  # the default region batches with the explicit one
        source.read(cpu("web", region=OTHER_REGION), now),
    )
    assert (here.value, default.value, there.value) == (10.0, 10.0, 90.0)
    assert aws.clients.calls[GMD] == 2


async def test_a_failing_call_fails_every_read_of_the_batch_and_nothing_else(
    aws: AwsCaller, boto: Any, now: datetime
) -> None:
    minute = align_down(now, 60) - minutes(1)
    put(boto, [("web", 10.0, minute)])
    dead = AwsCaller(
        AwsSettings(
            default_region=REGION,
            endpoint_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
            max_attempts=1,
            connect_timeout=1.0,
        )
    )
    try:
        broken = CloudWatchMetricSource(dead)
        results = await asyncio.gather(
            *(broken.read(cpu(f"asg-{i}"), now) for i in range(5)), return_exceptions=True
        )
        assert dead.clients.calls[GMD] == 1
        for i, result in enumerate(results):
            assert isinstance(result, TemporaryError), result
            assert str(result).startswith(f"default/asg-{i} metric cpu"), result
            assert "cannot reach AWS" in str(result)
        # the source survives the failure: the next batch is tried (and fails) again
        with pytest.raises(TemporaryError):
            await broken.read(cpu("web"), now)
        assert dead.clients.calls[GMD] == 2
    finally:
        dead.close()
    # a source on a healthy endpoint is unaffected
    assert (await CloudWatchMetricSource(aws).read(cpu("web"), now)).value == 10.0
