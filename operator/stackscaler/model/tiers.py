"""Tier sources between resources: who follows whom, and the cycles that are refused.

A tier source (``spec.metrics[].tier``) makes a resource follow another resource of
the same namespace. The references form a directed graph per namespace; a cycle
(a resource that follows itself, directly or through others) is refused at every
level that can see it: the API server (a resource naming itself, a CEL rule at the
root), ``stackscaler validate`` (every document it is given) and the operator (every
resource of the namespace it watches). This module is the graph, shared by the last
two and by the simulator.

Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stackscaler.errors import FieldError
from stackscaler.model.crds import BACKLOG_METRIC
from stackscaler.model.spec import Resource, TierSource


@dataclass(frozen=True, order=True)
class TierRef:
    """One stackscaler resource of a namespace, by kind and name."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class TierEdge:
    """``metric`` (its index in ``spec.metrics``) of one resource follows ``to``."""

    index: int
    metric: str
    to: TierRef


def tier_edges(resource: Resource) -> tuple[TierEdge, ...]:
    """The tier sources of a parsed resource, with their index in ``spec.metrics``.

    A WorkerPool's implicit queue metric comes first in the parsed metrics and is
    not in ``spec.metrics``: indexes count the spec's list only.
    """
    offset = 1 if resource.queue is not None else 0
    return tuple(
        TierEdge(i - offset, m.name, TierRef(m.source.kind, m.source.name))
        for i, m in enumerate(resource.scaling.metrics)
        if isinstance(m.source, TierSource)
    )


def raw_tier_edges(doc: Any) -> tuple[TierEdge, ...]:
    """The tier sources of a raw document, read leniently (a document that failed
    validation still shows what it follows; anything malformed is skipped)."""
    spec = doc.get("spec") if isinstance(doc, Mapping) else None
    metrics = spec.get("metrics") if isinstance(spec, Mapping) else None
    out: list[TierEdge] = []
    for i, m in enumerate(metrics if isinstance(metrics, list) else ()):
        tier = m.get("tier") if isinstance(m, Mapping) else None
        if not isinstance(tier, Mapping):
            continue
        kind, name, metric = tier.get("kind"), tier.get("name"), m.get("name")
        if isinstance(kind, str) and isinstance(name, str):
            out.append(TierEdge(i, metric if isinstance(metric, str) else "", TierRef(kind, name)))
    return tuple(out)


def cycle_through(
    start: TierRef, follows: Callable[[TierRef], Iterable[TierRef]]
) -> tuple[TierRef, ...] | None:
    """The shortest cycle of tier references through ``start``, as the path
    ``(start, ..., start)``; None when ``start`` does not reach itself.

    ``follows(ref)`` gives the resources ``ref`` follows (none for a resource not known).
    Breadth first: bounded by the resources reachable from ``start``.
    """
    parent: dict[TierRef, TierRef] = {}
    queue: deque[TierRef] = deque([start])
    seen = {start}
    while queue:
        node = queue.popleft()
        for nxt in sorted(set(follows(node))):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return (start, *reversed(path[:-1]), start)
            if nxt not in seen:
                seen.add(nxt)
                parent[nxt] = node
                queue.append(nxt)
    return None


def describe_cycle(path: tuple[TierRef, ...]) -> str:
    """``WebTier web -> ReadReplicaPool db -> WebTier web: ...`` with the fix."""
    chain = " -> ".join(str(r) for r in path)
    if len(path) == 2:
        return f"tier sources form a cycle: {chain} (it follows itself); follow another resource"
    return (
        f"tier sources form a cycle: {chain}; each would follow the others' decisions "
        "and never settle: remove the tier source of one of them"
    )


@dataclass(frozen=True)
class CycleFinding:
    """A resource in a cycle, the tier source that closes it, and the cycle."""

    resource: TierRef
    edge: TierEdge
    path: tuple[TierRef, ...]

    @property
    def message(self) -> str:
        return describe_cycle(self.path)


