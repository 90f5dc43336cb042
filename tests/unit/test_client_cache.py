"""The client cache without a network: sessions per (role, namespace), LRU, locking.

STS is botocore's own ``Stubber`` on the cache's STS client: every AssumeRole
is checked against the parameters it must carry and counted. Threads are
joined with a timeout as a hang guard only; nothing asserts on timing.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber

from stackscaler.aws import AwsCaller, AwsSettings, RoleRef, default_assume_role_params
from stackscaler.aws.clients import NAMESPACE_TAG, ClientCache, session_name, tag_value
from stackscaler.aws.ratelimit import RateLimiters
from stackscaler.errors import AccessDenied

REGION = "us-east-1"
ARN = "arn:aws:iam::123456789012:role/stackscaler-web"
HANG = 20.0
SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$", re.ASCII)


def credentials(expires_in: timedelta = timedelta(hours=1)) -> dict[str, Any]:
    return {
        "Credentials": {
            "AccessKeyId": "ASIAEXAMPLEEXAMPLE01",
            "SecretAccessKey": "secret",
            "SessionToken": "token",
            "Expiration": datetime.now(UTC) + expires_in,
        }
    }


class Sts:
    """The cache's STS client under a Stubber: queue answers, count AssumeRole calls."""

    def __init__(self, cache: ClientCache) -> None:
        self.cache = cache
        self.client = cache.get("sts", REGION, None)
        self.assumed = 0
        """AssumeRole calls made (the Stubber answers before the cache's own call counter)."""
        self.client.meta.events.register("before-parameter-build.sts.AssumeRole", self._count)
        self.stub = Stubber(self.client)
        self.stub.activate()

    def _count(self, **_: Any) -> None:
        self.assumed += 1

    def answer(self, role: RoleRef, expires_in: timedelta = timedelta(hours=1)) -> None:
        self.stub.add_response(
            "assume_role", credentials(expires_in), self.cache.assume_role_request(role)
        )

    def deny(self, role: RoleRef) -> None:
        self.stub.add_client_error(
            "assume_role",
            service_error_code="AccessDenied",
            service_message="not authorized to perform sts:AssumeRole",
            http_status_code=403,
            expected_params=self.cache.assume_role_request(role),
        )


def make_cache(
    max_sessions: int = 256, params: Callable[[RoleRef], Mapping[str, Any]] | None = None
) -> ClientCache:
    settings = AwsSettings(default_region=REGION, max_sessions=max_sessions)
    return ClientCache(settings, RateLimiters(), assume_role_params=params)


@pytest.fixture
def cache() -> ClientCache:
    return make_cache()


def in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a thread; a hang fails the test (daemon: it cannot freeze pytest)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(_outcome(fn)), daemon=True)
    thread.start()
    thread.join(HANG)
    assert not thread.is_alive(), "the client cache deadlocked"
    [(ok, value)] = out
    if not ok:
        raise value
    return value


