"""Reading demand traces: CSV (optionally gzip) with a header, a time column and a demand column.

The time column is numeric; its unit comes from its header name (``minute``
-> 60 s, ``hour`` -> 3600 s, ``second``/``sec``/``s`` -> 1 s, anything else
the caller's ``time_unit_seconds``, 60 by default). Rows must be evenly
spaced. Demand is what arrives in one row interval (requests per minute for
a per-minute trace). Every problem names the file and line.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import zlib
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

    @property
    def duration_seconds(self) -> float:
        return self.step_seconds * len(self.demand)


def _unit(header: str, default: float) -> float:
    h = header.strip().lower()
    if "hour" in h:
        return 3600.0
    if "min" in h:
        return 60.0
    if h in ("s", "t_s", "time_s", "seconds", "second", "sec", "secs", "epoch") or "second" in h:
        return 1.0
    return default


def _parse(name: str, text: str, time_unit_seconds: float) -> Trace:
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or len(header) < 2:
        raise TraceError(f"{name}:1: expected a header with a time and a demand column")
    try:
        float(header[0])
        float(header[1])
    except ValueError:
        pass
    else:
        raise TraceError(f"{name}:1: expected a header line (e.g. minute,requests), got numbers")
    unit = _unit(header[0], time_unit_seconds)
    times: list[float] = []
    demand: list[float] = []
    for line, row in enumerate(reader, start=2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        try:
            t, d = float(row[0]), float(row[1])
        except (ValueError, IndexError):
            raise TraceError(f"{name}:{line}: expected two numbers, got {row!r}") from None
        if not (math.isfinite(t) and math.isfinite(d)):
            raise TraceError(f"{name}:{line}: expected finite numbers, got {row!r}")
        if d < 0:
            raise TraceError(f"{name}:{line}: demand must be >= 0, got {d:g}")
        if times and t <= times[-1]:
            raise TraceError(f"{name}:{line}: time {t:g} is not after {times[-1]:g}")
        if len(times) >= 2:
            step, gap = times[1] - times[0], t - times[-1]
            if not math.isclose(gap, step, rel_tol=1e-6, abs_tol=1e-9):
                raise TraceError(
                    f"{name}:{line}: rows must be evenly spaced: time {t:g} is {gap:g} after "
                    f"{times[-1]:g}, earlier rows are {step:g} apart"
                )
        times.append(t)
        demand.append(d)
    if len(times) < 2:
        raise TraceError(f"{name}: needs at least two rows")
    step = (times[1] - times[0]) * unit
    return Trace(name, step, tuple(demand))


def load_trace(path: str | Path, *, time_unit_seconds: float = 60.0) -> Trace:
    """Load a trace file; ``time_unit_seconds``: the time unit when the header names none."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise TraceError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    try:
        text = (gzip.decompress(raw) if p.suffix == ".gz" else raw).decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise TraceError(f"{p}: not a UTF-8 CSV (or gzip of one): {exc}") from exc
    return _parse(str(p), text, time_unit_seconds)


def parse_trace(name: str, text: str, *, time_unit_seconds: float = 60.0) -> Trace:
    """Parse CSV text (for generated traces and tests)."""
    return _parse(name, text, time_unit_seconds)


def nasa_trace() -> Trace:
    """The embedded NASA-HTTP 1995 trace (requests per minute), see data/README.md."""
    data = resources.files("stackscaler").joinpath("data/nasa-http-1995-per-minute.csv.gz")
    text = gzip.decompress(data.read_bytes()).decode("utf-8")
    return _parse("nasa-http-1995-per-minute", text, 60.0)
