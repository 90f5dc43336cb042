"""Kubernetes workloads: read the Deployment or StatefulSet, scale it through /scale.

The synchronous kubernetes client runs in a bounded thread pool, never on the
event loop. One GET of the workload gives both numbers: the capacity is its
``spec.replicas`` (what has been asked for, as the HPA counts it), and the
ready units are its ``status.availableReplicas`` (pods ready for at least the
workload's ``minReadySeconds``: the workload's own warm-up; a StatefulSet
without the field reports ``readyReplicas``), at most ``spec.replicas``. The
rest of ``spec.replicas`` is starting: pods not created yet, not ready or not
ready long enough. Pods beyond ``spec.replicas`` (``status.replicas`` above
it) are removing. ``spec.warmupSeconds`` is not read here: set the workload's
minReadySeconds instead.

The operator's Role needs ``get`` on ``deployments`` and ``statefulsets``
(the read) and ``patch`` on ``deployments/scale`` and ``statefulsets/scale``
(the change): nothing else of the workload can be written.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stackscaler.actuators.base import ApplyResult, Capacity
from stackscaler.errors import (
    AccessDenied,
    PermanentError,
    StackscalerError,
    TargetNotFound,
    TemporaryError,
    Throttled,
)
from stackscaler.model.spec import Resource, WorkloadTarget

T = TypeVar("T")

_RESOURCES = {"Deployment": "deployments", "StatefulSet": "statefulsets"}


class K8sScaleActuator:
    """Scales Deployments and StatefulSets in the resource's own namespace."""

    def __init__(self, api_client: client.ApiClient, *, max_workers: int = 4) -> None:
        self._apps = client.AppsV1Api(api_client)
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="stackscaler-k8s"
        )
        self.calls: Counter[str] = Counter()
        """API calls made, by verb: get_workload, patch_scale."""

    async def _run(self, verb: str, what: str, fn: Callable[[], T]) -> T:
        self.calls[verb] += 1
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except ApiException as exc:
            raise _translate(exc, verb, what) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TemporaryError(f"{what}: cannot reach the Kubernetes API ({exc})") from exc

    @staticmethod
    def _target(resource: Resource) -> tuple[WorkloadTarget, str, str]:
        target = resource.target
        if not isinstance(target, WorkloadTarget):
            raise PermanentError(f"{resource.key}: {target.kind} is not a Kubernetes workload")
        namespace = resource.namespace or "default"
        return target, namespace, f"{target.kind} {namespace}/{target.name}"

    async def observe(self, resource: Resource) -> Capacity:
        target, namespace, what = self._target(resource)
        read = (
            self._apps.read_namespaced_deployment
            if target.kind == "Deployment"
            else self._apps.read_namespaced_stateful_set
        )
        workload: Any = await self._run("get_workload", what, partial(read, target.name, namespace))
        return workload_capacity(what, workload)

    async def apply(self, resource: Resource, desired: int, observed: Capacity) -> ApplyResult:
        target, namespace, what = self._target(resource)
        if desired == observed.current:
            return ApplyResult(desired, changed=False, detail=f"{what} already at {desired}")
        body = {"spec": {"replicas": desired}}
        patch = (
            self._apps.patch_namespaced_deployment_scale
            if target.kind == "Deployment"
            else self._apps.patch_namespaced_stateful_set_scale
        )
        await self._run("patch_scale", what, partial(patch, target.name, namespace, body))
        return ApplyResult(
            desired, changed=True, detail=f"{what}: replicas {observed.current} -> {desired}"
        )

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def workload_capacity(what: str, workload: Any) -> Capacity:
    """The capacity of a Deployment or StatefulSet as the API server reports it."""
    wanted = int(workload.spec.replicas or 0) if workload.spec else 0
    status = workload.status
    pods = int((status.replicas if status else 0) or 0)
    ready_pods = int((status.ready_replicas if status else 0) or 0)
    available = status.available_replicas if status else None
    counted = ready_pods if available is None else int(available)
    ready = min(counted, wanted)
    generation = workload.metadata.generation if workload.metadata else None
    observed = status.observed_generation if status else None
    stale = generation is not None and observed is not None and observed < generation
    min_ready = int(getattr(workload.spec, "min_ready_seconds", None) or 0)
    detail = (
        f"{what}: spec.replicas {wanted}, status.replicas {pods}, readyReplicas {ready_pods}, "
        + (
            f"availableReplicas {int(available)}"
            if available is not None
            else "no availableReplicas (readyReplicas counted)"
        )
        + (f" (minReadySeconds {min_ready})" if min_ready else "")
        + (f"; the status is of generation {observed}, not {generation} yet" if stale else "")
    )
    return Capacity(
        current=wanted,
        is_setpoint=True,
        ready=ready,
        pending=wanted - ready,
        removing=max(0, pods - wanted),
        detail=detail,
    )


def _translate(exc: ApiException, verb: str, what: str) -> StackscalerError:
    resource = _RESOURCES.get(what.split(" ", 1)[0], "workloads")
    action, on = ("get", resource) if verb == "get_workload" else ("patch", f"{resource}/scale")
    reason = (exc.reason or "").strip()
    if exc.status == 404:
        return TargetNotFound(f"{what} does not exist ({reason})")
    if exc.status in (401, 403):
        return AccessDenied(
            f"{what}: {action} {on} is forbidden ({reason}); grant the operator's "
            f"ServiceAccount '{action}' on '{on}' in apps"
        )
    if exc.status == 429:
        retry = (exc.headers or {}).get("Retry-After") if exc.headers else None
        return Throttled(
            f"{what}: the API server is throttling ({reason})",
            delay=float(retry) if retry and str(retry).isdigit() else 5.0,
        )
    if exc.status == 409:
        return TemporaryError(f"{what}: conflict, retrying ({reason})", delay=1.0)
    if exc.status >= 500:
        return TemporaryError(f"{what}: API server error {exc.status} ({reason})")
    return PermanentError(f"{what}: {action} {on} rejected: {exc.status} {reason}")
