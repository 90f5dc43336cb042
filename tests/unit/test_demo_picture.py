"""The demo's picture: the recorded timeline (bounded), the chart made of it, and the PNG."""

from __future__ import annotations

import ast
import importlib
import itertools
import math
import struct
from datetime import timedelta
from pathlib import Path

import pytest

from stackscaler.cli import main
from stackscaler.cli.demo import TRACE_START, example_web, preview_chart
from stackscaler.demo import load as lm
from stackscaler.demo.stack import Tier
from stackscaler.demo.story import LAUNCH_AT, Story
from stackscaler.demo.timeline import (
    Action,
    Recorder,
    Sample,
    TierPoint,
    Timeline,
    capacity_after,
    story_chart,
)
from stackscaler.sim import plot as plot_module
from stackscaler.sim.chart import Chart, Mark, Panel, clock_label
from stackscaler.sim.engine import Step
from stackscaler.sim.plot import draw, render
from tests.unit.test_demo_table import WEB, WORKERS
from tests.unit.test_layout import FORBIDDEN, PACKAGE, _imports

READERS = Tier("ReadReplicaPool", "readers", "shop", "RDS shop-db", "cpu", 60.0, 0.1, 1, 5)
CACHE = Tier("CachePool", "sessions", "shop", "StatefulSet sessions", "cpu", 60.0, 0.1, 1, 5)
TIERS = (WEB, WORKERS, READERS, CACHE)
KINDS = tuple(t.kind for t in TIERS)
STORY = Story(tuple(1000.0 for _ in range(360)), tuple(10.0 for _ in range(360)), 100.0, 2.0)
PNG = b"\x89PNG\r\n\x1a\n"


def _points(web: TierPoint, other: TierPoint | None = None) -> list[TierPoint]:
    return [web, *([other or TierPoint(0.5, 1, 1)] * 3)]


# --------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------


def test_the_recorder_keeps_every_tick_of_a_short_run_and_the_actions_by_time() -> None:
    rec = Recorder(KINDS)
    for i in range(10):
        rec.sample(360 + i / 2, _points(TierPoint(1.0 + i, 2 + i, 3 + i)))
    rec.action(364.0, "WebTier", out=False, message="9 -> 7: cpu 20% under 50%")
    rec.action(361.0, "WebTier", out=True, message="2 -> 5: cpu 90% over 50%")
    t = rec.timeline()
    assert t.kinds == KINDS
    assert [s.minute for s in t.samples] == [360 + i / 2 for i in range(10)]
    assert t.samples[3].tiers[0] == TierPoint(4.0, 5, 6)
    assert t.samples[3].tiers[1] == TierPoint(0.5, 1, 1)
    assert t.actions == (
        Action(361.0, "WebTier", True, 5),
        Action(364.0, "WebTier", False, 7),
    )
    assert (t.stride, t.dropped_actions) == (1, 0)


def test_the_recorder_is_bounded_and_keeps_the_whole_run_evenly() -> None:
    rec = Recorder(KINDS, max_samples=64, max_actions=5)
    ticks = 10_007
    for i in range(ticks):
        rec.sample(float(i), _points(TierPoint(float(i), i, i)))
        rec.action(float(i), "WebTier", out=True, message=f"{i} -> {i + 1}")
    t = rec.timeline()
    assert len(t.samples) <= 64 + 1
    minutes = [s.minute for s in t.samples]
    assert minutes[0] == 0.0  # the start of the run is kept ...
    assert minutes[-1] == ticks - 1  # ... and its latest tick
    gaps = {b - a for a, b in itertools.pairwise(minutes[:-1])}
    assert gaps == {float(t.stride)}  # evenly spaced
    assert t.stride >= ticks / 64
    assert minutes[-2] > ticks - 1 - 2 * t.stride  # nothing missing at the end
    assert len(t.actions) == 5
    assert t.dropped_actions == ticks - 5
    assert [a.capacity for a in t.actions] == [1, 2, 3, 4, 5]  # the first ones


def test_the_recorder_wants_a_point_per_tier() -> None:
    rec = Recorder(KINDS)
    with pytest.raises(ValueError, match="3 points for 4 tiers"):
        rec.sample(360.0, [TierPoint(1.0, 1, 1)] * 3)
    with pytest.raises(ValueError):
        Recorder(KINDS, max_samples=1)