def _outcome(fn: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, fn()
    except BaseException as exc:
        return False, exc


# --- RoleRef and the default AssumeRole parameters ---------------------------------


def test_role_ref_is_a_hashable_value_per_arn_and_namespace() -> None:
    assert RoleRef.of(None, "shop") is None
    assert RoleRef.of(ARN, None) == RoleRef(ARN, "default")
    assert RoleRef(ARN, "shop") == RoleRef(ARN, "shop")
    assert len({RoleRef(ARN, "shop"), RoleRef(ARN, "blog"), RoleRef(ARN, "shop")}) == 2
    with pytest.raises(AttributeError):
        RoleRef(ARN, "shop").namespace = "blog"  # type: ignore[misc]


def test_default_params_name_and_tag_the_namespace() -> None:
    assert default_assume_role_params(RoleRef(ARN, "shop")) == {
        "RoleSessionName": "stackscaler-shop",
        "Tags": [{"Key": NAMESPACE_TAG, "Value": "shop"}],
    }


@pytest.mark.parametrize(
    "namespace",
    ["shop", "a" * 63, "x" * 300, "", "tëam/one two!", "ns\nforged"],
    ids=["plain", "longest-k8s", "very-long", "empty", "unicode", "newline"],
)
def test_session_names_fit_aws_pattern(namespace: str) -> None:
    name = session_name(namespace)
    assert SESSION_NAME.match(name), name
    assert name.startswith("stackscaler-")


def test_long_session_names_stay_distinct() -> None:
    a, b = session_name("a" * 70 + "x"), session_name("a" * 70 + "y")
    assert len(a) == len(b) == 64 and a != b
    assert SESSION_NAME.match(session_name("", prefix="")), "at least two characters"


def test_tag_values_fit_aws_charset_and_length() -> None:
    assert tag_value("shop") == "shop"
    assert tag_value("tëam one_.:/=+-@") == "tëam one_.:/=+-@"  # letters, spaces, the extras
    assert tag_value("a\nb;c*d") == "a_b_c_d"
    assert len(tag_value("n" * 1000)) == 256


def test_callable_keys_win_over_defaults_and_role_arn_is_the_refs() -> None:
    cache = make_cache(
        params=lambda role: {
            "ExternalId": f"ext-{role.namespace}",
            "RoleSessionName": "custom",
            "DurationSeconds": 900,
            "RoleArn": "arn:aws:iam::999999999999:role/elsewhere",
        }
    )
    assert cache.assume_role_request(RoleRef(ARN, "shop")) == {
        "RoleArn": ARN,
        "RoleSessionName": "custom",
        "DurationSeconds": 900,
        "ExternalId": "ext-shop",
        "Tags": [{"Key": NAMESPACE_TAG, "Value": "shop"}],
    }


def test_settings_read_the_session_bound_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STACKSCALER_AWS_MAX_SESSIONS", raising=False)
    assert AwsSettings.from_env().max_sessions == 64
    monkeypatch.setenv("STACKSCALER_AWS_MAX_SESSIONS", "8")
    assert AwsSettings.from_env().max_sessions == 8
    with pytest.raises(ValueError):
        make_cache(max_sessions=0)


# --- sessions ---------------------------------------------------------------------


def test_a_role_in_two_namespaces_gets_two_sessions(cache: ClientCache) -> None:
    sts = Sts(cache)
    shop, blog = RoleRef(ARN, "shop"), RoleRef(ARN, "blog")
    sts.answer(shop)
    sts.answer(blog)
    a = in_thread(lambda: cache.get("autoscaling", REGION, shop))
    b = in_thread(lambda: cache.get("autoscaling", REGION, blog))
    assert a is not b
    assert in_thread(lambda: cache.get("autoscaling", REGION, shop)) is a
    assert sts.assumed == 2
    sts.stub.assert_no_pending_responses()


def test_least_recently_used_session_is_evicted_with_its_clients() -> None:
    cache = make_cache(max_sessions=2)
    sts = Sts(cache)
    r1, r2, r3 = (RoleRef(ARN, ns) for ns in ("one", "two", "three"))
    for role in (r1, r2):
        sts.answer(role)
    c1 = in_thread(lambda: cache.get("sqs", REGION, r1))
    in_thread(lambda: cache.get("sqs", REGION, r2))
    assert in_thread(lambda: cache.get("sqs", REGION, r1)) is c1  # r1 used last: r2 is LRU
    sts.answer(r3)
    in_thread(lambda: cache.get("sqs", REGION, r3))
    assert cache.roles == [r1, r3]
    assert sts.assumed == 3

    sts.answer(r2)  # the evicted role: a fresh AssumeRole and a new client
    in_thread(lambda: cache.get("sqs", REGION, r2))
    assert sts.assumed == 4
    assert cache.roles == [r3, r2]  # r1 was least recently used this time
    sts.answer(r1)
    assert in_thread(lambda: cache.get("sqs", REGION, r1)) is not c1
    assert sts.assumed == 5
    sts.stub.assert_no_pending_responses()


def test_concurrent_first_calls_of_a_role_assume_it_once(cache: ClientCache) -> None:
    sts = Sts(cache)
    role = RoleRef(ARN, "shop")
    sts.answer(role)
    clients: list[Any] = []
    threads = [
        threading.Thread(target=lambda: clients.append(cache.get("sqs", REGION, role)), daemon=True)
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG)
    assert not any(t.is_alive() for t in threads), "the client cache deadlocked"
    assert len(clients) == 8 and len({id(c) for c in clients}) == 1
    assert sts.assumed == 1


def test_the_cache_lock_is_free_while_sts_answers(cache: ClientCache) -> None:
    """A slow AssumeRole holds up its own role only: other clients are made meanwhile."""
    sts = Sts(cache)
    slow = RoleRef(ARN, "slow")
    sts.answer(slow)
    in_sts, release = threading.Event(), threading.Event()

    def hold(params: Mapping[str, Any], **_: Any) -> None:
        if params.get("RoleSessionName") == "stackscaler-slow":
            in_sts.set()
            assert release.wait(HANG)

    sts.client.meta.events.register("before-parameter-build.sts.AssumeRole", hold)
    waiting = threading.Thread(target=lambda: cache.get("sqs", REGION, slow), daemon=True)
    waiting.start()
    try:
        assert in_sts.wait(HANG)
        in_thread(lambda: cache.get("sqs", REGION, None))
        in_thread(lambda: cache.get("cloudwatch", "eu-west-1", None))
        assert cache.roles == []  # the slow session is not cached before STS answered
    finally:
        release.set()
        waiting.join(HANG)
    assert not waiting.is_alive()
    assert cache.roles == [slow]


def test_credential_refresh_calls_sts_through_the_cache_without_deadlock(
    cache: ClientCache,
) -> None:
    sts = Sts(cache)
    role = RoleRef(ARN, "shop")
    # 60 s left is inside botocore's mandatory refresh window: every use refreshes
    for _ in range(3):
        sts.answer(role, expires_in=timedelta(seconds=60))
    in_thread(lambda: cache.get("sqs", REGION, role))
    credentials = cache._session(role, REGION).session.get_credentials()
    assert credentials is not None
    in_thread(credentials.get_frozen_credentials)
    in_thread(credentials.get_frozen_credentials)
    assert sts.assumed == 3
    sts.stub.assert_no_pending_responses()


def test_a_denied_assume_role_is_access_denied_and_is_not_cached(cache: ClientCache) -> None:
    sts = Sts(cache)
    role = RoleRef(ARN, "shop")
    sts.deny(role)
    with pytest.raises(AccessDenied) as info:
        in_thread(lambda: cache.get("sqs", REGION, role))
    message = str(info.value)
    assert "sts:AssumeRole" in message and ARN in message and "namespace shop" in message
    assert cache.roles == []
    sts.answer(role)  # the next call tries again
    in_thread(lambda: cache.get("sqs", REGION, role))
    assert cache.roles == [role]
    assert sts.assumed == 2


def test_a_failed_refresh_raises_access_denied_and_a_later_one_recovers(
    cache: ClientCache,
) -> None:
    sts = Sts(cache)
    role = RoleRef(ARN, "shop")
    sts.answer(role, expires_in=timedelta(seconds=60))
    in_thread(lambda: cache.get("sqs", REGION, role))
    credentials = cache._session(role, REGION).session.get_credentials()
    assert credentials is not None
    sts.deny(role)
    with pytest.raises(AccessDenied, match="sts:AssumeRole"):
        in_thread(credentials.get_frozen_credentials)
    sts.answer(role)
    assert in_thread(credentials.get_frozen_credentials).token == "token"


# --- AwsCaller ------------------------------------------------------------------------


@pytest.fixture
def caller() -> Iterator[AwsCaller]:
    c = AwsCaller(AwsSettings(default_region=REGION))
    try:
        yield c
    finally:
        c.close()


async def test_caller_rejects_the_old_role_arn_keyword(caller: AwsCaller) -> None:
    with pytest.raises(TypeError, match="role=RoleRef"):
        await caller.call("sqs", "ListQueues", region=None, resource="queues", role_arn=ARN)


async def test_caller_passes_assume_role_errors_through_unchanged(caller: AwsCaller) -> None:
    sts = Sts(caller.clients)
    role = RoleRef(ARN, "shop")
    sts.deny(role)
    with pytest.raises(AccessDenied) as info:
        await caller.call("sqs", "ListQueues", region=None, role=role, resource="queues")
    assert "sts:AssumeRole" in str(info.value)
    assert "sqs:ListQueues" not in str(info.value)
