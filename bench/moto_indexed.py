"""moto's server with CloudWatch GetMetricData narrowed per query: moto's answers, less time.

moto's ``get_metric_data`` takes every datapoint in the call's window and,
for each query and each period of the window, compares them all with the
query (a sort of both dimension lists per comparison). At 2,000 tiers,
bench-scale's wave of 2,000 queries in 4 calls kept one moto process busy
for 9 to 12 s a wave (``moto s GMD`` in its output), so the decision ages it
measured were moto's. Real CloudWatch answers a 500-query call in well under
that (not measured here: no AWS is reachable).

:func:`patch` keeps moto's own code for every answer: a call of MetricStat
queries is answered one query at a time by the unpatched method, over only
the datapoints that query's filters could keep (same metric name, and the
same dimensions, or the same namespace when the query names none).
Everything else (periods, statistics, units, labels, ReturnData, the order
of the results, the errors) is moto's. A call with an expression goes to
moto unchanged. ``tests/unit/test_bench_moto_indexed.py`` checks that the
answers are the same as unpatched moto's.

    python -m bench.moto_indexed -H 127.0.0.1 -p PORT   # as moto_server
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from moto.cloudwatch.models import CloudWatchBackend
from moto.server import main as serve

Key = tuple[str, frozenset[tuple[str, str]]]


class _View:
    """The backend, seen with only some of its datapoints."""

    def __init__(self, backend: Any, metrics: list[Any]) -> None:
        self._backend, self._metrics = backend, metrics

    def get_all_metrics(self) -> list[Any]:
        return self._metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


def _dims(dimensions: Iterable[Any]) -> frozenset[tuple[str, str]] | None:
    """(name, value) pairs; None when a value is missing (moto's wildcard: no narrowing)."""
    pairs = []
    for d in dimensions:
        name, value = (d["Name"], d.get("Value")) if isinstance(d, dict) else (d.name, d.value)
        if name is None or value is None:
            return None
        pairs.append((name, value))
    return frozenset(pairs)


class _Index:
    def __init__(self, metrics: Sequence[Any]) -> None:
        self.all = list(metrics)
        self.by_dims: dict[Key, list[Any]] = {}
        self.by_namespace: dict[tuple[str, str], list[Any]] = {}
        self.wild: dict[str, list[Any]] = {}
        """Datapoints with a wildcard dimension, by name: candidates of every query of it."""
        for md in self.all:
            self.by_namespace.setdefault((md.namespace, md.name), []).append(md)
            dims = _dims(md.dimensions)
            if dims is None:
                self.wild.setdefault(md.name, []).append(md)
            else:
                self.by_dims.setdefault((md.name, dims), []).append(md)

    def candidates(self, query: dict[str, Any]) -> list[Any]:
        """A superset of the datapoints moto's filters keep for ``query``, in moto's order."""
        metric = query["MetricStat"]["Metric"]
        name, dimensions = metric["MetricName"], metric.get("Dimensions") or []
        if not dimensions:
            return self.by_namespace.get((metric["Namespace"], name), [])
        dims = _dims(dimensions)
        if dims is None:
            return self.all
        keep = self.by_dims.get((name, dims), [])
        wild = self.wild.get(name)
        if wild:
            chosen = {id(md) for md in (*keep, *wild)}
            return [md for md in self.all if id(md) in chosen]
        return keep


def patch() -> Callable[..., list[dict[str, Any]]]:
    """Narrow moto's CloudWatch GetMetricData per query; returns the unpatched method."""
    original: Callable[..., list[dict[str, Any]]] = CloudWatchBackend.get_metric_data
    if getattr(original, "_stackscaler_indexed", False):
        return original.__wrapped__  # type: ignore[attr-defined, no-any-return]

    def get_metric_data(
        self: Any,
        queries: list[dict[str, Any]],
        start_time: datetime,
        end_time: datetime,
        scan_by: str = "TimestampAscending",
    ) -> list[dict[str, Any]]:
        if not queries or any("MetricStat" not in q for q in queries):
            return original(self, queries, start_time, end_time, scan_by)
        index = _Index(self.get_all_metrics())
        out: list[dict[str, Any]] = []
        for query in queries:
            view = _View(self, index.candidates(query))
            out.extend(original(view, [query], start_time, end_time, scan_by))
        return out

    get_metric_data._stackscaler_indexed = True  # type: ignore[attr-defined]
    get_metric_data.__wrapped__ = original  # type: ignore[attr-defined]
    CloudWatchBackend.get_metric_data = get_metric_data  # type: ignore[method-assign]
    return original


def main(argv: list[str] | None = None) -> None:
    patch()
    serve(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
