"""Rate limits awaited on the event loop, retries run by AwsCaller, a thread pool per service.

No network: a ``before-send`` handler on each client answers every request
the way AWS would (the query protocol's XML, the JSON protocol's body),
after the caller's own handlers (the token, the attempt counter) ran. Token
buckets run on a fake clock whose sleeps wait on a gate the test opens, and
backoffs go to a recording sleep: nothing here depends on wall-clock time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, EndpointConnectionError

from stackscaler import fence
from stackscaler.aws import AwsCaller, AwsSettings, RateLimit, RateLimiters, RetryPolicy, RoleRef
from stackscaler.aws.ratelimit import TokenBucket
from stackscaler.errors import Deferred, NotOwner, PermanentError, TemporaryError, Throttled

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/stackscaler-web"
ASG_NS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
HANG = 20.0
"""Seconds after which a wait counts as hung (a guard, never a timing assertion)."""


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Static credentials, so requests are signed without looking anywhere else."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# --- fakes ------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Gate:
    """An async sleep that returns once the test opens the gate (the clock moves on then)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.opened = asyncio.Event()
        self.waiting = 0
        self.asked: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.waiting += 1
        try:
            await self.opened.wait()
        finally:
            self.waiting -= 1
        self.clock.now = max(self.clock.now, seconds)


class _Raw(BytesIO):
    def stream(self, **_: Any) -> Iterator[bytes]:
        chunk = self.read()
        while chunk:
            yield chunk
            chunk = self.read()


def _query_error(code: str, status: int) -> tuple[int, bytes]:
    body = (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
        f"<Message>{code} for the test</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
    )
    return status, body.encode()


def _query_ok(operation: str, namespace: str, result: str = "") -> tuple[int, bytes]:
    inner = f"<{operation}Result>{result}</{operation}Result>" if result else ""
    body = (
        f'<{operation}Response xmlns="{namespace}">{inner}'
        f"<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></{operation}Response>"
    )
    return 200, body.encode()


ASSUMED = (
    "<Credentials><AccessKeyId>ASIAEXAMPLEEXAMPLE02</AccessKeyId>"
    "<SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken>"
    "<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>"
    "<AssumedRoleUser><AssumedRoleId>AROAEXAMPLE:s</AssumedRoleId>"
    f"<Arn>{ROLE}</Arn></AssumedRoleUser>"
)

Answer = Callable[[str], "tuple[int, bytes] | Exception"]


@dataclass
class Sent:
    service: str
    operation: str
    thread: str
    running: dict[tuple[str, str], int]


