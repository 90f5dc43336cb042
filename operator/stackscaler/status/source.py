"""Reading the four kinds from the Kubernetes API for ``stackscaler status``.

The synchronous client (this is a command, not the operator's event loop):
one list per kind, then one watch per kind in its own thread, each feeding
one queue that the command reads. Nothing here is written to the cluster.

Errors are translated into the error tree at this boundary: refused
credentials and RBAC denials are :class:`~stackscaler.errors.AccessDenied`
(naming the verb, the resource and the namespace), a kind the API server
does not serve is :class:`~stackscaler.errors.NotInstalled`, and an API
server that cannot be reached or fails is
:class:`~stackscaler.errors.KubernetesUnavailable`. What the server says is
escaped before it is shown.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from stackscaler import API_GROUP, API_VERSION
from stackscaler.errors import (
    AccessDenied,
    KubernetesUnavailable,
    NotInstalled,
    PermanentError,
    StackscalerError,
)
from stackscaler.model.crds import KINDS
from stackscaler.text import safe_text

WATCH_SECONDS: Final = 240
"""Each watch request asks the server to end it after this long; the next one resumes
from the last resourceVersion seen (no events are lost in between)."""
MIN_WATCH_SECONDS: Final = 1.0
"""A watch request that ends sooner than this is followed by a pause this long, so a
server that closes watches at once is not asked again in a tight loop."""
CONNECT_TIMEOUT: Final = 10.0
SERVICEACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class Scope:
    """What to read: one namespace or all (None), every name or one."""

    namespace: str | None
    name: str | None = None

    def describe(self) -> str:
        where = f"namespace {self.namespace}" if self.namespace is not None else "any namespace"
        return f"named {self.name!r} in {where}" if self.name is not None else f"in {where}"


@dataclass(frozen=True)
class Listed:
    """Every resource in scope, and per kind the resourceVersion to watch from."""

    bodies: tuple[dict[str, Any], ...]
    versions: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Change:
    """A watch event: ADDED, MODIFIED or DELETED."""

    kind: str
    type: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Relisted:
    """A watch that fell too far behind (410 Gone) listed its kind again: these replace
    every resource of ``kind`` seen so far."""

    kind: str
    bodies: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Failed:
    """A watch ended with an error: the command stops with it."""

    error: StackscalerError


Update = Change | Relisted | Failed


def default_namespace(kubeconfig: str | None) -> str:
    """The namespace kubectl would use: in a pod, the pod's own (when no kubeconfig is
    given, the client uses the in-cluster configuration there); else the current
    context's namespace; else ``default``."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        with contextlib.suppress(OSError):
            text = SERVICEACCOUNT_NAMESPACE.read_text().strip()
            if text:
                return text
    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError, TypeError, KeyError, AttributeError):
        return "default"
    context = active.get("context") if isinstance(active, dict) else None
    namespace = context.get("namespace") if isinstance(context, dict) else None
    return namespace if isinstance(namespace, str) and namespace else "default"


