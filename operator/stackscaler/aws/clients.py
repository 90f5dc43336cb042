"""boto3 clients, cached per (service, region, role), called off the event loop.

* Credentials come from the default chain (environment, IRSA web identity,
  EKS Pod Identity, instance profile), or, for a resource with ``roleArn``,
  from STS AssumeRole on top of it, refreshed before they expire.
* botocore retries in ``standard`` mode with a bounded number of attempts;
  every attempt (retries included) takes a token from the (service, region)
  bucket first, so retries stay inside the rate limit.
* Calls run in a bounded thread pool and never block the event loop.
* Failures are translated into the error tree at this boundary.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
from stackscaler.errors import PermanentError

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

    @classmethod
    def from_env(cls) -> AwsSettings:
        return cls(
            default_region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            endpoint_url=os.environ.get("STACKSCALER_AWS_ENDPOINT_URL") or None,
        )


class ClientCache:
    """boto3 clients per (service, region, role ARN); thread-safe."""

    def __init__(
        self, settings: AwsSettings, limiters: RateLimiters, hook: CallHook | None = None
    ) -> None:
        self.settings = settings
        self.limiters = limiters
        self.calls: Counter[tuple[str, str]] = Counter()
        """API calls made, by (service, operation): what batching is measured by."""
        self.attempts: Counter[tuple[str, str]] = Counter()
        """HTTP attempts sent, retries included."""
        self._hook = hook
        self._clients: dict[tuple[str, str, str | None], Any] = {}
        self._sessions: dict[str | None, boto3.Session] = {}
        self._lock = threading.Lock()

    def region(self, region: str | None) -> str:
        resolved = region or self.settings.default_region or boto3.Session().region_name
        if not resolved:
            raise PermanentError(
                "no AWS region: set the resource's region, or AWS_REGION for the operator"
            )
        return resolved

    def _session(self, role_arn: str | None) -> boto3.Session:
        session = self._sessions.get(role_arn)
        if session is None:
            session = boto3.Session() if role_arn is None else self._assumed(role_arn)
            self._sessions[role_arn] = session
        return session

    def _assumed(self, role_arn: str) -> boto3.Session:
        def fetch() -> dict[str, str]:
            sts = self.get("sts", self.region(None), None)
            creds = sts.assume_role(
                RoleArn=role_arn, RoleSessionName=self.settings.session_name, DurationSeconds=3600
            )["Credentials"]
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": creds["Expiration"].isoformat()
                if isinstance(creds["Expiration"], datetime)
                else (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            }

        refreshable = RefreshableCredentials.create_from_metadata(
            metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
        )
        core = botocore.session.get_session()
        core._credentials = refreshable  # the documented way to plug refreshable credentials
        return boto3.Session(botocore_session=core)

    def get(self, service: str, region: str, role_arn: str | None) -> Any:
        key = (service, region, role_arn)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                return client
        s = self.settings
        config = Config(
            region_name=region,
            retries={"mode": "standard", "total_max_attempts": s.max_attempts},
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            max_pool_connections=s.max_workers,
            user_agent_extra=f"stackscaler/{__version__}",
        )
        with self._lock:
            session = self._session(role_arn)
        client = session.client(service, config=config, endpoint_url=s.endpoint_url)
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
        with self._lock:
            return self._clients.setdefault(key, client)


class AwsCaller:
    """Runs boto3 operations in a bounded thread pool and translates their errors."""

    def __init__(
        self,
        settings: AwsSettings | None = None,
        *,
        limiters: RateLimiters | None = None,
        hook: CallHook | None = None,
    ) -> None:
        self.settings = settings or AwsSettings.from_env()
        self.clients = ClientCache(
            self.settings, limiters or RateLimiters(self.settings.limits), hook
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
        role_arn: str | None = None,
        resource: str,
        **params: Any,
    ) -> dict[str, Any]:
        """Call ``operation`` (the API name, e.g. ``SetDesiredCapacity``) off the loop."""
        resolved = self.clients.region(region)
        loop = asyncio.get_running_loop()

        def run() -> dict[str, Any]:
            client = self.clients.get(service, resolved, role_arn)
            method = getattr(client, xform_name(operation))
            return method(**params)  # type: ignore[no-any-return]

        try:
            result = await loop.run_in_executor(self._executor, run)
        except PermanentError:
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