@dataclass
class FakeAws:
    """Answers every request of the clients it is attached to, and records them."""

    caller: AwsCaller
    answers: dict[str, list[tuple[int, bytes] | Exception]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Answer for every client the cache makes from now on, a role's included."""
        cache = self.caller.clients
        make = cache._client

        def client(session: Any, service: str, region: str) -> Any:
            made = make(session, service, region)
            made.meta.events.register("before-send", self._respond(service))
            return made

        cache._client = client  # type: ignore[method-assign]

    def queue(self, operation: str, *answers: tuple[int, bytes] | Exception) -> None:
        self.answers.setdefault(operation, []).extend(answers)

    def operations(self, service: str | None = None) -> list[str]:
        return [s.operation for s in self.sent if service in (None, s.service)]

    def _respond(self, service: str) -> Callable[..., AWSResponse]:
        def respond(request: Any, event_name: str, **_: Any) -> AWSResponse:
            operation = event_name.rsplit(".", 1)[-1]
            self.sent.append(
                Sent(
                    service,
                    operation,
                    threading.current_thread().name,
                    dict(self.caller.running),
                )
            )
            queued = self.answers.get(operation)
            answer = queued.pop(0) if queued else self._default(service, operation)
            if isinstance(answer, Exception):
                raise answer
            status, body = answer
            headers = {"content-type": "text/xml"}
            if service == "sqs":
                headers = {"content-type": "application/x-amz-json-1.0"}
            return AWSResponse(request.url, status, headers, _Raw(body))

        return respond

    @staticmethod
    def _default(service: str, operation: str) -> tuple[int, bytes]:
        if service == "sqs":
            return 200, b"{}"
        if service == "sts":
            return _query_ok(operation, STS_NS, ASSUMED)
        return _query_ok(operation, ASG_NS)


@dataclass
class Setup:
    caller: AwsCaller
    aws: FakeAws
    clock: FakeClock
    gate: Gate
    backoffs: list[float]
    hooked: list[tuple[str, str, str]]

    def bucket(self, service: str, operation: str | None = None) -> TokenBucket:
        """The bucket of ``operation``'s kind (None: reads); SetDesiredCapacity: writes."""
        return self.caller.clients.limiters.bucket(service, REGION, operation)

    async def set_capacity(self, group: str = "web", capacity: int = 3) -> dict[str, Any]:
        return await self.caller.call(
            "autoscaling",
            "SetDesiredCapacity",
            region=None,
            resource=f"Auto Scaling group {group}",
            AutoScalingGroupName=group,
            DesiredCapacity=capacity,
        )


async def _setup(
    *,
    limits: dict[str, RateLimit] | None = None,
    max_attempts: int = 3,
    max_workers: int = 1,
    jitter: float = 1.0,
    on_backoff: Callable[[AwsCaller], None] | None = None,
) -> Setup:
    clock = FakeClock()
    gate = Gate(clock)
    backoffs: list[float] = []
    hooked: list[tuple[str, str, str]] = []
    holder: list[AwsCaller] = []

    async def backoff(seconds: float) -> None:
        backoffs.append(seconds)
        if on_backoff is not None:
            on_backoff(holder[0])
        await asyncio.sleep(0)

    caller = AwsCaller(
        AwsSettings(default_region=REGION, max_attempts=max_attempts, max_workers=max_workers),
        limiters=RateLimiters(limits, clock=clock, sleep=lambda s: None, async_sleep=gate.sleep),
        hook=lambda *event: hooked.append(event),
        retry=RetryPolicy(max_attempts, random=lambda: jitter),
        sleep=backoff,
    )
    holder.append(caller)
    aws = FakeAws(caller)
    return Setup(caller, aws, clock, gate, backoffs, hooked)


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    s = await _setup(limits={"autoscaling": RateLimit(1.0, 1)})
    try:
        yield s
    finally:
        s.caller.close()


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Let the other tasks and threads run until ``condition`` holds.

    Polls; ``HANG`` bounds it as a hang guard, never as a timing assertion.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.005)


def _done_order(tasks: dict[str, asyncio.Task[Any]], order: list[str]) -> None:
    for name, task in tasks.items():
        task.add_done_callback(lambda _, name=name: order.append(name))


# --- tokens are awaited on the loop, one pool per service --------------------------------


async def test_reads_of_another_service_do_not_wait_behind_rate_limited_writes(
    setup: Setup,
) -> None:
    await setup.set_capacity("first")  # the autoscaling bucket (burst 1) is empty now
    order: list[str] = []
    writes = {f"write-{i}": asyncio.create_task(setup.set_capacity(f"g{i}")) for i in range(3)}
    _done_order(writes, order)
    await _until(lambda: setup.gate.waiting == 3, "three writes waiting for tokens")

    # the waiting writes hold no worker thread: none runs, none is queued for one
    assert setup.caller.running[("autoscaling", REGION)] == 0
    assert setup.aws.operations("autoscaling") == ["SetDesiredCapacity"]
    pool = setup.caller._pool("autoscaling", REGION)
    assert pool._work_queue.qsize() == 0

    out = await setup.caller.call("sqs", "ListQueues", region=None, resource="queues")
    order.append("read")
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert not any(t.done() for t in writes.values())
    read = setup.aws.sent[-1]
    assert (read.service, read.operation) == ("sqs", "ListQueues")
    assert read.running.get(("autoscaling", REGION), 0) == 0  # no autoscaling thread busy
    assert read.thread.startswith(f"stackscaler-aws-sqs-{REGION}")

    setup.gate.opened.set()
    await asyncio.gather(*writes.values())
    assert order[0] == "read" and sorted(order[1:]) == ["write-0", "write-1", "write-2"]
    assert setup.aws.operations("autoscaling") == ["SetDesiredCapacity"] * 4
    assert all(
        s.thread.startswith(f"stackscaler-aws-autoscaling-{REGION}")
        for s in setup.aws.sent
        if s.service == "autoscaling"
    )
    # one hook call per logical call, each with its outcome
    assert setup.hooked.count(("autoscaling", "SetDesiredCapacity", "ok")) == 4
    assert setup.hooked.count(("sqs", "ListQueues", "ok")) == 1


