"""`make bench` (second step): the CPU cost of one scrape of /metrics at fleet scale.

Builds an OperatorMetrics with N resources (kind WebTier, 20 namespaces, one
scaling metric each; a decision with its time, the modes and one scale action
per resource: about 14 per-resource series each), then times, in the same
run and on the same series, the body /metrics serves (the per-resource
collector's own text plus generate_latest for the rest) and generate_latest
over the whole registry (what /metrics served before). CPU seconds
(process_time) per scrape, the median of the repeats, and their ratio.

    python -m bench.exposition [--resources 2000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stackscaler.observability import OperatorMetrics
from stackscaler.observability.exposition import exposition
from stackscaler.policy.types import Decision, Direction, History, MetricResult, MetricState

NAMESPACES = 20


def decision(i: int) -> Decision:
    current = 2 + i % 7
    return Decision(
        current=current,
        desired=current + 1,
        direction=Direction.OUT,
        limited_by=None,
        reasons=(),
        metrics=(MetricResult("cpu", MetricState.KNOWN, 50.0 + i % 40 + 0.25, 50.0, 0, ""),),
        recommendation=current + 1,
        min_capacity=1,
        max_capacity=100,
        active_schedules=(),
        metrics_available=True,
        fallback_active=False,
        history=History(),
    )


def populate(resources: int) -> OperatorMetrics:
    m = OperatorMetrics()
    for i in range(resources):
        res = ("WebTier", f"team-{i % NAMESPACES}", f"tier-{i:05d}")
        m.record_decision(*res, decision(i), at=1_800_000_000.0 + i * 0.015)
        m.set_mode(*res, paused=False, dry_run=i % 10 == 0)
        m.record_scale(*res, Direction.OUT)
    return m


def cpu_per_call(fn: Callable[[], bytes], repeat: int) -> float:
    """The median CPU seconds of one call."""
    fn()  # warm up
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def samples(body: bytes) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    return sorted(
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.exposition", description=__doc__)
    parser.add_argument("--resources", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    m = populate(args.resources)
    fast, slow = exposition(m.registry), generate_latest(m.registry)
    if samples(fast) != samples(slow):  # the same samples, or the comparison means nothing
        print("FAIL: /metrics and generate_latest disagree", file=sys.stderr)
        return 1
    per_resource = sum(1 for line in fast.splitlines() if b'name="tier-' in line)

    new = cpu_per_call(lambda: exposition(m.registry), args.repeat)
    old = cpu_per_call(lambda: generate_latest(m.registry), args.repeat)
    print(
        f"/metrics at {args.resources} resources: {per_resource} per-resource series, "
        f"{len(fast.splitlines())} lines, {len(fast) / 1024:.0f} KiB"
    )
    print(f"  generate_latest over the registry: {old * 1000:8.1f} ms CPU per scrape")
    print(f"  /metrics body (render + rest):     {new * 1000:8.1f} ms CPU per scrape")
    print(f"  ratio: {old / new:.1f}x less CPU (median of {args.repeat} scrapes each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
