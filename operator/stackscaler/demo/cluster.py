"""The demo's view of the local control plane (the synchronous Kubernetes client).

Applies the demo stack, reads the resources' status and the operator's
Events for the live table, and plays the StatefulSet controller for the
cache: no controller manager or kubelet runs here, so the demo copies the
StatefulSet's ``spec.replicas`` into its status as ready replicas. The live
loop runs these calls in its thread pool, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from stackscaler import API_GROUP, API_VERSION
from stackscaler.demo.stack import TableFacts, Tier, is_custom_resource
from stackscaler.model.crds import KINDS


@dataclass(frozen=True)
class Event:
    uid: str
    kind: str
    name: str
    type: str
    reason: str
    message: str
    time: datetime | None


class Cluster:
    def __init__(self, kubeconfig: Path) -> None:
        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def apply(self, documents: Iterable[Mapping[str, Any]]) -> list[str]:
        """Create every document (Namespace, StatefulSet, stackscaler resources)."""
        done = []
        for doc in documents:
            kind, meta = doc["kind"], doc["metadata"]
            ns = meta.get("namespace", "default")
            if kind == "Namespace":
                try:
                    self.core.create_namespace(dict(doc))
                except ApiException as exc:
                    if exc.status != 409:
                        raise
            elif kind == "StatefulSet":
                self.apps.create_namespaced_stateful_set(ns, dict(doc))
            elif is_custom_resource(doc):
                self.custom.create_namespaced_custom_object(
                    API_GROUP, API_VERSION, ns, KINDS[kind].plural, dict(doc)
                )
            else:
                raise ValueError(f"the demo does not apply {kind}")
            done.append(f"{kind} {ns + '/' if kind != 'Namespace' else ''}{meta['name']}")
        return done

    def uid(self, tier: Tier) -> str:
        body = self.custom.get_namespaced_custom_object(
            API_GROUP, API_VERSION, tier.namespace, tier.plural, tier.name
        )
        return str(body["metadata"]["uid"])

    def statuses(self, tiers: Sequence[Tier]) -> dict[str, Mapping[str, Any] | None]:
        """Each tier's ``.status`` by kind (None before the operator wrote one)."""
        out: dict[str, Mapping[str, Any] | None] = {}
        for t in tiers:
            body = self.custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, t.namespace, t.plural, t.name
            )
            out[t.kind] = body.get("status") if isinstance(body, dict) else None
        return out

    def table_statuses(self, tables: Sequence[TableFacts]) -> dict[str, Mapping[str, Any] | None]:
        """Each TableCapacity's ``.status`` by name (two share the kind)."""
        out: dict[str, Mapping[str, Any] | None] = {}
        for t in tables:
            body = self.custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, t.namespace, t.plural, t.name
            )
            out[t.name] = body.get("status") if isinstance(body, dict) else None
        return out

    def events(self, namespace: str) -> list[Event]:
        """The Events about stackscaler resources in ``namespace``, oldest first."""
        items = self.core.list_namespaced_event(namespace).items
        out = []
        for e in items:
            obj = e.involved_object
            if obj is None or obj.kind not in KINDS:
                continue
            out.append(
                Event(
                    uid=str(e.metadata.uid),
                    kind=str(obj.kind),
                    name=str(obj.name),
                    type=str(e.type or ""),
                    reason=str(e.reason or ""),
                    message=str(e.message or ""),
                    time=e.first_timestamp or e.event_time or e.metadata.creation_timestamp,
                )
            )
        out.sort(key=lambda e: (e.time is None, e.time))
        return out

    def statefulset_replicas(self, namespace: str, name: str) -> tuple[int, int]:
        """(spec.replicas, status.readyReplicas) of a StatefulSet."""
        sts = self.apps.read_namespaced_stateful_set(name, namespace)
        wanted = int(sts.spec.replicas or 0)
        ready = int((sts.status.ready_replicas if sts.status else 0) or 0)
        return wanted, ready

    def mark_ready(self, namespace: str, name: str, replicas: int) -> None:
        """Play the StatefulSet controller and kubelet: ``replicas`` pods, all ready."""
        body = {
            "status": {
                "replicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "currentReplicas": replicas,
                "updatedReplicas": replicas,
            }
        }
        self.apps.patch_namespaced_stateful_set_status(
            name, namespace, body, _content_type="application/merge-patch+json"
        )

    def close(self) -> None:
        self.api.close()