async def test_reads_of_the_same_service_do_not_queue_behind_its_writes(setup: Setup) -> None:
    """Reads and writes have a bucket each: DescribeAutoScalingGroups, which every tier
    needs, never waits for the tokens of queued SetDesiredCapacity calls."""
    await setup.set_capacity("first")  # the autoscaling write bucket (burst 1) is empty now
    writes = [asyncio.create_task(setup.set_capacity(f"g{i}")) for i in range(3)]
    await _until(lambda: setup.gate.waiting == 3, "three writes waiting for tokens")

    setup.aws.queue(
        "DescribeAutoScalingGroups",
        _query_ok("DescribeAutoScalingGroups", ASG_NS, "<AutoScalingGroups></AutoScalingGroups>"),
    )
    out = await setup.caller.call(
        "autoscaling", "DescribeAutoScalingGroups", region=None, resource="groups"
    )
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert not any(t.done() for t in writes)
    assert setup.aws.operations("autoscaling") == [
        "SetDesiredCapacity",
        "DescribeAutoScalingGroups",
    ]
    assert setup.bucket("autoscaling", "SetDesiredCapacity") is not setup.bucket("autoscaling")

    setup.gate.opened.set()
    await asyncio.gather(*writes)
    assert setup.aws.operations("autoscaling").count("SetDesiredCapacity") == 4


async def test_a_replica_whose_lease_lapsed_sends_nothing(setup: Setup) -> None:
    """The fence (fence.py) is asked right before each attempt is sent."""
    setup.gate.opened.set()  # tokens come as soon as they are due
    owned = [True]
    token = fence.OWNER.set(("WebTier shop/web", lambda: owned[0]))
    try:
        await setup.set_capacity("web", 3)
        owned[0] = False
        with pytest.raises(NotOwner, match="lease on its shard lapsed"):
            await setup.set_capacity("web", 4)
    finally:
        fence.OWNER.reset(token)
    assert setup.aws.operations("autoscaling") == ["SetDesiredCapacity"]
    await setup.set_capacity("web", 5)  # outside a tick (no fence set): sent
    assert setup.aws.operations("autoscaling") == ["SetDesiredCapacity"] * 2


async def test_a_write_whose_turn_comes_after_the_send_by_time_is_deferred_unsent(
    setup: Setup,
) -> None:
    """A tick's change that would wait past its send-by time is not sent (Deferred),
    gives its token back, and leaves the waiters before it where they were."""
    await setup.set_capacity("first")  # the write bucket (1/s, burst 1) is empty now
    ahead = [asyncio.create_task(setup.set_capacity(f"g{i}")) for i in range(2)]
    await _until(lambda: setup.gate.waiting == 2, "two writes waiting")
    with fence.sending_by(2.5, setup.clock) as send_by:  # its turn would come at 3.0
        with pytest.raises(Deferred, match="SetDesiredCapacity not sent"):
            await setup.set_capacity("late")
        assert not send_by.sent
    assert setup.aws.operations("autoscaling") == ["SetDesiredCapacity"]
    assert setup.gate.waiting == 2 and setup.gate.asked == [1.0, 2.0]
    assert setup.bucket("autoscaling", "SetDesiredCapacity").available == pytest.approx(-2.0)
    assert ("autoscaling", "SetDesiredCapacity", "ok") not in setup.hooked[1:]  # no call made

    with fence.sending_by(3.5, setup.clock) as send_by:  # its turn at 3.0 is in time
        late = asyncio.create_task(setup.set_capacity("in-time"))
        await _until(lambda: setup.gate.waiting == 3, "the write in time waits its turn")
        assert setup.gate.asked[-1] == 3.0
    setup.gate.opened.set()
    await asyncio.gather(*ahead, late)
    assert send_by.sent
    assert setup.aws.operations("autoscaling") == ["SetDesiredCapacity"] * 4


