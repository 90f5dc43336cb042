"""boto3 clients, cached per (service, region, role), called off the event loop.

* Credentials come from the default chain (environment, IRSA web identity,
  EKS Pod Identity, instance profile), or, for a resource with ``roleArn``,
  from STS AssumeRole on top of it, refreshed before they expire. A role is
  a :class:`RoleRef`, the ARN and the namespace it is assumed for: each
  namespace gets its own session, session name and session tags, and the
  AssumeRole arguments come from an ``assume_role_params`` callable
  (ExternalId per namespace, for example). At most ``max_sessions`` sessions
  are cached, least recently used evicted.
* botocore retries in ``standard`` mode with a bounded number of attempts;
  every attempt (retries included) takes a token from the (service, region)
  bucket first, so retries stay inside the rate limit.
* Calls run in a bounded thread pool and never block the event loop.
* Failures are translated into the error tree at this boundary.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import threading
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.session
from botocore import xform_name
from botocore.config import Config
from botocore.credentials import RefreshableCredentials

from stackscaler import __version__
from stackscaler.aws.errors import translate
from stackscaler.aws.ratelimit import RateLimit, RateLimiters
from stackscaler.errors import AccessDenied, PermanentError, StackscalerError

CallHook = Callable[[str, str, str], None]
"""(service, operation, outcome) -> None; outcome is ok, throttled, denied, error."""


@dataclass(frozen=True)
class AwsSettings:
    """Process-wide AWS settings, read once at start-up."""

    default_region: str | None = None
    endpoint_url: str | None = None
    """Send every call here (a stand-in such as moto on loopback); None for real AWS."""
    max_attempts: int = 4
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    max_workers: int = 8
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
    ) -> None:
        if settings.max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.settings = settings
        self.limiters = limiters
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
            try:
                creds = sts.assume_role(**params)["Credentials"]
            except Exception as exc:
                raise self._assume_failed(exc, role, sts_region) from exc
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
        session._credentials = refreshable  # the documented way to plug refreshable credentials
        # One data loader for every session: each would otherwise load and keep its own
        # copy of the service models (about 14 MB a session for three services). Plain
        # botocore sessions: boto3.Session would add a search path to the shared loader
        # each time.
        session.register_component(
            "data_loader", self._default_session().session.get_component("data_loader")
        )
        return session

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
            retries={"mode": "standard", "total_max_attempts": s.max_attempts},
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            max_pool_connections=s.max_workers,
            user_agent_extra=f"stackscaler/{__version__}",
        )
        client = session.create_client(service, config=config, endpoint_url=s.endpoint_url)
        bucket = self.limiters.bucket(service, region)

        def before_send(**_: Any) -> None:
            bucket.acquire()

        def before_call(model: Any, **_: Any) -> None:
            with self._lock:
                self.calls[(service, model.name)] += 1

        def count_attempt(event_name: str = "", **_: Any) -> None:
            with self._lock:  # event_name is before-send.<service-id>.<Operation>
                self.attempts[(service, event_name.rsplit(".", 1)[-1])] += 1

        client.meta.events.register("before-send", before_send)
        client.meta.events.register("before-send", count_attempt)
        client.meta.events.register("before-call", before_call)
        return client


class AwsCaller:
    """Runs boto3 operations in a bounded thread pool and translates their errors."""

    def __init__(
        self,
        settings: AwsSettings | None = None,
        *,
        limiters: RateLimiters | None = None,
        hook: CallHook | None = None,
        assume_role_params: AssumeRoleParams | None = None,
    ) -> None:
        self.settings = settings or AwsSettings.from_env()
        self.clients = ClientCache(
            self.settings,
            limiters or RateLimiters(self.settings.limits),
            hook,
            assume_role_params=assume_role_params,
        )
        self._hook = hook
        self._executor = ThreadPoolExecutor(
            max_workers=self.settings.max_workers, thread_name_prefix="stackscaler-aws"
        )

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

        With ``role``, the call runs as that role assumed for its namespace; a
        failed AssumeRole raises its own error (``AccessDenied`` naming
        ``sts:AssumeRole`` and the role), not one of ``operation``.
        """
        if "role_arn" in params:  # **params would send it to AWS as an API parameter
            raise TypeError("AwsCaller.call takes role=RoleRef(...), not role_arn")
        resolved = self.clients.region(region)
        loop = asyncio.get_running_loop()

        def run() -> dict[str, Any]:
            client = self.clients.get(service, resolved, role)
            method = getattr(client, xform_name(operation))
            return method(**params)  # type: ignore[no-any-return]

        try:
            result = await loop.run_in_executor(self._executor, run)
        except StackscalerError:  # already ours: no region, a failed AssumeRole (or refresh)
            raise
        except Exception as exc:
            err = translate(
                exc, service=service, operation=operation, resource=resource, region=resolved
            )
            if self._hook is not None:
                self._hook(service, operation, _outcome(err))
            raise err from exc
        if self._hook is not None:
            self._hook(service, operation, "ok")
        return result

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _outcome(err: Exception) -> str:
    return {"Throttled": "throttled", "AccessDenied": "denied", "TargetNotFound": "not_found"}.get(
        type(err).__name__, "error"
    )
