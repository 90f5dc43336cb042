"""boto3 clients, cached per (service, region, role), called off the event loop.

* Credentials come from the default chain (environment, IRSA web identity,
  EKS Pod Identity, instance profile), or, for a resource with ``roleArn``,
  from STS AssumeRole on top of it, refreshed before they expire. A role is
  a :class:`RoleRef`, the ARN and the namespace it is assumed for: each
  namespace gets its own session, session name and session tags, and the
  AssumeRole arguments come from an ``assume_role_params`` callable
  (ExternalId per namespace, for example). At most ``max_sessions`` sessions
  are cached, least recently used evicted.
* :class:`AwsCaller` makes up to ``max_attempts`` attempts of a call with
  botocore's standard-mode retry rules (:mod:`stackscaler.aws.retries`),
  each a single botocore attempt. Every attempt, retries included, first
  awaits a token from the (service, region) bucket *on the event loop*, and
  the backoff between attempts is awaited there too: only a request ready to
  go holds a worker thread, so reads never wait behind rate-limited writes.
* Each (service, region) has its own bounded thread pool
  (``max_workers`` threads): a slow service or region cannot take the
  threads another one needs. Calls never block the event loop.
* AssumeRole, at a role's first use or credential refresh, happens inside a
  worker thread (botocore asks for credentials there); it takes its ``sts``
  token and backs off in that thread, the one wait left off the loop.
* Failures are translated into the error tree at this boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import threading
import time
import unicodedata
import weakref
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.session
from botocore import xform_name
from botocore.config import Config
from botocore.credentials import RefreshableCredentials

from stackscaler import __version__, fence
from stackscaler.aws import timestamps
from stackscaler.aws.errors import translate
from stackscaler.aws.ratelimit import RateLimit, RateLimiters, TokenBucket, access
from stackscaler.aws.retries import RetryPolicy
from stackscaler.errors import AccessDenied, Deferred, PermanentError, StackscalerError

CallHook = Callable[[str, str, str], None]
"""(service, operation, outcome) -> None; outcome is ok, throttled, denied, error."""


@dataclass(frozen=True)
class AwsSettings:
    """Process-wide AWS settings, read once at start-up."""

    default_region: str | None = None
    endpoint_url: str | None = None
    """Send every call here (a stand-in such as moto on loopback); None for real AWS."""
    max_attempts: int = 4
    """Attempts of one call at most, the first included (botocore's ``total_max_attempts``)."""
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    max_workers: int = 8
    """Worker threads (and HTTP connections) per (service, region): requests in flight at once.

    Calls waiting for a rate-limit token or a retry backoff hold no thread.
    """
    limits: dict[str, RateLimit] = field(default_factory=dict)
    session_name: str = "stackscaler"
    """Prefix of the default RoleSessionName: ``<session_name>-<namespace>``."""
    max_sessions: int = 64
    """Assumed-role sessions cached at most (per role ARN and namespace), LRU evicted."""

    @classmethod
    def from_env(cls) -> AwsSettings:
        max_sessions = os.environ.get("STACKSCALER_AWS_MAX_SESSIONS")
        return cls(
            default_region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            endpoint_url=os.environ.get("STACKSCALER_AWS_ENDPOINT_URL") or None,
            max_sessions=int(max_sessions) if max_sessions else cls.max_sessions,
        )


@dataclass(frozen=True)
class RoleRef:
    """A role assumed on behalf of one namespace.

    Sessions are cached per RoleRef, not per ARN: a role granted to two
    namespaces gets two sessions, each with its own session name, session
    tags and ExternalId, so the role's trust policy can tell them apart.
    """

    arn: str
    namespace: str

    @classmethod
    def of(cls, arn: str | None, namespace: str | None) -> RoleRef | None:
        """The role a resource in ``namespace`` (None: ``default``) names, or None without one."""
        return cls(arn, namespace or "default") if arn else None

    def __str__(self) -> str:
        return f"{self.arn} for namespace {self.namespace}"


_ClientKey = tuple[str, str, RoleRef | None]
"""(service, region, role): one boto3 client each."""

AssumeRoleParams = Callable[[RoleRef], Mapping[str, Any]]
"""Extra AssumeRole keyword arguments for a role (ExternalId, Tags, RoleSessionName, ...)."""

NAMESPACE_TAG = "stackscaler:namespace"
"""The session tag naming the namespace a session acts for."""
_SESSION_NAME_MAX = 64
_TAG_VALUE_MAX = 256
_TAG_VALUE_EXTRA = frozenset("_.:/=+-@")


def session_name(namespace: str, prefix: str = "stackscaler") -> str:
    """``<prefix>-<namespace>`` within AWS's RoleSessionName rules: [\\w+=,.@-], 2 to 64 chars.

    A name cut to 64 characters ends in a hash of the whole, so two long
    namespaces never share a session name.
    """
    whole = f"{prefix}-{namespace}"
    name = re.sub(r"[^A-Za-z0-9_+=,.@-]", "-", whole)
    if len(name) > _SESSION_NAME_MAX:
        digest = hashlib.sha256(whole.encode()).hexdigest()[:8]
        name = f"{name[: _SESSION_NAME_MAX - 9]}-{digest}"
    return name if len(name) >= 2 else name.ljust(2, "-")


def tag_value(value: str) -> str:
    """``value`` within AWS's session tag value rules: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@], 256 chars."""
    return "".join(
        c if unicodedata.category(c)[0] in "LNZ" or c in _TAG_VALUE_EXTRA else "_" for c in value
    )[:_TAG_VALUE_MAX]


def default_assume_role_params(role: RoleRef, *, prefix: str = "stackscaler") -> dict[str, Any]:
    """What every AssumeRole carries unless the operator's callable says otherwise."""
    return {
        "RoleSessionName": session_name(role.namespace, prefix),
        "Tags": [{"Key": NAMESPACE_TAG, "Value": tag_value(role.namespace)}],
    }


@dataclass
class _Assumed:
    """A cached assumed-role session and the keys of the clients made from it."""

    session: botocore.session.Session
    clients: set[_ClientKey] = field(default_factory=set)
    creating: threading.Lock = field(default_factory=threading.Lock)
    """Held while a client is made from ``session`` (botocore sessions are not thread-safe)."""


class _Attempt(threading.local):
    """Per worker thread: what the next request it sends has settled on the event loop."""

    def __init__(self) -> None:
        self.paid: list[TokenBucket] = []
        """Buckets whose token :class:`AwsCaller` awaited for a request this thread sends next."""
        self.retry_of: tuple[str, str] | None = None
        """(service, operation) when the next call is a retry: counted as an attempt, not a call."""


_ATTEMPT = _Attempt()


@contextmanager
def _prepaid(*buckets: TokenBucket) -> Iterator[None]:
    """Tokens awaited on the event loop for the requests this thread sends next.

    A request of one of these buckets takes its token instead of waiting in
    the thread; the tokens no request took go back to their buckets.
    """
    _ATTEMPT.paid = list(buckets)
    try:
        yield
    finally:
        unused, _ATTEMPT.paid = _ATTEMPT.paid, []
        for bucket in unused:
            bucket.give_back()


class ClientCache:
    """boto3 clients per (service, region, RoleRef); thread-safe, never deadlocks.

    ``_lock`` guards the dictionaries and counters only and is never held
    while a session or client is made or STS is called: each client and each
    assumed-role session is made under a lock of its own key (checked again
    once that lock is held), so one slow or failing AssumeRole delays only
    the callers of that role. Credential refresh calls STS through ``get``
    like any other caller. At most ``settings.max_sessions`` assumed-role
    sessions are kept; the least recently used one goes, with its clients.
    A failed AssumeRole caches nothing: the next call tries again.
    """

    def __init__(
        self,
        settings: AwsSettings,
        limiters: RateLimiters,
        hook: CallHook | None = None,
        *,
        assume_role_params: AssumeRoleParams | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if settings.max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.settings = settings
        self.limiters = limiters
        self.retry = retry or RetryPolicy(settings.max_attempts)
        """Decides AssumeRole's retries here, and every call's in :class:`AwsCaller`."""
        self.calls: Counter[tuple[str, str]] = Counter()
        """API calls made, by (service, operation): what batching is measured by."""
        self.attempts: Counter[tuple[str, str]] = Counter()
        """HTTP attempts sent, retries included."""
        self._hook = hook
        self._assume_role_params = assume_role_params
        self._clients: dict[_ClientKey, Any] = {}
        self._default: _Assumed | None = None
        """The default credential chain (no role); its data loader is shared by every session."""
        self._sessions: OrderedDict[RoleRef, _Assumed] = OrderedDict()
        """Assumed-role sessions, least recently used first."""
        self._making: dict[_ClientKey | RoleRef, threading.Lock] = {}
        """One lock per client or session being made."""
        self._lock = threading.Lock()

    def region(self, region: str | None) -> str:
        resolved = region or self.settings.default_region or boto3.Session().region_name
        if not resolved:
            raise PermanentError(
                "no AWS region: set the resource's region, or AWS_REGION for the operator"
            )
        return resolved

    @property
    def roles(self) -> list[RoleRef]:
        """The roles with a cached session, least recently used first."""
        with self._lock:
            return list(self._sessions)

    def assume_role_request(self, role: RoleRef) -> dict[str, Any]:
        """The AssumeRole arguments for ``role``: defaults, then the callable's keys over them.

        RoleArn is always ``role.arn``: the cache key and the assumed role never differ.
        """
        params: dict[str, Any] = {
            "DurationSeconds": 3600,
            **default_assume_role_params(role, prefix=self.settings.session_name),
        }
        if self._assume_role_params is not None:
            params.update(self._assume_role_params(role))
        params["RoleArn"] = role.arn
        return params

    @contextmanager
    def _making_of(self, key: _ClientKey | RoleRef) -> Iterator[None]:
        """Hold the lock of one key being made (never the cache lock)."""
        with self._lock:
            lock = self._making.setdefault(key, threading.Lock())
        with lock:
            try:
                yield
            finally:
                with self._lock:
                    if self._making.get(key) is lock:
                        del self._making[key]

    def _default_session(self) -> _Assumed:
        with self._lock:
            if self._default is not None:
                return self._default
        session = botocore.session.get_session()
        timestamps.install(session)
        with self._lock:
            if self._default is None:
                self._default = _Assumed(session)
            return self._default

    def _cached_session(self, role: RoleRef) -> _Assumed | None:
        with self._lock:
            entry = self._sessions.get(role)
            if entry is not None:
                self._sessions.move_to_end(role)
            return entry

    def _session(self, role: RoleRef, region: str) -> _Assumed:
        entry = self._cached_session(role)
        if entry is not None:
            return entry
        with self._making_of(role):
            entry = self._cached_session(role)
            if entry is not None:
                return entry
            session = self._assume(role, region)  # no cache lock held: it calls STS
            with self._lock:
                entry = self._sessions.setdefault(role, _Assumed(session))
                self._sessions.move_to_end(role)
                while len(self._sessions) > self.settings.max_sessions:
                    _, evicted = self._sessions.popitem(last=False)
                    for key in evicted.clients:
                        self._clients.pop(key, None)
            return entry

    def _assume(self, role: RoleRef, region: str) -> botocore.session.Session:
        sts_region = self.settings.default_region or region

        def fetch() -> dict[str, str]:
            # Runs at first use and again from botocore's credential refresh, inside
            # another call of this role: it takes no lock but the STS client's own.
            sts = self.get("sts", sts_region, None)
            params = self.assume_role_request(role)
            creds = self._assume_role(lambda: sts.assume_role(**params), sts, role, sts_region)
            if self._hook is not None:
                self._hook("sts", "AssumeRole", "ok")
            expiration = creds["Expiration"]
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": expiration.isoformat()
                if isinstance(expiration, datetime)
                else (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            }

        refreshable = RefreshableCredentials.create_from_metadata(
            metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
        )
        session = botocore.session.Session()
        timestamps.install(session)
        session._credentials = refreshable  # the documented way to plug refreshable credentials
        # One data loader for every session: each would otherwise load and keep its own
        # copy of the service models (about 14 MB a session for three services). Plain
        # botocore sessions: boto3.Session would add a search path to the shared loader
        # each time.
        session.register_component(
            "data_loader", self._default_session().session.get_component("data_loader")
        )
        return session

    def _assume_role(
        self, send: Callable[[], Any], sts: Any, role: RoleRef, region: str
    ) -> dict[str, Any]:
        """AssumeRole with standard-mode retries, in this worker thread.

        botocore asks for credentials inside a request, so this cannot wait on
        the event loop: each attempt takes its ``sts`` token (blocking, in the
        STS client's ``before-send``) and backs off here. It happens once per
        role and namespace an hour.
        """
        model = sts.meta.service_model.operation_model("AssumeRole")
        outer = _ATTEMPT.retry_of
        attempt = 0
        try:
            while True:
                attempt += 1
                _ATTEMPT.retry_of = ("sts", "AssumeRole") if attempt > 1 else None
                try:
                    return send()["Credentials"]  # type: ignore[no-any-return]
                except Exception as exc:
                    delay = self.retry.delay(exc, attempt, model)
                    if delay is None:
                        raise self._assume_failed(exc, role, region) from exc
                time.sleep(delay)
        finally:
            _ATTEMPT.retry_of = outer

    def _assume_failed(self, exc: Exception, role: RoleRef, region: str) -> StackscalerError:
        err = translate(
            exc,
            service="sts",
            operation="AssumeRole",
            resource=f"role {role.arn} (for namespace {role.namespace})",
            region=region,
        )
        if isinstance(err, AccessDenied):
            err = AccessDenied(
                f"{err}; the role's trust policy must also allow the operator's role "
                "sts:AssumeRole and sts:TagSession with the ExternalId and session tags "
                "stackscaler sends for this namespace"
            )
        if self._hook is not None:
            self._hook("sts", "AssumeRole", _outcome(err))
        return err

    def sts_region(self, region: str) -> str:
        """Where AssumeRole goes for a call in ``region``."""
        return self.settings.default_region or region

    def sts_due(self, role: RoleRef) -> bool:
        """Whether a call as ``role`` would call STS now: no session, or credentials to refresh."""
        with self._lock:
            entry = self._sessions.get(role)
        if entry is None:
            return True
        credentials = entry.session.get_credentials()
        return credentials is None or bool(credentials.refresh_needed())

    def prepare(self, role: RoleRef, region: str) -> None:
        """Assume ``role``, or refresh its credentials, if due (blocking: in a worker thread)."""
        credentials = self._session(role, region).session.get_credentials()
        if credentials is not None:
            credentials.get_frozen_credentials()  # refreshes when due

    def get(self, service: str, region: str, role: RoleRef | None) -> Any:
        key: _ClientKey = (service, region, role)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                if role is not None and role in self._sessions:
                    self._sessions.move_to_end(role)
                return client
        with self._making_of(key):
            with self._lock:
                client = self._clients.get(key)
                if client is not None:
                    return client
            entry = self._default_session() if role is None else self._session(role, region)
            with entry.creating:  # no cache lock held; making a client never calls STS
                client = self._client(entry.session, service, region)
            with self._lock:
                if role is not None:
                    if self._sessions.get(role) is not entry:
                        return client  # evicted meanwhile: use it once, cache nothing
                    entry.clients.add(key)
                return self._clients.setdefault(key, client)

    def _client(self, session: botocore.session.Session, service: str, region: str) -> Any:
        s = self.settings
        config = Config(
            region_name=region,
            retries={"mode": "standard", "total_max_attempts": 1},  # AwsCaller retries
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            max_pool_connections=s.max_workers,
            user_agent_extra=f"stackscaler/{__version__}",
        )
        client = session.create_client(service, config=config, endpoint_url=s.endpoint_url)

        def before_send(event_name: str = "", **_: Any) -> None:
            # event_name is before-send.<service-id>.<Operation>
            bucket = self.limiters.bucket(service, region, event_name.rsplit(".", 1)[-1])
            if bucket in _ATTEMPT.paid:  # AwsCaller awaited this token on the event loop
                _ATTEMPT.paid.remove(bucket)
                return
            bucket.acquire()  # a request made in a worker thread (AssumeRole): wait here

        def before_call(model: Any, **_: Any) -> None:
            if _ATTEMPT.retry_of == (service, model.name):  # an attempt, not a new call
                _ATTEMPT.retry_of = None
                return
            with self._lock:
                self.calls[(service, model.name)] += 1

        def count_attempt(event_name: str = "", **_: Any) -> None:
            with self._lock:  # event_name is before-send.<service-id>.<Operation>
                self.attempts[(service, event_name.rsplit(".", 1)[-1])] += 1

        client.meta.events.register("before-send", before_send)
        client.meta.events.register("before-send", count_attempt)
        client.meta.events.register("before-call", before_call)
        return client


PREPARE_AGAIN_AFTER = 30.0
"""Seconds before a role whose AssumeRole failed is assumed ahead of a call again."""


class AwsCaller:
    """Runs boto3 operations off the event loop, rate limited, retried, errors translated.

    A call's attempts (at most ``retry.max_attempts``, which is
    ``settings.max_attempts`` unless a policy is given) each await a token
    from the (service, region) bucket on the event loop, then run in the
    (service, region) thread pool of ``settings.max_workers`` threads.
    Backoffs between attempts are awaited on the loop with ``sleep``.
    """

    def __init__(
        self,
        settings: AwsSettings | None = None,
        *,
        limiters: RateLimiters | None = None,
        hook: CallHook | None = None,
        assume_role_params: AssumeRoleParams | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings or AwsSettings.from_env()
        if self.settings.max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.retry = retry or RetryPolicy(self.settings.max_attempts)
        self.clients = ClientCache(
            self.settings,
            limiters or RateLimiters(self.settings.limits),
            hook,
            assume_role_params=assume_role_params,
            retry=self.retry,
        )
        self._hook = hook
        self._sleep = sleep
        self._pools: dict[tuple[str, str], ThreadPoolExecutor] = {}
        self._closed = False
        self._lock = threading.Lock()
        self.running: Counter[tuple[str, str]] = Counter()
        """Attempts running in a worker thread now, by (service, region)."""
        self._preparing: weakref.WeakValueDictionary[RoleRef, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        """Held while a role is assumed or refreshed ahead of its calls."""
        self._not_before: dict[RoleRef, float] = {}

    def _pool(self, service: str, region: str) -> ThreadPoolExecutor:
        """The (service, region)'s own thread pool, made on first use."""
        key = (service, region)
        with self._lock:
            if self._closed:
                raise RuntimeError("the AwsCaller is closed")
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = ThreadPoolExecutor(
                    max_workers=self.settings.max_workers,
                    thread_name_prefix=f"stackscaler-aws-{service}-{region}",
                )
            return pool

    async def call(
        self,
        service: str,
        operation: str,
        *,
        region: str | None,
        role: RoleRef | None = None,
        resource: str,
        **params: Any,
    ) -> dict[str, Any]:
        """Call ``operation`` (the API name, e.g. ``SetDesiredCapacity``) off the loop.

        Retryable failures (standard mode) are tried again up to the attempt
        limit; the last failure, or the first one that is not retryable, is
        raised translated. The hook hears of the call once, with its outcome.
        With ``role``, the call runs as that role assumed for its namespace; a
        failed AssumeRole raises its own error (``AccessDenied`` naming
        ``sts:AssumeRole`` and the role), not one of ``operation``.
        """
        if "role_arn" in params:  # **params would send it to AWS as an API parameter
            raise TypeError("AwsCaller.call takes role=RoleRef(...), not role_arn")
        resolved = self.clients.region(region)
        loop = asyncio.get_running_loop()
        key = (service, resolved)
        bucket = self.clients.limiters.bucket(service, resolved, operation)
        owner = fence.current()  # the tick's lease, asked again right before each send
        send_by = fence.SEND_BY.get() if access(operation) == "write" else None
        models: list[Any] = []
        """The operation's model, once there is a client: what the retry rules read."""

        def run(attempt: int) -> dict[str, Any]:
            with self._lock:
                self.running[key] += 1
            try:
                with _prepaid(bucket):  # given back if nothing is sent (a stub, bad parameters)
                    client = self.clients.get(service, resolved, role)
                    if not models:
                        models.append(client.meta.service_model.operation_model(operation))
                    method = getattr(client, xform_name(operation))
                    fence.check(owner, f"{service}:{operation}")
                    _ATTEMPT.retry_of = (service, operation) if attempt > 1 else None
                    try:
                        return method(**params)  # type: ignore[no-any-return]
                    finally:
                        _ATTEMPT.retry_of = None
            finally:
                with self._lock:
                    self.running[key] -= 1

        attempt = 0
        while True:
            attempt += 1
            try:
                if role is not None:
                    await self._prepare(role, resolved)
                await self._take(bucket, send_by, operation)  # on the loop: holds no thread
                sent = self._pool(service, resolved).submit(run, attempt)
                try:
                    result = await asyncio.wrap_future(sent)
                except asyncio.CancelledError:
                    self._count_when_done(
                        sent,
                        loop,
                        service=service,
                        operation=operation,
                        resource=resource,
                        region=resolved,
                    )
                    raise
            except StackscalerError:  # already ours: no region, a failed AssumeRole (or refresh)
                raise
            except Exception as exc:
                delay = self.retry.delay(exc, attempt, models[0] if models else None)
                if delay is not None:
                    await self._sleep(delay)
                    continue
                err = translate(
                    exc, service=service, operation=operation, resource=resource, region=resolved
                )
                if self._hook is not None:
                    self._hook(service, operation, _outcome(err))
                raise err from exc
            if self._hook is not None:
                self._hook(service, operation, "ok")
            return result

    def _count_when_done(
        self,
        sent: Future[dict[str, Any]],
        loop: asyncio.AbstractEventLoop,
        *,
        service: str,
        operation: str,
        resource: str,
        region: str,
    ) -> None:
        """The caller was cancelled (a lost lease, a tick's deadline) while its request was
        in a worker thread: once it ends, it still counts (the hook counts calls sent, and
        this one may have reached AWS). One never started, or stopped by the fence before
        it was sent, counts nothing, as on the normal path."""
        hook = self._hook
        if hook is None:
            return

        def done(f: Future[dict[str, Any]]) -> None:
            if f.cancelled():
                return
            exc = f.exception()
            if isinstance(exc, StackscalerError):
                return
            outcome = "ok"
            if isinstance(exc, Exception):
                outcome = _outcome(
                    translate(
                        exc, service=service, operation=operation, resource=resource, region=region
                    )
                )
            with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                loop.call_soon_threadsafe(hook, service, operation, outcome)

        sent.add_done_callback(done)

    async def _take(
        self, bucket: TokenBucket, send_by: fence.SendBy | None, operation: str
    ) -> None:
        """Await ``bucket``'s token; a write past the tick's send-by time raises Deferred."""
        budget = send_by.budget() if send_by is not None else None
        if await bucket.wait(within=budget) is None:
            raise Deferred(
                f"{operation} not sent: its turn in the client-side write limit "
                f"({bucket.limit.rate:g}/s) comes after this tick's send-by time "
                f"({budget:.1f} s away); the next tick decides again",
                delay=0.0,
            )
        if send_by is not None:
            send_by.sent = True

    async def _prepare(self, role: RoleRef, region: str) -> None:
        """Assume ``role`` (or refresh it) before a call needs it, its sts token awaited here.

        One caller per role does it, in the sts pool, while the others of that
        role wait on the loop. A failed AssumeRole caches no session: the next
        call tries again. A failed refresh leaves the session (its credentials
        still valid, due for refresh): for ``PREPARE_AGAIN_AFTER`` seconds the
        next try is left to botocore, inside a call's thread, as it would be.
        """
        if not self.clients.sts_due(role):
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._not_before.get(role, 0.0):
            return
        lock = self._preparing.get(role)
        if lock is None:
            lock = self._preparing[role] = asyncio.Lock()
        async with lock:
            if not self.clients.sts_due(role):
                return
            sts_region = self.clients.sts_region(region)
            sts = self.clients.limiters.bucket("sts", sts_region)
            await sts.wait()

            def prepare() -> None:
                with _prepaid(sts):  # AssumeRole takes it; given back if no one was needed
                    self.clients.prepare(role, region)

            try:
                await loop.run_in_executor(self._pool("sts", sts_region), prepare)
            finally:
                if role in self.clients.roles and self.clients.sts_due(role):  # refresh failed
                    self._not_before[role] = loop.time() + PREPARE_AGAIN_AFTER
                else:
                    self._not_before.pop(role, None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)


def _outcome(err: Exception) -> str:
    return {"Throttled": "throttled", "AccessDenied": "denied", "TargetNotFound": "not_found"}.get(
        type(err).__name__, "error"
    )
