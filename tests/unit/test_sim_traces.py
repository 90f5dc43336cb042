"""bench/traces.py: the synthetic traces have the shapes they promise, reproducibly."""

from __future__ import annotations

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
