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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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