@pytest.mark.parametrize(
    ("message", "capacity"),
    [
        ("2 -> 5: cpu 90% over 50%", 5),
        ("9 -> 7: cpu 20% under 50%", 7),
        ("7 -> 12: backlog (the target allows 10)", 10),
        ("3 -> 4: x (recorded after a restart: the operator stopped ...; the target is at 4)", 4),
        ("hold 3: cooldown", None),
        ("\x1b[31m2 -> 5", None),
        ("", None),
    ],
)
def test_the_capacity_an_action_went_to(message: str, capacity: int | None) -> None:
    assert capacity_after(message) == capacity


def test_the_story_clock_in_minutes_of_the_day() -> None:
    assert STORY.minute_of_day(0) == 360.0
    assert STORY.minute_of_day(-5) == 360.0
    assert STORY.minute_of_day(3.0) == 361.5
    assert STORY.minute_of_day(10_000.0) == 720.0  # clamped to the story's end


def test_what_each_tier_needs_at_100_percent() -> None:
    model = lm.LoadModel(
        scale=1.0,
        minute_seconds=2.0,
        web_requests_per_instance=2400.0,
        requests_per_job=100.0,
        seconds_per_job=1.0,
        reads_per_request=1.0,
        reads_per_db_instance=3000.0,
        cache_ops_per_request=4.0,
        cache_ops_per_node=8000.0,
    )
    n = lm.needs(model, lm.load_at(model, 12_000.0, lm.Capacities(5, 1, 1, 1)))
    assert n.web == 5.0  # 12,000 req / 2,400
    assert n.workers == 60.0  # 120 jobs a story minute = 60 a wall second, 1 s each
    assert n.replicas == 3.0  # 12,000 reads / 3,000 = 4 instances, less the source
    assert n.cache == 6.0  # 48,000 ops / 8,000
    quiet = lm.needs(model, lm.load_at(model, 600.0, lm.Capacities(2, 0, 1, 1)))
    assert quiet.replicas == 0.0  # the source alone serves it


# --------------------------------------------------------------------------
# The chart of a timeline
# --------------------------------------------------------------------------


def _timeline() -> Timeline:
    """Four minutes around the lift-off (09:42 = minute 582 of the day)."""
    samples = (
        Sample(580.0, (TierPoint(None, 2, None), *[TierPoint(None, 0, None)] * 3)),
        Sample(581.0, (TierPoint(4.0, 2, 5), *[TierPoint(1.0, 1, 1)] * 3)),
        Sample(582.0, (TierPoint(4.5, 5, 5), *[TierPoint(1.0, 1, 2)] * 3)),
        Sample(583.0, (TierPoint(2.0, 5, 3), *[TierPoint(1.0, 2, 2)] * 3)),
    )
    actions = (
        Action(580.5, "WebTier", True, 5),
        Action(581.5, "CachePool", True, None),  # message without capacity: on the line
        Action(582.5, "WebTier", False, 3),
    )
    return Timeline(KINDS, samples, actions)


def test_one_panel_per_tier_with_its_series_and_marks() -> None:
    chart = story_chart(_timeline(), TIERS, STORY)
    assert [p.title.split(" (")[0] for p in chart.panels] == [t.label for t in TIERS]
    web, workers, _readers, cache = chart.panels
    assert web.x == (580 / 60, 581 / 60, 582 / 60, 583 / 60)
    assert math.isnan(web.demand[0]) and web.demand[1:] == (4.0, 4.5, 2.0)
    assert web.ready == (2.0, 2.0, 5.0, 5.0)
    assert math.isnan(web.desired[0]) and web.desired[1:] == (5.0, 5.0, 3.0)
    assert web.marks == (Mark(580.5 / 60, 5.0, True), Mark(582.5 / 60, 3.0, False))
    assert web.title == "WebTier web (ASG shop-web): ready 2-5, 1 scale-out(s), 1 scale-in(s)"
    assert workers.marks == ()
    assert cache.marks == (Mark(581.5 / 60, 1.0, True),)  # the desired recorded before it
    assert chart.clock and chart.xlabel == "story time (EDT)"
    assert chart.moments == ((LAUNCH_AT / 60, "STS-70 lift-off 09:42"),)
    assert "x 100" in chart.title


def test_a_run_cut_short_before_the_lift_off_does_not_mark_it() -> None:
    early = Timeline(KINDS, _timeline().samples[:2], ())
    assert story_chart(early, TIERS, STORY).moments == ()
    assert story_chart(Timeline(KINDS, (), ()), TIERS, STORY).moments == ()


def test_an_action_before_any_desired_sits_on_the_first_one_recorded() -> None:
    t = Timeline(KINDS, _timeline().samples, (Action(580.0, "WorkerPool", True, None),))
    workers = story_chart(t, TIERS, STORY).panels[1]
    assert workers.marks == (Mark(580 / 60, 1.0, True),)