async def test_only_the_first_write_of_a_change_can_be_deferred(setup: Setup) -> None:
    """Once a change has sent one write, its other writes wait their turn: a change is
    never left half done because the send-by time passed."""
    setup.gate.opened.set()
    with fence.sending_by(0.5, setup.clock):
        await setup.set_capacity("first")  # a token at once: sent, whatever the time
        await setup.set_capacity("second")  # would wait 1 s, past 0.5: waits anyway
    assert setup.aws.operations("autoscaling") == ["SetDesiredCapacity"] * 2


async def test_reads_are_never_deferred(setup: Setup) -> None:
    setup.gate.opened.set()
    setup.aws.queue(
        "DescribeAutoScalingGroups",
        _query_ok("DescribeAutoScalingGroups", ASG_NS, "<AutoScalingGroups></AutoScalingGroups>"),
    )
    setup.aws.queue(
        "DescribeAutoScalingGroups",
        _query_ok("DescribeAutoScalingGroups", ASG_NS, "<AutoScalingGroups></AutoScalingGroups>"),
    )
    with fence.sending_by(-10.0, setup.clock):  # long past
        for _ in range(2):  # the read bucket (burst 1): the second one waits, and is sent
            await setup.caller.call(
                "autoscaling", "DescribeAutoScalingGroups", region=None, resource="groups"
            )
    assert setup.aws.operations("autoscaling") == ["DescribeAutoScalingGroups"] * 2


async def test_waiters_are_served_in_the_order_they_asked(setup: Setup) -> None:
    await setup.set_capacity("first")
    tasks = [asyncio.create_task(setup.set_capacity(f"g{i}")) for i in range(3)]
    await _until(lambda: setup.gate.waiting == 3, "three writes waiting")
    assert setup.gate.asked == [1.0, 2.0, 3.0]  # the n-th past the burst waits n / rate
    setup.gate.opened.set()
    await asyncio.gather(*tasks)


async def test_each_service_and_region_has_its_own_bounded_pool(setup: Setup) -> None:
    await setup.set_capacity()
    await setup.caller.call("sqs", "ListQueues", region=None, resource="queues")
    a = setup.caller._pool("autoscaling", REGION)
    assert setup.caller._pool("autoscaling", REGION) is a
    assert setup.caller._pool("sqs", REGION) is not a
    assert setup.caller._pool("autoscaling", "eu-west-1") is not a
    assert a._max_workers == setup.caller.settings.max_workers
    setup.caller.close()
    with pytest.raises(TemporaryError):  # closed: no new pool, the error is translated
        await setup.caller.call("sqs", "ListQueues", region=None, resource="queues")


# --- retries on the loop -----------------------------------------------------------------


