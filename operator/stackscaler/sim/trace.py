"""Reading demand traces: CSV (optionally gzip) with a header, a time column and a demand column."""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from stackscaler.errors import PermanentError


class TraceError(PermanentError):
    """A trace file cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Trace:
    name: str
    step_seconds: float
    """Seconds between rows."""
    demand: tuple[float, ...]
    """Demand per row (requests in that row's interval)."""


def _parse(name: str, text: str, time_unit_seconds: float) -> Trace:
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or len(header) < 2:
        raise TraceError(f"{name}:1: expected a header with a time and a demand column")
    times: list[float] = []
    demand: list[float] = []
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        try:
            t, d = float(row[0]), float(row[1])
        except (ValueError, IndexError):
            raise TraceError(f"{name}:{line}: expected two numbers, got {row!r}") from None
        if d < 0:
            raise TraceError(f"{name}:{line}: demand must be >= 0, got {d:g}")
        if times and t <= times[-1]:
            raise TraceError(f"{name}:{line}: time {t:g} is not after {times[-1]:g}")
        times.append(t)
        demand.append(d)
    if len(times) < 2:
        raise TraceError(f"{name}: needs at least two rows")
    step = (times[1] - times[0]) * time_unit_seconds
    return Trace(name, step, tuple(demand))


def load_trace(path: str | Path, *, time_unit_seconds: float = 60.0) -> Trace:
    """Load a trace file; ``time_unit_seconds`` is the unit of the time column."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise TraceError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    try:
        text = (gzip.decompress(raw) if p.suffix == ".gz" else raw).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{p}: not a UTF-8 CSV (or gzip of one): {exc}") from exc
    return _parse(str(p), text, time_unit_seconds)


def nasa_trace() -> Trace:
    """The embedded NASA-HTTP 1995 trace (requests per minute), see data/README.md."""
    data = resources.files("stackscaler").joinpath("data/nasa-http-1995-per-minute.csv.gz")
    text = gzip.decompress(data.read_bytes()).decode("utf-8")
    return _parse("nasa-http-1995-per-minute", text, 60.0)