def find_cycles(edges: Mapping[TierRef, tuple[TierEdge, ...]]) -> list[CycleFinding]:
    """Every resource of one namespace that is in a cycle, with the shortest cycle
    through it and the tier source (its first edge) that starts it, in resource order."""

    def follows(ref: TierRef) -> list[TierRef]:
        return [e.to for e in edges.get(ref, ())]

    out: list[CycleFinding] = []
    for ref in sorted(edges):
        path = cycle_through(ref, follows)
        if path is None:
            continue
        edge = next(e for e in edges[ref] if e.to == path[1])
        out.append(CycleFinding(ref, edge, path))
    return out


def _declared_metrics(doc: Mapping[str, Any]) -> set[str] | None:
    """The metric names a raw document declares; None when they cannot be told."""
    spec = doc.get("spec")
    metrics = spec.get("metrics", []) if isinstance(spec, Mapping) else None
    if not isinstance(metrics, list):
        return None
    names = {
        m["name"] for m in metrics if isinstance(m, Mapping) and isinstance(m.get("name"), str)
    }
    if doc.get("kind") == "WorkerPool":
        names.add(BACKLOG_METRIC)
    return names


def document_errors(docs: Sequence[Any]) -> dict[int, list[FieldError]]:
    """Problems between the documents of one ``stackscaler validate`` run, by index.

    Documents are grouped by ``metadata.namespace`` (those without one together: they
    land in the namespace they are applied to). In each group: every resource in a
    cycle of tier sources (the tier source that starts its shortest cycle, the path
    named; a resource naming itself is left to its own validation), and a tier
    source ``value: Metric`` naming a metric that the resource it
    follows, given among the documents, does not declare. A resource that is not among
    the documents is not an error: it may exist in the cluster.
    """
    groups: dict[str, dict[TierRef, list[int]]] = {}
    for i, doc in enumerate(docs):
        if not isinstance(doc, Mapping):
            continue
        meta = doc.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        kind, name, ns = doc.get("kind"), meta.get("name"), meta.get("namespace")
        if isinstance(kind, str) and isinstance(name, str):
            ref = TierRef(kind, name)
            groups.setdefault(ns if isinstance(ns, str) else "", {}).setdefault(ref, []).append(i)
    out: dict[int, list[FieldError]] = {}
    for members in groups.values():
        edges = {
            ref: tuple(e for i in where for e in raw_tier_edges(docs[i]))
            for ref, where in members.items()
        }
        for finding in find_cycles(edges):
            if len(finding.path) == 2:
                continue  # naming itself: the document's own validation says so (CEL)
            for i in members[finding.resource]:
                if finding.edge in raw_tier_edges(docs[i]):
                    path = f"spec.metrics[{finding.edge.index}].tier"
                    out.setdefault(i, []).append(FieldError(path, finding.message))
        for where in members.values():
            for i in where:
                for e, metric in _metric_references(docs[i]):
                    if e.to not in members:
                        continue
                    declared = [_declared_metrics(docs[j]) for j in members[e.to]]
                    if any(d is None or metric in d for d in declared):
                        continue
                    names = sorted(set().union(*(d for d in declared if d is not None)))
                    out.setdefault(i, []).append(
                        FieldError(
                            f"spec.metrics[{e.index}].tier.metric",
                            f"{e.to} has no metric {metric!r}; its metrics are: "
                            f"{', '.join(names) or 'none'}",
                        )
                    )
    return out


def _metric_references(doc: Any) -> list[tuple[TierEdge, str]]:
    """(edge, metric name) of every tier source ``value: Metric`` of a raw document."""
    spec = doc.get("spec") if isinstance(doc, Mapping) else None
    metrics = spec.get("metrics") if isinstance(spec, Mapping) else None
    out = []
    for e in raw_tier_edges(doc):
        tier = metrics[e.index].get("tier") if isinstance(metrics, list) else None
        if isinstance(tier, Mapping) and tier.get("value") == "Metric":
            metric = tier.get("metric")
            if isinstance(metric, str):
                out.append((e, metric))
    return out
