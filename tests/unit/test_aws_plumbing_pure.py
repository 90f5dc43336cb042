"""Token buckets and botocore error translation, without any network."""

from __future__ import annotations

import threading

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from stackscaler.aws.errors import translate
from stackscaler.aws.ratelimit import RateLimit, RateLimiters, TokenBucket
from stackscaler.errors import (
    AccessDenied,
    PermanentError,
    TargetNotFound,
    TemporaryError,
    Throttled,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_bucket_allows_burst_then_paces() -> None:
    clock = FakeClock()
    waits: list[float] = []
    bucket = TokenBucket(RateLimit(2.0, 3), clock=clock, sleep=clock.sleep, on_wait=waits.append)
    assert [bucket.acquire() for _ in range(3)] == [0, 0, 0]
    assert bucket.acquire() == pytest.approx(0.5)
    assert bucket.acquire() == pytest.approx(0.5)
    assert waits == [pytest.approx(0.5), pytest.approx(0.5)]
    clock.now += 10  # refills, but never above the burst
    assert [bucket.acquire() for _ in range(3)] == [0, 0, 0]
    assert bucket.acquire() > 0


def test_bucket_bounds_attempts_over_time() -> None:
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(5.0, 10), clock=clock, sleep=clock.sleep)
    for _ in range(110):
        bucket.acquire()
    # 110 tokens at 5/s with a burst of 10 take at least (110 - 10) / 5 = 20 s
    assert clock.now == pytest.approx(20.0)


def test_bucket_is_thread_safe() -> None:
    clock = FakeClock()  # frozen: no refill, so the count must be exact
    bucket = TokenBucket(RateLimit(1000.0, 1000), clock=clock, sleep=clock.sleep)
    threads = [
        threading.Thread(target=lambda: [bucket.acquire() for _ in range(100)]) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bucket._tokens == 200  # every one of the 800 acquisitions counted
    assert clock.slept == []


def test_limiters_per_service_and_region() -> None:
    seen: list[tuple[str, str, float]] = []
    limiters = RateLimiters(
        {"autoscaling": RateLimit(1.0, 1)}, on_wait=lambda s, r, w: seen.append((s, r, w))
    )
    a = limiters.bucket("autoscaling", "us-east-1")
    assert limiters.bucket("autoscaling", "us-east-1") is a
    assert limiters.bucket("autoscaling", "eu-west-1") is not a
    assert a.limit == RateLimit(1.0, 1)
    assert limiters.bucket("sqs", "us-east-1").limit.rate == 50.0


def _client_error(
    code: str, status: int = 400, message: str = "boom", headers: dict[str, str] | None = None
) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
        },
        "SetDesiredCapacity",
    )


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("Throttling", 400, Throttled),
        ("RequestLimitExceeded", 400, Throttled),
        ("ThrottlingException", 400, Throttled),
        ("Anything", 429, Throttled),
        ("AccessDenied", 403, AccessDenied),
        ("AccessDeniedException", 400, AccessDenied),
        ("UnauthorizedOperation", 400, AccessDenied),
        ("AWS.SimpleQueueService.NonExistentQueue", 400, TargetNotFound),
        ("DBInstanceNotFound", 404, TargetNotFound),
        ("ReplicationGroupNotFoundFault", 404, TargetNotFound),
        ("ValidationError", 400, PermanentError),
        ("InternalFailure", 500, TemporaryError),
        ("ScalingActivityInProgress", 400, TemporaryError),
    ],
)
def test_client_errors_map_onto_the_tree(code: str, status: int, kind: type[Exception]) -> None:
    err = translate(
        _client_error(code, status),
        service="autoscaling",
        operation="SetDesiredCapacity",
        resource="Auto Scaling group web",
        region="us-east-1",
    )
    assert type(err) is kind
    assert "Auto Scaling group web" in str(err) and "us-east-1" in str(err)


def test_access_denied_names_the_iam_action() -> None:
    err = translate(
        _client_error("AccessDenied", 403),
        service="autoscaling",
        operation="SetDesiredCapacity",
        resource="Auto Scaling group web",
        region="us-east-1",
    )
    assert "grant the IAM action autoscaling:SetDesiredCapacity on Auto Scaling group web" in str(
        err
    )
    assert not err.temporary


def test_throttling_is_temporary_with_retry_after() -> None:
    err = translate(
        _client_error("Throttling", 400, headers={"retry-after": "7"}),
        service="autoscaling",
        operation="DescribeAutoScalingGroups",
        resource="x",
        region="us-east-1",
    )
    assert isinstance(err, Throttled) and err.temporary and err.delay == 7.0


def test_transport_and_credential_errors() -> None:
    down = translate(
        EndpointConnectionError(endpoint_url="https://x"),
        service="sqs",
        operation="GetQueueAttributes",
        resource="queue q",
        region="us-east-1",
    )
    assert isinstance(down, TemporaryError)
    creds = translate(
        NoCredentialsError(),
        service="sqs",
        operation="GetQueueAttributes",
        resource="queue q",
        region="us-east-1",
    )
    assert isinstance(creds, AccessDenied) and "IRSA" in str(creds)
