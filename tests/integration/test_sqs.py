"""The SQS backlog source against moto in server mode (real HTTP on loopback)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from stackscaler.aws import AwsCaller
from stackscaler.errors import TargetNotFound
from stackscaler.metrics import MetricQuery
from stackscaler.metrics.sqs import SqsMetricSource, region_from_queue_url
from stackscaler.model.spec import MetricSpec, SqsSource
from tests.integration.conftest import REGION

NOW = datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC)
OTHER_REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account


def backlog(
    *,
    url: str | None = None,
    name: str | None = None,
    region: str | None = None,
    in_flight: bool = False,
    delayed: bool = False,
) -> MetricQuery:
    source = SqsSource(url, name, region, None, in_flight, delayed)
    return MetricQuery("default/workers", MetricSpec("backlog", source))


def arrange(boto: Any, name: str = "jobs", *, region: str = REGION) -> str:
    """A queue with 3 visible, 2 in-flight and 1 delayed message; returns its URL."""
    sqs = boto("sqs", region)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    for i in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=300)
    assert len(received["Messages"]) == 2  # received, not deleted: in flight
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=300)
    return str(url)


async def test_visible_messages_only_by_default(aws: AwsCaller, boto: Any) -> None:
    url = arrange(boto)
    sample = await SqsMetricSource(aws).read(backlog(url=url), NOW)
    assert sample.value == 3.0
    assert sample.timestamp == NOW


async def test_in_flight_and_delayed_are_added_when_asked(aws: AwsCaller, boto: Any) -> None:
    url = arrange(boto)
    source = SqsMetricSource(aws)
    in_flight, delayed, both = await asyncio.gather(
        source.read(backlog(url=url, in_flight=True), NOW),
        source.read(backlog(url=url, delayed=True), NOW),
        source.read(backlog(url=url, in_flight=True, delayed=True), NOW),
    )
    assert (in_flight.value, delayed.value, both.value) == (5.0, 4.0, 6.0)


async def test_by_name_and_region_resolves_the_url_once(aws: AwsCaller, boto: Any) -> None:
    arrange(boto, "orders", region=OTHER_REGION)
    boto("sqs").create_queue(QueueName="orders")  # same name, default region: empty
    source = SqsMetricSource(aws)
    for _ in range(3):
        there = await source.read(backlog(name="orders", region=OTHER_REGION), NOW)
        assert there.value == 3.0
    here = await source.read(backlog(name="orders"), NOW)  # default region
    assert here.value == 0.0
    assert aws.clients.calls[("sqs", "GetQueueUrl")] == 2  # once per (region, name)
    assert aws.clients.calls[("sqs", "GetQueueAttributes")] == 4


async def test_region_is_taken_from_an_aws_queue_url(aws: AwsCaller, boto: Any) -> None:
    # the queue exists only in eu-west-1; the operator's default region is us-east-1
    arrange(boto, "billing", region=OTHER_REGION)
    url = f"https://sqs.{OTHER_REGION}.amazonaws.com/{ACCOUNT}/billing"
    sample = await SqsMetricSource(aws).read(backlog(url=url, in_flight=True), NOW)
    assert sample.value == 5.0


async def test_missing_queue_by_name_is_target_not_found(aws: AwsCaller) -> None:
    with pytest.raises(TargetNotFound) as info:
        await SqsMetricSource(aws).read(backlog(name="ghost", region=OTHER_REGION), NOW)
    message = str(info.value)
    assert "SQS queue ghost" in message
    assert OTHER_REGION in message


async def test_missing_queue_by_url_is_target_not_found(aws: AwsCaller) -> None:
    url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/ghost"
    with pytest.raises(TargetNotFound) as info:
        await SqsMetricSource(aws).read(backlog(url=url), NOW)
    message = str(info.value)
    assert url in message
    assert REGION in message


async def test_deleted_queue_is_looked_up_again(aws: AwsCaller, boto: Any) -> None:
    url = arrange(boto, "cycle")
    source = SqsMetricSource(aws)
    assert (await source.read(backlog(name="cycle"), NOW)).value == 3.0
    boto("sqs").delete_queue(QueueUrl=url)
    with pytest.raises(TargetNotFound, match="SQS queue cycle"):
        await source.read(backlog(name="cycle"), NOW)
    boto("sqs").create_queue(QueueName="cycle")
    assert (await source.read(backlog(name="cycle"), NOW)).value == 0.0
    assert aws.clients.calls[("sqs", "GetQueueUrl")] == 2  # the cached URL was dropped once


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/q", "eu-west-1"),
        ("https://sqs.us-gov-west-1.amazonaws.com/123456789012/q", "us-gov-west-1"),
        ("https://sqs-fips.us-east-2.amazonaws.com/123456789012/q", "us-east-2"),
        ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", "cn-north-1"),
        (
            "https://vpce-0a1b.sqs.ap-southeast-2.vpce.amazonaws.com/123456789012/q",
            "ap-southeast-2",
        ),
        ("https://ap-northeast-1.queue.amazonaws.com/123456789012/q", "ap-northeast-1"),
        ("https://queue.amazonaws.com/123456789012/q", "us-east-1"),
        ("http://127.0.0.1:4566/123456789012/q", None),
        ("https://sqs.amazonaws.com.evil.example/123456789012/q", None),
    ],
)
def test_region_from_queue_url(url: str, region: str | None) -> None:
    assert region_from_queue_url(url) == region
