"""bench/traces.py: the synthetic traces have the shapes they promise, reproducibly."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from bench import traces

from stackscaler.sim.trace import load_trace


def test_fixed_seed_is_reproducible() -> None:
    assert traces.flash_crowd() == traces.flash_crowd()
    assert traces.flash_crowd(7) != traces.flash_crowd(8)


def test_flash_crowd_is_10x_in_5_minutes() -> None:
    d = traces.flash_crowd().demand
    start = traces.DAY + 600
    assert 8 < d[start + 5] / d[start - 1] < 12


def test_ramp_goes_from_one_user_to_ten_million() -> None:
    d = traces.ramp().demand
    assert d[0] < 1
    assert 2e6 < max(d) < 1e7


def test_retail_peaks_late_in_november() -> None:
    d = traces.retail().demand
    peak_day = d.index(max(d)) // traces.DAY
    assert 84 <= peak_day <= 90


def test_written_traces_load_back(tmp_path: Path) -> None:
    t = traces.flash_crowd()
    traces.write(t, tmp_path / "f.csv.gz")
    back = load_trace(tmp_path / "f.csv.gz")
    assert back.step_seconds == 60
    assert back.demand == t.demand


def test_step_10x_is_the_issue_trace() -> None:
    d = traces.step_10x().demand
    assert d[:60] == (1000.0,) * 60
    assert d[60:180] == (10000.0,) * 120
    assert d[180:] == (1000.0,) * 60


def test_poisson_bursts_are_shorter_than_a_minute_mostly() -> None:
    t = traces.poisson_bursts()
    assert t.step_seconds == 10 and len(t.demand) == 8640
    assert t == traces.poisson_bursts()
    base = sorted(t.demand)[len(t.demand) // 2]
    burst = [d > 2.5 * base for d in t.demand]
    runs, n = [], 0
    for b in burst:
        if b:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    assert len(runs) > 40  # dozens of bursts in a day
    assert sum(r <= 5 for r in runs) > len(runs) / 2  # most last under a minute (6 rows)


def test_self_similar_stays_bursty_when_aggregated() -> None:
    # aggregated variance: for short-range noise var(mean of m) ~ 1/m; self-similar traffic
    # decays much slower (Hurst parameter H > 0.5: var ~ m^(2H - 2))
    d = traces.self_similar().demand[3000:6000]  # the flat-ish middle of the day
    detrended = [x - statistics.fmean(d[max(0, i - 180) : i + 180]) for i, x in enumerate(d)]

    def var(m: int) -> float:
        means = [statistics.fmean(detrended[k : k + m]) for k in range(0, len(d) - m, m)]
        return statistics.pvariance(means)

    slope = (math.log(var(30)) - math.log(var(1))) / math.log(30)
    hurst = 1 + slope / 2
    assert hurst > 0.6


def test_launch_month_grows_smoothly() -> None:
    d = traces.launch_month().demand
    peaks = [max(d[k * traces.DAY : (k + 1) * traces.DAY]) for k in range(30)]
    assert peaks[-1] > 8 * peaks[0]
    assert max(d) / min(d[-traces.DAY :]) < 6  # a daily cycle, no spikes


def test_sub_minute_traces_write_seconds(tmp_path: Path) -> None:
    t = traces.self_similar()
    traces.write(t, tmp_path / "s.csv.gz")
    back = load_trace(tmp_path / "s.csv.gz")
    assert (back.step_seconds, back.demand) == (10.0, t.demand)
