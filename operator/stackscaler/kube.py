"""Writing status and Events with the Kubernetes API (sync client, bounded executor)."""

from __future__ import annotations

import asyncio
import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from stackscaler import API_GROUP, API_VERSION, fence
from stackscaler.errors import PermanentError
from stackscaler.reconcile import Ref, rfc3339

COMPONENT = "stackscaler"
log = logging.getLogger(__name__)


def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster configuration when running in a pod, else the kubeconfig."""
    if kubeconfig is None:
        try:
            config.load_incluster_config()
            return client.ApiClient()
        except config.ConfigException:
            pass
    try:
        return config.new_client_from_config(config_file=kubeconfig)
    except (config.ConfigException, OSError) as exc:
        where = kubeconfig or "KUBECONFIG / ~/.kube/config"
        raise PermanentError(
            f"no Kubernetes configuration: not running in a pod, and {where} cannot be used "
            f"({exc}); pass --kubeconfig FILE"
        ) from exc


class KubeStatus:
    """Replaces a resource's status through the /status subresource only."""

    def __init__(self, api: client.ApiClient, executor: ThreadPoolExecutor) -> None:
        self._objects = client.CustomObjectsApi(api)
        self._executor = executor

    async def write(self, ref: Ref, status: dict[str, Any]) -> str | None:
        """Replace the status; returns the resource's new resourceVersion."""
        patch = [{"op": "add", "path": "/status", "value": status}]  # JSON patch: replace all
        call = partial(
            self._objects.patch_namespaced_custom_object_status,
            API_GROUP,
            API_VERSION,
            ref.namespace,
            ref.plural,
            ref.name,
            patch,
            _content_type="application/json-patch+json",  # the client would send merge-patch
        )
        fence.check(fence.current(), "the status write")  # a stale replica writes nothing
        written = await asyncio.get_running_loop().run_in_executor(self._executor, call)
        version = (written.get("metadata") or {}).get("resourceVersion") if written else None
        return None if version is None else str(version)


class KubeEvents:
    """core/v1 Events about stackscaler resources (kubectl describe shows them)."""

    def __init__(self, api: client.ApiClient, executor: ThreadPoolExecutor) -> None:
        self._core = client.CoreV1Api(api)
        self._executor = executor
        self._instance = socket.gethostname()

    async def record(
        self, ref: Ref, type_: str, reason: str, message: str, *, key: str | None = None
    ) -> None:
        """Post an Event; with ``key`` it is named after the key, so the API server
        refuses a second one (409 AlreadyExists), which is not an error here."""
        now = rfc3339(datetime.now(UTC))
        meta: dict[str, str] = {"namespace": ref.namespace}
        if key is None:
            meta["generateName"] = f"{ref.name}."
        else:
            meta["name"] = event_name(ref.name, key)
        # A plain body, and the answer left unparsed: the client's models cost about 1 ms
        # of CPU an Event to build and to read back, for nothing the operator uses.
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": meta,
            "involvedObject": {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": ref.kind,
                "name": ref.name,
                "namespace": ref.namespace,
                "uid": ref.uid,
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": COMPONENT},
            "reportingComponent": f"{API_GROUP}/operator",
            "reportingInstance": self._instance,
        }
        call = partial(_unparsed, self._core.create_namespaced_event, ref.namespace, event)
        fence.check(fence.current(), f"the Event {reason}")
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except ApiException as exc:
            if key is None or exc.status != 409:
                raise
            log.info("%s: the Event %s for this action was already posted", ref, reason)


def _unparsed(method: Any, *args: Any) -> None:
    """Call a client method and read its answer without turning it into models (errors
    still raise ApiException)."""
    answer = method(*args, _preload_content=False)
    try:
        answer.read()
    finally:
        answer.release_conn()


def event_name(resource: str, key: str) -> str:
    """``<resource>.<key>``, cut to a valid object name (a DNS subdomain, 253 characters)."""
    head = resource[: 253 - len(key) - 1].rstrip(".-")
    return f"{head}.{key}"