def test_clock_labels() -> None:
    assert clock_label(9.7) == "09:42"
    assert clock_label(6.0) == "06:00"
    assert clock_label(11.999) == "12:00"


def test_a_panels_series_have_its_length() -> None:
    with pytest.raises(ValueError, match="as long as its x"):
        Panel("p", (1.0, 2.0), (1.0,), (1.0, 2.0), (1.0, 2.0))


def test_the_chart_values_are_pure() -> None:
    tree = ast.parse((PACKAGE / "sim" / "chart.py").read_text())
    assert not _imports(tree) & FORBIDDEN
    # a leaf: the demo's pure modules may use it without pulling in anything else
    assert not [
        n.module
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("stackscaler")
    ]


# --------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file; fails unless it starts like one."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG, head
    assert head[12:16] == b"IHDR", head
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_the_picture_is_a_png_with_a_panel_per_tier(tmp_path: Path) -> None:
    out = tmp_path / "story.png"
    chart = story_chart(_timeline(), TIERS, STORY)
    draw(chart, out)
    width, height = png_size(out)
    assert 800 <= width <= 2000 and 800 <= height <= 2000, (width, height)
    assert height > width * 0.8  # four panels stacked
    assert out.stat().st_size < 200_000
    with importlib.import_module("PIL.Image").open(out) as image:
        image.load()  # decodes: the whole file is a PNG, not only its header
        assert image.size == (width, height)


def test_the_figure_draws_the_series_and_marks() -> None:
    plt = importlib.import_module("matplotlib.pyplot")  # the test extra has matplotlib
    chart = story_chart(_timeline(), TIERS, STORY)
    fig = render(chart)
    try:
        axes = fig.axes
        assert len(axes) == len(TIERS)
        for ax, panel in zip(axes, chart.panels, strict=True):
            assert ax.get_title() == panel.title
            lines = {line.get_label(): line for line in ax.get_lines()}
            for label, series in (
                ("demand (units at 100%)", panel.demand),
                ("desired", panel.desired),
                ("ready", panel.ready),
            ):
                ys = list(lines[label].get_ydata())
                assert ys == pytest.approx(list(series), nan_ok=True), label
        web = axes[0]
        marks = {c.get_label(): c.get_offsets().tolist() for c in web.collections}
        assert marks == {
            "scale-out": [[580.5 / 60, 5.0]],
            "scale-in": [[582.5 / 60, 3.0]],
        }
        assert "STS-70 lift-off 09:42" in [t.get_text() for t in web.texts]
        assert axes[-1].xaxis.get_major_formatter()(9.7, 0) == "09:42"
    finally:
        plt.close(fig)


def test_an_svg_too(tmp_path: Path) -> None:
    out = tmp_path / "story.svg"
    draw(Chart("t", (Panel("p", (1.0, 2.0), (1.0, 2.0), (1.0, 2.0), (1.0, 1.0)),)), out)
    assert out.read_text().lstrip().startswith("<?xml")


# --------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------


def test_the_preview_draws_its_tier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "preview.png"
    assert main(["demo", "--preview", "--days", "0.5", "--plot", str(out)]) == 0
    assert f"picture: {out} (" in capsys.readouterr().out
    width, height = png_size(out)
    assert width > height  # one panel


def test_the_preview_chart_marks_every_change_of_the_desired_capacity() -> None:
    desired = [2, 2, 5, 5, 3]
    steps = [
        Step(TRACE_START + timedelta(minutes=i), 2400.0 * d, d, d, d, 0.5, "")
        for i, d in enumerate(desired)
    ]
    chart = preview_chart(example_web(), steps, 0.1, 100.0)
    (panel,) = chart.panels
    assert panel.x == tuple(i / 60 for i in range(5))
    assert panel.marks == (Mark(2 / 60, 5.0, True), Mark(4 / 60, 3.0, False))
    assert panel.demand == (2.0, 2.0, 5.0, 5.0, 3.0)
    assert panel.ready == panel.desired == (2.0, 2.0, 5.0, 5.0, 3.0)
    assert panel.title == "WebTier shop/web: 2 scale actions"


def test_plot_files_are_png_or_svg(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--preview", "--plot", "story.pdf"])
    assert exc.value.code == 2
    assert "must end in .png or .svg" in capsys.readouterr().err


def test_the_plot_directory_must_exist_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nowhere" / "story.png"
    assert main(["demo", "--plot", str(out)]) == 1
    assert "no directory" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_without_matplotlib_an_explicit_plot_fails_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(plot_module.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert main(["demo", "--plot", str(tmp_path / "story.png")]) == 1
    assert "pip install 'stackscaler[plot]'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
