"""Synthetic demand traces for `make bench`, generated with a fixed seed (per-minute rows).

- retail: 13 weeks (Sept-Nov) of a weekly retail shape (daily cycle, busier
  evenings and weekends) growing towards a late-November peak (Black Friday
  ~4x a normal day, then Cyber Monday).
- flash-crowd: 2 days of a daily cycle with a flash crowd: 10x in 5 minutes,
  held 1 hour, decaying over 2 hours.
- ramp: 60 days of exponential growth from one user to ten million
  (requests per minute ~ users x 0.5), with a daily cycle.

``python -m bench.traces OUTDIR`` writes them as OUTDIR/NAME.csv.gz.
"""

from __future__ import annotations

import gzip
import math
import random
import sys
from pathlib import Path

from stackscaler.sim.trace import Trace

SEED = 1995
DAY = 1440


def _daily(minute: int, peak_hour: float = 14.0) -> float:
    """A smooth daily cycle between 0.25 and 1.0, peaking at ``peak_hour``."""
    h = (minute % DAY) / 60.0
    return 0.625 + 0.375 * math.cos(2 * math.pi * (h - peak_hour) / 24.0)


def retail(seed: int = SEED) -> Trace:
    rng = random.Random(seed)
    days = 91  # 1 Sept .. 30 Nov; Black Friday is day 86, Cyber Monday day 89
    out = []
    for m in range(days * DAY):
        day = m // DAY
        weekday = day % 7
        base = 1000.0 * (1.0 + 0.6 * day / days)  # the season builds up
        weekly = 1.25 if weekday in (5, 6) else 1.0
        peak = 1.0
        if day in (86, 87):
            peak = 4.0 if day == 86 else 2.5
        elif day == 89:
            peak = 3.0
        elif 80 <= day < 86:
            peak = 1.0 + 0.25 * (day - 79)
        level = base * weekly * peak * _daily(m, 19.0)
        out.append(max(0.0, level * (1 + rng.gauss(0, 0.05))))
    return Trace("synthetic-retail", 60.0, tuple(round(x, 1) for x in out))


def flash_crowd(seed: int = SEED) -> Trace:
    rng = random.Random(seed + 1)
    start = DAY + 10 * 60  # day 2, 10:00
    out = []
    for m in range(2 * DAY):
        level = 1000.0 * _daily(m)
        k = m - start
        if 0 <= k < 5:
            level *= 1 + 9 * (k + 1) / 5
        elif 5 <= k < 65:
            level *= 10
        elif 65 <= k < 185:
            level *= 1 + 9 * (1 - (k - 65) / 120)
        out.append(max(0.0, level * (1 + rng.gauss(0, 0.05))))
    return Trace("synthetic-flash-crowd", 60.0, tuple(round(x, 1) for x in out))


def ramp(seed: int = SEED) -> Trace:
    rng = random.Random(seed + 2)
    days = 60
    n = days * DAY
    growth = math.log(10_000_000) / (n - 1)
    out = []
    for m in range(n):
        users = math.exp(growth * m)
        level = 0.5 * users * (0.4 + 0.6 * _daily(m)) / 0.775
        noise = rng.gauss(0, 0.05) if users > 100 else 0.0
        out.append(max(0.0, level * (1 + noise)))
    return Trace("synthetic-ramp", 60.0, tuple(round(x, 3) for x in out))


ALL = {"retail": retail, "flash-crowd": flash_crowd, "ramp": ramp}


def write(trace: Trace, path: Path) -> None:
    text = "minute,requests\n" + "".join(f"{i},{d:g}\n" for i, d in enumerate(trace.demand))
    path.write_bytes(gzip.compress(text.encode(), mtime=0))


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "bench/data")
    out.mkdir(parents=True, exist_ok=True)
    for name, make in ALL.items():
        write(make(), out / f"{name}.csv.gz")
        print(out / f"{name}.csv.gz")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
