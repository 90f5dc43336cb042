"""Synthetic demand traces for `make bench`, generated with a fixed seed.

Per-minute rows (requests per minute):

- step-10x: 1,000 requests per minute for an hour, 10,000 for two hours,
  1,000 for an hour (the 10x step of issue 11).
- flash-crowd: 2 days of a daily cycle with a flash crowd: 10x in 5 minutes,
  held 1 hour, decaying over 2 hours.
- launch-month: 30 days after a launch: adoption grows along a logistic
  curve (5% to 100% of the final level, half-way on day 10) under a daily
  and weekly cycle; smooth.
- retail: 13 weeks (Sept-Nov) of a weekly retail shape (daily cycle, busier
  evenings and weekends) growing towards a late-November peak (Black Friday
  ~4x a normal day, then Cyber Monday); smooth.
- ramp: 60 days of exponential growth from one user to ten million
  (requests per minute ~ users x 0.5), with a daily cycle.

Ten-second rows (requests per 10 s), bursts shorter than a minute:

- poisson-bursts: one day of a daily cycle with bursts arriving as a
  Poisson process (one every 12 minutes on average), each 2-6x the base
  level, lasting a heavy-tailed time (Pareto, from 10 s, most under a
  minute, a few over ten); request counts with Poisson noise.
- self-similar: one day of 40 on/off sources with heavy-tailed on and off
  periods (Pareto, shapes 1.4 and 1.2), whose sum is self-similar (bursty
  at every time scale, as measured Ethernet and web traffic), under a daily
  cycle.

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


def step_10x() -> Trace:
    out = [1000.0] * 60 + [10000.0] * 120 + [1000.0] * 60
    return Trace("synthetic-step-10x", 60.0, tuple(out))


def launch_month(seed: int = SEED) -> Trace:
    rng = random.Random(seed + 3)
    days = 30
    out = []
    for m in range(days * DAY):
        day = m / DAY
        adoption = 0.05 + 0.95 / (1 + math.exp(-(day - 10.0) / 2.5))
        weekly = 0.8 if int(day) % 7 in (5, 6) else 1.0
        level = 3000.0 * adoption * weekly * _daily(m, 15.0)
        out.append(max(0.0, level * (1 + rng.gauss(0, 0.03))))
    return Trace("synthetic-launch-month", 60.0, tuple(round(x, 1) for x in out))


ROW10 = 10.0
"""Seconds per row of the sub-minute traces."""
ROWS10_PER_DAY = int(86400 / ROW10)


def _poisson(rng: random.Random, lam: float) -> float:
    """A Poisson count (normal approximation above 30)."""
    if lam <= 0:
        return 0.0
    if lam > 30:
        return max(0.0, float(round(rng.gauss(lam, math.sqrt(lam)))))
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return float(k)
        k += 1


def poisson_bursts(seed: int = SEED) -> Trace:
    rng = random.Random(seed + 4)
    n = ROWS10_PER_DAY
    extra = [0.0] * n
    t = rng.expovariate(1 / 720.0)
    while t < n * ROW10:
        amplitude = rng.uniform(1.0, 5.0)  # on top of the base: 2-6x
        duration = min(10.0 * rng.paretovariate(1.5), 1800.0)
        a, b = int(t // ROW10), min(n, int((t + duration) // ROW10) + 1)
        for k in range(a, b):
            extra[k] += amplitude
        t += rng.expovariate(1 / 720.0)
    out = []
    for k in range(n):
        base = 1000.0 / 6 * _daily(int(k * ROW10 // 60))  # requests per 10 s
        out.append(_poisson(rng, base * (1.0 + extra[k])))
    return Trace("synthetic-poisson-bursts", ROW10, tuple(out))


def self_similar(seed: int = SEED) -> Trace:
    rng = random.Random(seed + 5)
    n = ROWS10_PER_DAY
    horizon = n * ROW10
    on_time = [0.0] * n  # seconds of "on" per row, summed over the sources
    for _ in range(40):
        t = -3600.0 * rng.random()  # start an hour early: the sum is in its steady state at 0
        on = rng.random() < 0.3
        while t < horizon:
            length = 30.0 * rng.paretovariate(1.4) if on else 60.0 * rng.paretovariate(1.2)
            if on and t + length > 0:
                a, b = max(0.0, t), min(horizon, t + length)
                k = int(a // ROW10)
                while k < n and k * ROW10 < b:
                    lo, hi = max(a, k * ROW10), min(b, (k + 1) * ROW10)
                    on_time[k] += hi - lo
                    k += 1
            t += length
            on = not on
    out = []
    for k in range(n):
        level = 60.0 * on_time[k] / ROW10 * _daily(int(k * ROW10 // 60))  # requests per 10 s
        out.append(_poisson(rng, level))
    return Trace("synthetic-self-similar", ROW10, tuple(out))


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


ALL = {
    "step-10x": step_10x,
    "flash-crowd": flash_crowd,
    "poisson-bursts": poisson_bursts,
    "self-similar": self_similar,
    "launch-month": launch_month,
    "retail": retail,
    "ramp": ramp,
}


def write(trace: Trace, path: Path) -> None:
    """A CSV (gzip) that ``load_trace`` reads back: minutes, or seconds for shorter rows."""
    per_minute = trace.step_seconds == 60
    head = "minute,requests\n" if per_minute else "second,requests\n"
    rows = "".join(
        f"{i if per_minute else round(i * trace.step_seconds)},{d:g}\n"
        for i, d in enumerate(trace.demand)
    )
    path.write_bytes(gzip.compress((head + rows).encode(), mtime=0))


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "bench/data")
    out.mkdir(parents=True, exist_ok=True)
    for name, make in ALL.items():
        write(make(), out / f"{name}.csv.gz")
        print(out / f"{name}.csv.gz")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