def _server_says(exc: ApiException) -> str:
    """The message of the Status the API server answered with, escaped."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    message: Any = None
    if isinstance(body, str) and body:
        try:
            message = json.loads(body).get("message")
        except (ValueError, AttributeError):
            message = body
    if not isinstance(message, str) or not message:
        message = exc.reason
    return f" (the API server says: {safe_text(str(message), 512)})" if message else ""


def translate(
    exc: BaseException, *, verb: str, plural: str, scope: Scope, server: str
) -> StackscalerError:
    """An error of the client, as the error tree says it."""
    resource = f"{plural}.{API_GROUP}"
    where = (
        f"in namespace {scope.namespace}"
        if scope.namespace is not None
        else "across all namespaces"
    )
    if isinstance(exc, ApiException):
        said = _server_says(exc)
        status = exc.status
        if status == 401:
            return AccessDenied(
                f"the API server at {server} did not accept the kubeconfig's credentials "
                f"(401 Unauthorized){said}"
            )
        if status == 403:
            return AccessDenied(
                f"forbidden to {verb} {resource} {where}{said}; stackscaler status needs "
                f"get, list and watch on webtiers, workerpools, readreplicapools, cachepools and "
                f"tablecapacities of {API_GROUP}"
            )
        if status == 404:
            return NotInstalled(
                f"the API server at {server} does not serve {resource}/{API_VERSION}: "
                "the stackscaler CRDs are not installed (helm install the chart, or "
                "kubectl apply -f crds/)"
            )
        if status is None or status == 429 or status >= 500:
            return KubernetesUnavailable(
                f"the API server at {server} failed to {verb} {resource}: "
                f"{status} {safe_text(str(exc.reason or ''), 128)}{said}"
            )
        return PermanentError(
            f"cannot {verb} {resource} {where}: {status} "
            f"{safe_text(str(exc.reason or ''), 128)}{said}"
        )
    return KubernetesUnavailable(
        f"cannot reach the Kubernetes API server at {server}: "
        f"{safe_text(f'{type(exc).__name__}: {exc}', 512)}"
    )


_CLIENT_ERRORS = (urllib3.exceptions.HTTPError, OSError, ValueError)
"""What the client raises besides ApiException: connection and TLS failures, a watch
line that is not JSON."""


class StatusReader:
    """Lists and watches the four kinds in one scope."""

    def __init__(
        self, api: client.ApiClient, scope: Scope, *, request_timeout: float = 30.0
    ) -> None:
        self.api = api
        self.scope = scope
        self.request_timeout = request_timeout
        self._objects = client.CustomObjectsApi(api)
        self.server = safe_text(str(api.configuration.host), 256)

    def _call(self, kind: str) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
        plural = KINDS[kind].plural
        kwargs: dict[str, Any] = {}
        if self.scope.name is not None:
            kwargs["field_selector"] = f"metadata.name={self.scope.name}"
        if self.scope.namespace is None:
            fn = self._objects.list_cluster_custom_object
            args: tuple[Any, ...] = (API_GROUP, API_VERSION, plural)
        else:
            fn = self._objects.list_namespaced_custom_object
            args = (API_GROUP, API_VERSION, self.scope.namespace, plural)
        return fn, args, kwargs

    def _error(self, exc: BaseException, verb: str, kind: str) -> StackscalerError:
        return translate(
            exc, verb=verb, plural=KINDS[kind].plural, scope=self.scope, server=self.server
        )

    def list_kind(self, kind: str) -> tuple[tuple[dict[str, Any], ...], str]:
        """Every resource of ``kind`` in scope, and the list's resourceVersion."""
        fn, args, kwargs = self._call(kind)
        try:
            answer = fn(
                *args,
                **kwargs,
                _request_timeout=(min(CONNECT_TIMEOUT, self.request_timeout), self.request_timeout),
            )
        except (ApiException, *_CLIENT_ERRORS) as exc:
            raise self._error(exc, "list", kind) from exc
        if not isinstance(answer, dict):
            raise KubernetesUnavailable(f"the API server at {self.server} sent no list")
        items = tuple(
            # kind and apiVersion are not in list items of every server: set them
            {**item, "kind": kind}
            for item in answer.get("items") or []
            if isinstance(item, dict)
        )
        version = str((answer.get("metadata") or {}).get("resourceVersion") or "")
        return items, version

    def list_all(self) -> Listed:
        """Every resource of the four kinds in scope. A kind the cluster does not serve
        is an error naming every missing one."""
        bodies: list[dict[str, Any]] = []
        versions: list[tuple[str, str]] = []
        missing: list[str] = []
        for kind in KINDS:
            try:
                items, version = self.list_kind(kind)
            except NotInstalled:
                missing.append(f"{KINDS[kind].plural}.{API_GROUP}")
                continue
            bodies += items
            versions.append((kind, version))
        if missing:
            raise NotInstalled(
                f"the API server at {self.server} does not serve {', '.join(missing)} "
                f"({API_VERSION}): the stackscaler CRDs are not installed (helm install the "
                "chart, or kubectl apply -f crds/)"
            )
        return Listed(tuple(bodies), tuple(versions))

    def watch(
        self, listed: Listed, out: queue.Queue[Update], stop: threading.Event
    ) -> list[threading.Thread]:
        """One daemon thread per kind, watching from the list's resourceVersion and putting
        every change into ``out``; a thread puts :class:`Failed` and ends on an error."""
        threads = [
            threading.Thread(
                target=self._watch_kind,
                args=(kind, version, out, stop),
                name=f"watch-{KINDS[kind].plural}",
                daemon=True,  # blocked in a socket read: ends with the process
            )
            for kind, version in listed.versions
        ]
        for t in threads:
            t.start()
        return threads

    def _watch_kind(
        self, kind: str, version: str, out: queue.Queue[Update], stop: threading.Event
    ) -> None:
        fn, args, kwargs = self._call(kind)
        while not stop.is_set():
            w = watch.Watch()
            started = time.monotonic()
            try:
                for event in w.stream(
                    fn,
                    *args,
                    **kwargs,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=WATCH_SECONDS,
                    _request_timeout=(CONNECT_TIMEOUT, WATCH_SECONDS + 30),
                ):
                    version = w.resource_version or version
                    if not isinstance(event, dict):  # a blank or unreadable line
                        continue
                    body = event.get("raw_object")
                    if event.get("type") in ("ADDED", "MODIFIED", "DELETED") and isinstance(
                        body, dict
                    ):
                        out.put(Change(kind, str(event["type"]), {**body, "kind": kind}))
                    if stop.is_set():
                        w.stop()
                version = w.resource_version or version
                if time.monotonic() - started < MIN_WATCH_SECONDS:
                    stop.wait(MIN_WATCH_SECONDS)  # a server that ends watches at once
            except ApiException as exc:
                if exc.status != 410:  # Gone: too far behind; list again and go on
                    out.put(Failed(self._error(exc, "watch", kind)))
                    return
                try:
                    items, version = self.list_kind(kind)
                except StackscalerError as err:
                    out.put(Failed(err))
                    return
                out.put(Relisted(kind, items))
            except _CLIENT_ERRORS as exc:
                out.put(Failed(self._error(exc, "watch", kind)))
                return