async def test_a_throttled_call_retries_with_a_token_each_then_raises_throttled() -> None:
    busy_during_backoff: list[int] = []
    s = await _setup(
        limits={"autoscaling": RateLimit(1.0, 10)},
        max_attempts=3,
        on_backoff=lambda c: busy_during_backoff.append(c.running[("autoscaling", REGION)]),
    )
    s.aws.queue("SetDesiredCapacity", *[_query_error("Throttling", 400)] * 3)
    try:
        with pytest.raises(Throttled) as info:
            await s.set_capacity()
    finally:
        s.caller.close()
    assert "Auto Scaling group web" in str(info.value)
    assert s.aws.operations() == ["SetDesiredCapacity"] * 3
    assert s.caller.clients.attempts[("autoscaling", "SetDesiredCapacity")] == 3
    assert s.caller.clients.calls[("autoscaling", "SetDesiredCapacity")] == 1
    assert (
        s.bucket("autoscaling", "SetDesiredCapacity").available == 10 - 3
    )  # every attempt took a token
    # standard mode: throttling backs off from 1 s, doubling (full jitter, here at its top)
    assert s.backoffs == [1.0, 2.0]
    assert busy_during_backoff == [0, 0]  # a backoff holds no thread
    assert s.hooked == [("autoscaling", "SetDesiredCapacity", "throttled")]


async def test_a_call_throttled_twice_succeeds_on_the_third_attempt() -> None:
    s = await _setup(limits={"autoscaling": RateLimit(1.0, 10)}, max_attempts=4)
    s.aws.queue("SetDesiredCapacity", *[_query_error("Throttling", 400)] * 2)
    try:
        await s.set_capacity()
    finally:
        s.caller.close()
    assert s.aws.operations() == ["SetDesiredCapacity"] * 3
    assert s.bucket("autoscaling", "SetDesiredCapacity").available == 10 - 3
    assert s.hooked == [("autoscaling", "SetDesiredCapacity", "ok")]


async def test_the_tokens_of_retries_are_awaited_like_any_other() -> None:
    s = await _setup(limits={"autoscaling": RateLimit(1.0, 1)}, max_attempts=2)
    s.aws.queue("SetDesiredCapacity", _query_error("Throttling", 400))
    try:
        task = asyncio.create_task(s.set_capacity())
        await _until(lambda: s.gate.waiting == 1, "the retry waiting for its token")
        assert s.aws.operations() == ["SetDesiredCapacity"]
        assert s.caller.running[("autoscaling", REGION)] == 0
        s.gate.opened.set()
        await task
    finally:
        s.caller.close()
    assert s.aws.operations() == ["SetDesiredCapacity"] * 2


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (_query_error("ValidationError", 400), PermanentError),
        (_query_error("AccessDenied", 403), PermanentError),
        (_query_error("ScalingActivityInProgress", 400), TemporaryError),
    ],
)
async def test_a_non_retryable_error_is_raised_at_once(
    answer: tuple[int, bytes], kind: type[Exception]
) -> None:
    s = await _setup(limits={"autoscaling": RateLimit(1.0, 10)}, max_attempts=4)
    s.aws.queue("SetDesiredCapacity", answer)
    try:
        with pytest.raises(kind):
            await s.set_capacity()
    finally:
        s.caller.close()
    assert s.aws.operations() == ["SetDesiredCapacity"]
    assert s.backoffs == []
    assert s.bucket("autoscaling", "SetDesiredCapacity").available == 10 - 1


async def test_server_errors_and_lost_connections_are_retried_with_a_short_backoff() -> None:
    s = await _setup(limits={"autoscaling": RateLimit(1.0, 10)}, max_attempts=4)
    lost = EndpointConnectionError(endpoint_url="https://autoscaling.us-east-1.amazonaws.com")
    s.aws.queue("SetDesiredCapacity", _query_error("InternalFailure", 500), lost)
    try:
        await s.set_capacity()
    finally:
        s.caller.close()
    assert s.aws.operations() == ["SetDesiredCapacity"] * 3
    assert s.backoffs == [pytest.approx(0.05), pytest.approx(0.1)]  # 50 ms base, doubling
    assert s.hooked == [("autoscaling", "SetDesiredCapacity", "ok")]


async def test_retries_end_at_max_attempts_with_the_translated_last_error() -> None:
    s = await _setup(limits={"autoscaling": RateLimit(1.0, 10)}, max_attempts=2)
    s.aws.queue("SetDesiredCapacity", *[_query_error("ServiceUnavailable", 503)] * 2)
    try:
        with pytest.raises(TemporaryError, match="ServiceUnavailable"):
            await s.set_capacity()
    finally:
        s.caller.close()
    assert s.aws.operations() == ["SetDesiredCapacity"] * 2
    assert s.hooked == [("autoscaling", "SetDesiredCapacity", "error")]


def test_backoff_is_capped_at_20_seconds() -> None:
    policy = RetryPolicy(10, random=lambda: 1.0)
    caller = AwsCaller(AwsSettings(default_region=REGION))
    try:
        model = caller.clients.get("autoscaling", REGION, None).meta.service_model
        op = model.operation_model("SetDesiredCapacity")
    finally:
        caller.close()
    throttled = ClientError(
        {
            "Error": {"Code": "Throttling", "Message": "x"},
            "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": {}},
        },
        "SetDesiredCapacity",
    )
    assert [policy.delay(throttled, n, op) for n in range(1, 10)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        20.0,
        20.0,
        20.0,
        20.0,
    ]
    assert policy.delay(throttled, 10, op) is None  # the tenth attempt was the last
    assert policy.delay(throttled, 1, None) is None  # no model: nothing to go by


# --- cancellation -------------------------------------------------------------------------


async def test_a_cancelled_waiter_gives_its_token_back() -> None:
    clock = FakeClock()
    gate = Gate(clock)
    bucket = TokenBucket(RateLimit(1.0, 1), clock=clock, async_sleep=gate.sleep)
    assert await bucket.wait() == 0
    waiters = [asyncio.create_task(bucket.wait()) for _ in range(2)]
    await _until(lambda: gate.waiting == 2, "two waiters")
    assert bucket.available == -2
    for w in waiters:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert all(w.cancelled() for w in waiters)
    assert bucket.available == 0  # no debt left behind by the cancelled waiters
    clock.now += 1.0
    assert await bucket.wait() == 0  # the next token is there after 1 / rate, as if never asked


async def test_a_cancelled_call_sends_nothing_and_leaves_no_debt(setup: Setup) -> None:
    await setup.set_capacity("first")
    task = asyncio.create_task(setup.set_capacity("cancelled"))
    await _until(lambda: setup.gate.waiting == 1, "the write waiting for its token")
    assert setup.bucket("autoscaling", "SetDesiredCapacity").available == -1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert setup.bucket("autoscaling", "SetDesiredCapacity").available == 0
    assert setup.aws.operations() == ["SetDesiredCapacity"]
    assert setup.caller.running[("autoscaling", REGION)] == 0
    assert setup.hooked == [("autoscaling", "SetDesiredCapacity", "ok")]


async def test_a_token_awaited_for_a_request_never_sent_goes_back(setup: Setup) -> None:
    with pytest.raises(TemporaryError, match="ParamValidationError"):  # botocore sends nothing
        await setup.caller.call(
            "autoscaling", "SetDesiredCapacity", region=None, resource="group", Nope=1
        )
    assert setup.aws.operations() == []
    assert setup.backoffs == []  # not retried
    assert setup.bucket("autoscaling", "SetDesiredCapacity").available == 1


# --- requests made inside a worker thread (AssumeRole) -----------------------------------


async def test_assume_role_takes_sts_tokens_in_the_thread_and_retries_there() -> None:
    s = await _setup(limits={"sts": RateLimit(1.0, 10)}, max_attempts=3, jitter=0.0)
    s.aws.queue("AssumeRole", _query_error("Throttling", 400))
    role = RoleRef(ROLE, "shop")
    try:
        # a client made outside AwsCaller: AssumeRole happens in the thread that asks for it
        await asyncio.to_thread(s.caller.clients.get, "sqs", REGION, role)
        out = await s.caller.call("sqs", "ListQueues", region=None, role=role, resource="q")
        assert out["ResponseMetadata"]["HTTPStatusCode"] == 200
    finally:
        s.caller.close()
    assert s.aws.operations() == ["AssumeRole", "AssumeRole", "ListQueues"]
    assert s.caller.clients.attempts[("sts", "AssumeRole")] == 2
    assert s.caller.clients.calls[("sts", "AssumeRole")] == 1
    assert s.bucket("sts").available == 10 - 2  # each AssumeRole attempt took a token
    assert s.backoffs == []  # backed off in the thread, not on the loop


def test_a_request_made_on_a_client_directly_still_takes_a_token() -> None:
    caller = AwsCaller(AwsSettings(default_region=REGION), limiters=RateLimiters(clock=FakeClock()))
    try:
        aws = FakeAws(caller)
        client = caller.clients.get("autoscaling", REGION, None)
        before = caller.clients.limiters.bucket(
            "autoscaling", REGION, "SetDesiredCapacity"
        ).available
        client.set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=2)
        after = caller.clients.limiters.bucket(
            "autoscaling", REGION, "SetDesiredCapacity"
        ).available
    finally:
        caller.close()
    assert before - after == 1
    assert aws.operations() == ["SetDesiredCapacity"]


async def test_a_roles_first_call_awaits_its_sts_token_on_the_loop_and_assumes_once() -> None:
    s = await _setup(limits={"sts": RateLimit(1.0, 1)})
    role = RoleRef(ROLE, "shop")
    order: list[str] = []
    try:
        await s.bucket("sts").wait()  # the sts bucket is empty now
        calls = {
            f"role-{i}": asyncio.create_task(
                s.caller.call("sqs", "ListQueues", region=None, role=role, resource="q")
            )
            for i in range(2)
        }
        _done_order(calls, order)
        await _until(lambda: s.gate.waiting == 1, "one caller waiting for the sts token")
        for _ in range(10):  # the other waits for the role, on the loop too
            await asyncio.sleep(0)
        assert s.gate.waiting == 1
        assert s.aws.operations() == []
        assert s.caller.running[("sts", REGION)] == s.caller.running[("sqs", REGION)] == 0
        await s.set_capacity()  # another service's call meanwhile
        order.append("other")
        s.gate.opened.set()
        await asyncio.gather(*calls.values())
    finally:
        s.caller.close()
    assert order[0] == "other"
    assert s.aws.operations() == ["SetDesiredCapacity", "AssumeRole", "ListQueues", "ListQueues"]
    [assume] = [x for x in s.aws.sent if x.operation == "AssumeRole"]
    assert assume.thread.startswith(f"stackscaler-aws-sts-{REGION}")  # not an sqs thread
    assert s.caller.clients.calls[("sts", "AssumeRole")] == 1
    assert s.bucket("sts").available == 0  # one token for the one AssumeRole, none in debt
    assert s.gate.asked == [1.0]


async def test_a_call_cancelled_in_flight_still_counts_once_and_a_queued_one_never() -> None:
    """A tick cancelled (lost lease, deadline) while its request is in a worker thread:
    the request may reach AWS, so the call counts once it ends; a request still queued
    for a thread is never sent and counts nothing."""
    s = await _setup(max_workers=1)
    try:
        client = s.caller.clients.get("autoscaling", REGION, None)
        entered, release = threading.Event(), threading.Event()

        def hold(**_: Any) -> None:
            entered.set()
            release.wait(HANG)

        client.meta.events.register_first("before-send", hold)
        sending = asyncio.create_task(s.set_capacity("web", 3))
        await _until(entered.is_set, "the first request in the only worker thread")
        queued = asyncio.create_task(s.set_capacity("web", 4))
        await _until(
            lambda: s.caller._pool("autoscaling", REGION)._work_queue.qsize() == 1, "queued"
        )
        for task in (sending, queued):
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert s.hooked == []  # not yet: the first one is still in flight
        release.set()
        await _until(lambda: bool(s.hooked), "the in-flight call counted")
        await asyncio.sleep(0.05)  # room for a second, wrong count to show
        assert s.hooked == [("autoscaling", "SetDesiredCapacity", "ok")]
        assert s.aws.operations("autoscaling") == ["SetDesiredCapacity"]
    finally:
        s.caller.close()
