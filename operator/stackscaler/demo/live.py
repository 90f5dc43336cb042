"""``stackscaler demo``: the live demo's orchestration.

Setup, in the main thread (so the children's death signal follows a thread
that lives as long as the demo):

1. build the control plane when its binaries are missing (minutes, once);
   when it cannot be built, :class:`DemoUnavailable` lets the caller fall
   back to the preview;
2. start kube-apiserver + etcd in ``<work dir>/controlplane`` (CRDs
   installed), moto on a free loopback port, and arrange moto
   (:mod:`stackscaler.demo.aws`);
3. apply the demo stack (:mod:`stackscaler.demo.stack`) and start the
   operator as ``stackscaler run`` (a subprocess: its own logs, as in a
   cluster).

The story, on an event loop (every blocking call in a small thread pool):

* the load generator ticks every second: it reads the capacity the
  stand-ins serve with, computes the load (:mod:`stackscaler.demo.load`),
  publishes the metrics, sends and finishes SQS jobs and keeps the
  StatefulSet's ready replicas in step;
* the display reads the resources' status and the operator's Events every
  2 s: scale actions and warnings scroll, the table redraws in place on a
  terminal (elsewhere it is printed every 10 s);
* a watchdog ends the story when a child dies.

The load generator's ticks and the display's status reads and Events are
recorded (:mod:`stackscaler.demo.timeline`, bounded) for the picture.

The story ends at its end, after ``--duration`` seconds, on Ctrl-C or
SIGTERM; then, again in the main thread, the operator, moto and the
control plane are stopped (its folder removed), the logs are kept in
``<work dir>/logs``, the picture of what was recorded is drawn (``--plot``,
by default ``<work dir>/demo.png``) and the summary, which names it, is
printed. Exit status: 0 when the
story ran (also when cut short by Ctrl-C), 1 when something failed, 130 on
Ctrl-C before the story started.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any, TextIO, TypeVar

import yaml

from stackscaler.demo import load as lm
from stackscaler.demo.aws import StandIn
from stackscaler.demo.cluster import Cluster, Event
from stackscaler.demo.processes import (
    Child,
    ChildFailed,
    children_env,
    moto_executable,
    start_moto,
    start_operator,
    tail,
)
from stackscaler.demo.stack import DemoStack, StackFacts, Tier, demo_stack
from stackscaler.demo.story import LAUNCH_AT, Story, launch_day, minute_of_day_label
from stackscaler.demo.story import smoothed_peak as story_peak
from stackscaler.demo.table import (
    Row,
    TierSummary,
    count,
    event_line,
    mmss,
    percent,
    render_summary,
    render_table,
    tier_status,
)
from stackscaler.demo.timeline import Recorder, TierPoint, story_chart
from stackscaler.devtools import controlplane as cp
from stackscaler.sim.plot import PlotUnavailable, draw
from stackscaler.sim.trace import nasa_trace

T = TypeVar("T")
TICK_SECONDS = 1.0
DISPLAY_SECONDS = 2.0
PLAIN_TABLE_SECONDS = 10.0
SCALE_REASONS = ("ScaledOut", "ScaledIn")
PICTURE = "demo.png"
"""The picture's name in the work dir when ``--plot`` names no file."""


class DemoUnavailable(Exception):
    """The live demo cannot run on this machine (no Go to build the control plane, no moto)."""


@dataclass(frozen=True)
class DemoOptions:
    duration: float | None = None
    """Wall seconds of story to play; None: the whole story."""
    minute_seconds: float = 2.0
    scale: float | None = None
    plot: Path | None = None
    """Where the picture goes (.png or .svg); None: ``<work dir>/demo.png``."""


@dataclass(frozen=True)
class Plan:
    stack: DemoStack
    story: Story
    model: lm.LoadModel

    @property
    def facts(self) -> StackFacts:
        return self.stack.facts


def plan(options: DemoOptions) -> Plan:
    text = resources.files("stackscaler").joinpath("data/stack.yaml").read_text("utf-8")
    docs = [d for d in yaml.safe_load_all(text) if d]
    stack = demo_stack(docs, minute_seconds=options.minute_seconds)
    story = launch_day(nasa_trace().demand, minute_seconds=options.minute_seconds)
    model = lm.calibrate(
        stack.facts,
        story_peak(story.raw),
        minute_seconds=options.minute_seconds,
        scale=options.scale,
    )
    return Plan(stack, story.with_scale(model.scale), model)


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


class Screen:
    """Scrolling lines above a table that redraws in place on a terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._table_lines = 0

    @property
    def width(self) -> int:
        if not self.tty:
            return 200
        return max(60, shutil.get_terminal_size((120, 24)).columns - 1)

    def say(self, *lines: str) -> None:
        self._erase()
        for line in lines:
            self.out.write(line + "\n")
        self.out.flush()

    def table(self, lines: Sequence[str], scrolled: Sequence[str] = ()) -> None:
        self._erase()
        for line in (*scrolled, *lines):
            self.out.write(line + "\n")
        if self.tty:
            self._table_lines = len(lines)
        self.out.flush()

    def keep(self) -> None:
        """Leave the table on screen; what follows prints below it."""
        self._table_lines = 0

    def _erase(self) -> None:
        if self.tty and self._table_lines:
            self.out.write(f"\x1b[{self._table_lines}F\x1b[J")
            self._table_lines = 0


# --------------------------------------------------------------------------
# Shared state of the story
# --------------------------------------------------------------------------


class Board:
    """What the load generator and the display share (one event loop, no locks).

    The one mutable object of the story; what it holds (loads, capacities,
    tallies, events) are frozen values replaced tick by tick.
    """

    def __init__(self, kinds: Sequence[str]) -> None:
        self.load: lm.Load | None = None
        self.caps: lm.Capacities | None = None
        self.backlog = 0
        self.in_flight = 0
        self.tallies: dict[str, lm.TierTally] = {}
        self.jobs_sent = 0
        self.jobs_done = 0
        self.tick_errors = 0
        self.last_error = ""
        self.events: dict[str, Event] = {}
        """Every Event of the demo's resources seen so far, by uid."""
        self.failure: str | None = None
        self.ended_by = ""
        self.desired: dict[str, int | None] = {}
        """Each tier's desiredCapacity as the display last read it."""
        self.tables: tuple[lm.TableLoad, ...] = ()
        """The sessions table's dimensions as the load generator last drove them."""
        self.recorder = Recorder(kinds)
        """The picture's timeline."""


def _values(facts: StackFacts, board: Board) -> dict[str, float | None]:
    """Each tier's metric value (the one "over target" follows) from the board."""
    load, caps = board.load, board.caps
    if load is None or caps is None:
        return {}
    return {
        facts.web.kind: load.web_cpu,
        facts.workers.kind: lm.backlog_per_worker(board.backlog + board.in_flight, caps.workers),
        facts.readers.kind: load.replica_cpu,
        facts.cache.kind: load.cache_cpu,
    }


def _rows(
    plan_: Plan,
    board: Board,
    statuses: dict[str, Any],
    table_statuses: Mapping[str, Any] | None = None,
) -> list[Row]:
    table_statuses = table_statuses or {}
    facts, load, caps = plan_.facts, board.load, board.caps
    values = _values(facts, board)
    rows = []
    for t in facts.tiers:
        st = tier_status(statuses.get(t.kind))
        demand, text, ready = "-", "-", None
        if load is not None and caps is not None:
            if t is facts.web:
                demand, ready = f"{count(load.demand)} req", caps.web
                text = f"cpu {percent(load.web_cpu)} vs {t.target_value:g}%"
            elif t is facts.workers:
                demand, ready = f"{count(load.jobs)} jobs", caps.workers
                per = values[t.kind]
                waiting = board.backlog + board.in_flight
                text = (
                    f"{per:.0f}/worker vs {t.target_value:g} ({waiting} waiting)"
                    if per is not None and math.isfinite(per)
                    else f"{waiting} waiting, no worker"
                )
            elif t is facts.readers:
                demand, ready = f"{count(load.reads)} reads", caps.replicas
                text = f"cpu {percent(load.replica_cpu)} vs {t.target_value:g}%"
            else:
                demand, ready = f"{count(load.cache_ops)} ops", caps.cache
                text = f"cpu {percent(load.cache_cpu)} vs {t.target_value:g}%"
        rows.append(Row(t.name, t.target, demand, text, ready, st.current, st.desired, st.reason))
    tables = {x.table.name: x for x in board.tables}
    for tf in facts.tables:
        st = tier_status(table_statuses.get(tf.name))
        x = tables.get(tf.name)
        demand, text, ready = "-", "-", None
        if x is not None:
            demand, ready = f"{count(x.demand)} u/s", x.provisioned
            text = f"use {percent(x.utilization)} vs {tf.target_utilization:g}%" + (
                f", {count(x.throttled)}/s throttled" if x.throttled > 0 else ""
            )
        rows.append(Row(tf.name, tf.target, demand, text, ready, st.current, st.desired, st.reason))
    return rows


def _by_kind(facts: StackFacts, web: T, workers: T, replicas: T, cache: T) -> dict[str, T]:
    return {
        facts.web.kind: web,
        facts.workers.kind: workers,
        facts.readers.kind: replicas,
        facts.cache.kind: cache,
    }


def _over_what(t: Tier) -> str:
    limit = t.target_value * (1 + t.tolerance)
    if t.kind == "WorkerPool":
        return f"backlog > {limit:g}/worker"
    return f"{t.metric} > {limit:g}%"


# --------------------------------------------------------------------------
# The story (event loop)
# --------------------------------------------------------------------------


class Live:
    """The story: the load generator, the display and the watchdog on one event loop."""

    def __init__(
        self,
        plan_: Plan,
        options: DemoOptions,
        screen: Screen,
        *,
        standin: StandIn,
        cluster: Cluster,
        children: Sequence[Child],
        controlplane_dir: Path,
    ) -> None:
        self.plan, self.options, self.screen = plan_, options, screen
        self.standin, self.cluster = standin, cluster
        self.children = tuple(children)
        self.controlplane_dir = controlplane_dir
        self.board = Board([t.kind for t in plan_.facts.tiers])
        self.started = datetime.now(UTC)
        self.wall = 0.0
        """Wall seconds the story ran."""

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(name: str) -> None:
            if not stop.is_set():
                self.board.ended_by = name
                self.screen.say(f"{name}: ending the story early, then stopping everything ...")
                stop.set()

        loop.add_signal_handler(signal.SIGINT, on_signal, "Ctrl-C")
        loop.add_signal_handler(signal.SIGTERM, on_signal, "SIGTERM")
        executor = ThreadPoolExecutor(max_workers=6, thread_name_prefix="stackscaler-demo")

        async def call(fn: Callable[..., T], *args: Any) -> T:
            return await loop.run_in_executor(executor, fn, *args)

        self.started = datetime.now(UTC)
        t0 = loop.time()

        def elapsed() -> float:
            return loop.time() - t0

        story_seconds = self.plan.story.wall_seconds
        limit = min(self.options.duration or story_seconds, story_seconds)
        tasks = [
            asyncio.create_task(self._load_loop(call, elapsed)),
            asyncio.create_task(self._display_loop(call, elapsed)),
            asyncio.create_task(self._watchdog(call, stop)),
        ]
        try:
            try:
                await asyncio.wait_for(stop.wait(), timeout=limit)
            except TimeoutError:
                self.board.ended_by = (
                    "--duration" if limit < story_seconds else "the end of the story"
                )
        finally:
            self.wall = elapsed()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            executor.shutdown(wait=False, cancel_futures=True)
            # the signal handlers stay until the loop closes; then the caller's take over

    async def _load_loop(self, call: Any, elapsed: Callable[[], float]) -> None:
        p, b = self.plan, self.board
        facts, story, model = p.facts, p.story, p.model
        state = lm.QueueState()
        last = elapsed()
        sts_ready = -1
        while True:
            now = elapsed()
            dt, last = min(now - last, 5.0), now
            try:
                groups, replicas, (sts_wanted, _), (visible, in_flight) = await asyncio.gather(
                    call(self.standin.in_service, [facts.web_asg, facts.workers_asg]),
                    call(self.standin.available_replicas, facts.db),
                    call(
                        self.cluster.statefulset_replicas, facts.cache.namespace, facts.statefulset
                    ),
                    call(self.standin.backlog),
                )
                if sts_wanted != sts_ready:
                    await call(
                        self.cluster.mark_ready,
                        facts.cache.namespace,
                        facts.statefulset,
                        sts_wanted,
                    )
                    sts_ready = sts_wanted
                caps = lm.Capacities(
                    web=groups.get(facts.web_asg, 0),
                    workers=groups.get(facts.workers_asg, 0),
                    replicas=replicas,
                    cache=sts_ready,
                )
                load = lm.load_at(model, story.demand_at(now), caps)
                step = lm.queue_step(
                    model,
                    jobs_per_minute=load.jobs,
                    workers=caps.workers,
                    backlog=visible,
                    dt=dt,
                    state=state,
                )
                tables: tuple[lm.TableLoad, ...] = ()
                if facts.tables:
                    units = await call(self.standin.table_units, facts.tables)
                    tables = lm.table_loads(model, load.demand, facts.tables, units)
                published = lm.datapoints(facts, load) + lm.table_datapoints(tables, dt)
                sent, done, _ = await asyncio.gather(
                    call(self.standin.send_jobs, step.send, b.jobs_sent),
                    call(self.standin.finish_jobs, step.consume),
                    call(self.standin.publish, published, datetime.now(UTC)),
                )
                b.tables = tables
                for x in tables:
                    key = x.table.label
                    b.tallies[key] = b.tallies.get(key, lm.TierTally()).add(
                        capacity=x.provisioned, over=x.throttled > 0, dt=dt
                    )
                # what could not be sent waits; workers that found the queue dry bank nothing
                state = lm.QueueState(
                    step.state.arrivals_carry + (step.send - sent),
                    step.state.work_carry if done >= step.consume else 0.0,
                )
                b.jobs_sent += sent
                b.jobs_done += done
                b.load, b.caps = load, caps
                b.backlog, b.in_flight = max(0, visible + sent - done), in_flight
                values = _values(facts, b)
                units = _by_kind(facts, caps.web, caps.workers, caps.replicas, caps.cache)
                for t in facts.tiers:
                    b.tallies[t.kind] = b.tallies.get(t.kind, lm.TierTally()).add(
                        capacity=units[t.kind], over=lm.over_target(t, values.get(t.kind)), dt=dt
                    )
                n = lm.needs(model, load)
                needed = _by_kind(facts, n.web, n.workers, n.replicas, n.cache)
                b.recorder.sample(
                    story.minute_of_day(now),
                    [
                        TierPoint(needed[t.kind], units[t.kind], b.desired.get(t.kind))
                        for t in facts.tiers
                    ],
                )
            except Exception as exc:  # a hiccup of the stand-in: the watchdog handles deaths
                b.tick_errors += 1
                b.last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(max(0.0, TICK_SECONDS - (elapsed() - now)))

    def event_lines(self, events: Sequence[Event], width: int) -> list[str]:
        """Lines for the scale actions and warnings not shown yet (all are kept for the summary)."""
        lines = []
        for e in events:
            if e.uid in self.board.events:
                continue
            self.board.events[e.uid] = e
            if e.reason not in SCALE_REASONS and e.type != "Warning":
                continue
            wall = (e.time - self.started).total_seconds() if e.time is not None else self.wall
            clock = self.plan.story.clock(wall) if wall >= 0 else "setup"
            if e.reason in SCALE_REASONS:
                self.board.recorder.action(
                    self.plan.story.minute_of_day(wall),
                    e.kind,
                    out=e.reason == "ScaledOut",
                    message=e.message,
                )
            tier = next((t.name for t in self.plan.facts.tiers if t.kind == e.kind), e.name)
            lines.append(
                event_line(wall, clock, tier, reason=e.reason, message=e.message, width=width)
            )
        return lines

    async def _display_loop(self, call: Any, elapsed: Callable[[], float]) -> None:
        facts, story = self.plan.facts, self.plan.story
        namespace = facts.web.namespace
        last_table = -math.inf
        statuses: dict[str, Any] = {}
        table_statuses: dict[str, Any] = {}
        events: list[Event] = []
        errors_shown = 0
        while True:
            now = elapsed()
            try:
                statuses, events, table_statuses = await asyncio.gather(
                    call(self.cluster.statuses, facts.tiers),
                    call(self.cluster.events, namespace),
                    call(self.cluster.table_statuses, facts.tables),
                )
                for t in facts.tiers:
                    self.board.desired[t.kind] = tier_status(statuses.get(t.kind)).desired
            except Exception as exc:
                self.screen.say(f"(cannot read the control plane: {exc})")
                events = []
            width = self.screen.width
            scrolled = self.event_lines(events, width)
            if self.board.tick_errors > errors_shown:
                errors_shown = self.board.tick_errors
                scrolled.append(f"(load generator: {self.board.last_error})")
            total = story.wall_seconds
            title = (
                f"story {story.clock(now)} EDT (lift-off {minute_of_day_label(LAUNCH_AT)}) | "
                f"wall {mmss(now)} of {mmss(min(self.options.duration or total, total))} | "
                f"jobs sent {self.board.jobs_sent:,}, done {self.board.jobs_done:,}"
            )
            due = self.screen.tty or now - last_table >= PLAIN_TABLE_SECONDS
            if due:
                last_table = now
                table = render_table(
                    title, _rows(self.plan, self.board, statuses, table_statuses), width
                )
                self.screen.table(table, scrolled)
            elif scrolled:
                self.screen.say(*scrolled)
            await asyncio.sleep(max(0.0, DISPLAY_SECONDS - (elapsed() - now)))

    async def _watchdog(self, call: Any, stop: asyncio.Event) -> None:
        while True:
            for child in self.children:
                if not child.alive():
                    self.board.failure = (
                        f"{child.name} (pid {child.pid}) exited with {child.proc.returncode}; "
                        f"{child.log}:\n{tail(child.log)}"
                    )
            running = await call(cp.status, self.controlplane_dir)
            if running is None:
                self.board.failure = "the control plane stopped"
            if self.board.failure:
                self.board.ended_by = "a failure"
                stop.set()
                return
            await asyncio.sleep(1.0)


# --------------------------------------------------------------------------
# Setup and teardown (main thread)
# --------------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _binaries(say: Callable[[str], None]) -> Path:
    try:
        found = cp.find_binaries()
        if found is not None:
            return found
        say("building kube-apiserver and etcd from the pinned Go modules (first time: minutes) ...")
        return cp.build(log=say)
    except cp.ControlPlaneUnavailable as exc:
        raise DemoUnavailable(str(exc)) from exc
    except cp.ControlPlaneError as exc:
        raise DemoUnavailable(f"the control plane cannot be built: {exc}") from exc


def check_prerequisites(say: Callable[[str], None]) -> tuple[Path, str]:
    """(control plane binaries, moto_server); DemoUnavailable names what is missing."""
    moto = moto_executable()
    if moto is None:
        raise DemoUnavailable(
            "moto_server is not installed: pip install 'moto[server]' (the test extra: "
            "pip install -e '.[test]'; `make demo` does it)"
        )
    try:
        import cryptography  # noqa: F401, PLC0415 - the control plane's certificates
    except ImportError as exc:
        raise DemoUnavailable(
            "the control plane needs 'cryptography': pip install -e '.[dev]'"
        ) from exc
    return _binaries(say), moto


def _stack_text(documents: Sequence[Any]) -> str:
    return yaml.safe_dump_all(list(documents), sort_keys=False)


def run_live(options: DemoOptions, out: TextIO | None = None) -> int:
    screen = Screen(out or sys.stdout)
    say = screen.say
    p = plan(options)
    facts, story, model = p.facts, p.story, p.model

    old_handlers = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        binaries, moto_exe = check_prerequisites(say)
    except BaseException:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        raise

    workdir = Path(tempfile.mkdtemp(prefix="stackscaler-demo-"))
    logs, cp_dir = workdir / "logs", workdir / "controlplane"
    logs.mkdir()
    picture = options.plot or workdir / PICTURE
    span = f"{story.clock(0)}-{minute_of_day_label(story.start_minute_of_day + len(story.demand))}"
    say(
        "stackscaler demo: the stack of examples/stack.yaml on a real Kubernetes API server, "
        "with moto standing in for AWS, driven by the operator (stackscaler run).",
        f"story: launch day at NASA, Thu 13 July 1995, {span} EDT: Space Shuttle Discovery "
        f"(STS-70) lifts off at {minute_of_day_label(LAUNCH_AT)}; NASA-HTTP requests per minute "
        f"x {model.scale:g}; 1 story minute = {story.minute_seconds:g} s, the story takes "
        f"{mmss(story.wall_seconds)}"
        + (
            f" (this run: {mmss(min(options.duration, story.wall_seconds))})"
            if options.duration
            else ""
        ),
        f"load: a web instance serves {count(model.web_requests_per_instance)} req/min at 100% "
        f"CPU; 1 job per {count(model.requests_per_job)} requests, a worker does one per "
        f"{model.seconds_per_job:g} s; a DB instance serves {count(model.reads_per_db_instance)} "
        f"reads/min (1 per request, the source serves too); a cache node "
        f"{count(model.cache_ops_per_node)} ops/min ({model.cache_ops_per_request:g} per request)"
        + (
            f"; the sessions table {model.table_reads_per_request:.3g} read units/s per "
            f"request/min, a write per {model.requests_per_write:g} requests"
            if facts.tables
            else ""
        ),
        "demo overrides of examples/stack.yaml:",
        *(f"  - {n}" for n in p.stack.notes),
        f"work dir: {workdir} (logs in {logs}; the control plane in {cp_dir})",
        f"picture at the end: {picture}",
    )

    children: list[Child] = []
    standin: StandIn | None = None
    cluster: Cluster | None = None
    live: Live | None = None
    plane: cp.ControlPlane | None = None
    rc = 0
    setup_started = time.monotonic()
    try:
        plane = cp.start(cp_dir, binaries=binaries, die_with_parent=True)
        moto, endpoint = start_moto(moto_exe, logs, facts.region)
        children.append(moto)
        standin = StandIn(endpoint, facts.region)
        arranged = standin.arrange(facts)
        cluster = Cluster(plane.kubeconfig)
        (workdir / "stack-demo.yaml").write_text(_stack_text(p.stack.documents))
        applied = cluster.apply(p.stack.documents)
        readers = facts.readers
        arranged.append(
            standin.first_replica(
                facts, cluster.uid(readers), f"{readers.namespace}/{readers.name}"
            )
        )
        operator = start_operator(
            plane.kubeconfig, facts.web.namespace, logs, children_env(endpoint, facts.region)
        )
        children.append(operator)
        say(
            f"control plane {plane.server} (etcd pid {plane.pids.get('etcd')}, kube-apiserver "
            f"pid {plane.pids.get('kube-apiserver')}, ready in {plane.started_in_seconds:.1f} s); "
            f"moto {endpoint} (pid {moto.pid}); operator pid {operator.pid}",
            "moto: " + "; ".join(arranged),
            f"applied ({workdir / 'stack-demo.yaml'}): " + ", ".join(applied),
            f"set up in {time.monotonic() - setup_started:.1f} s; the story starts now "
            "(Ctrl-C ends it early)",
            "",
        )
        live = Live(
            p,
            options,
            screen,
            standin=standin,
            cluster=cluster,
            children=children,
            controlplane_dir=cp_dir,
        )
        asyncio.run(live.run())
        signal.signal(signal.SIGINT, _raise_interrupt)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        if live.board.failure:
            rc = 1
    except KeyboardInterrupt:
        if live is None or not live.wall:
            rc = 130
            say("interrupted before the story started")
    except (cp.ControlPlaneError, ChildFailed, OSError) as exc:
        rc = 1
        say(f"stackscaler demo: {exc}")
    except Exception as exc:
        rc = 1
        say(f"stackscaler demo: unexpected {type(exc).__name__}: {exc}")
    finally:
        screen.keep()
        stopped = _teardown(
            screen,
            children=children,
            cluster=cluster,
            standin=standin,
            live=live,
            plane=plane,
            cp_dir=cp_dir,
            logs=logs,
        )
    if live is not None and live.wall > 0:
        drawn = _picture(screen, live, picture)
        _summary(screen, live, stopped=stopped, workdir=workdir, logs=logs, picture=drawn)
    else:
        say("stopped: " + "; ".join(stopped), f"logs: {logs}")
    if live is not None and live.board.failure:
        say(f"stackscaler demo: the story ended by a failure: {live.board.failure}")
    return rc


def _teardown(
    screen: Screen,
    *,
    children: list[Child],
    cluster: Cluster | None,
    standin: StandIn | None,
    live: Live | None,
    plane: cp.ControlPlane | None,
    cp_dir: Path,
    logs: Path,
) -> list[str]:
    """Stop everything the demo started, whatever happened; what was stopped, for people."""
    stopped: list[str] = []
    with _patience(screen, "stopping everything the demo started, a few seconds ..."):
        by_name = {c.name: c for c in children}
        operator = by_name.get("operator")
        if operator is not None:
            code = operator.stop()
            stopped.append(f"operator (pid {operator.pid}, exit {code})")
        if cluster is not None:
            if live is not None:
                with contextlib.suppress(Exception):  # the last Events, for the summary
                    late = live.event_lines(
                        cluster.events(live.plan.facts.web.namespace), screen.width
                    )
                    if late:
                        screen.say(*late)
            cluster.close()
        if standin is not None:
            standin.close()
        moto = by_name.get("moto")
        if moto is not None:
            moto.stop()
            stopped.append(f"moto (pid {moto.pid})")
        for name in ("kube-apiserver", "etcd"):
            with contextlib.suppress(OSError):
                shutil.copy(cp_dir / "logs" / f"{name}.log", logs / f"{name}.log")
        if plane is not None or (cp_dir / cp.STATE_FILE).exists():
            pids = plane.pids if plane is not None else {}
            cp.stop(cp_dir)
            stopped.append(
                "kube-apiserver and etcd"
                + (f" (pids {', '.join(str(v) for v in pids.values())})" if pids else "")
            )
        shutil.rmtree(cp_dir, ignore_errors=True)
        stopped.append(f"{cp_dir} {'still exists!' if cp_dir.exists() else 'removed'}")
    return stopped


@contextlib.contextmanager
def _patience(screen: Screen, note: str) -> Iterator[None]:
    """Ctrl-C and SIGTERM only print ``note`` while the block runs (it must finish)."""

    def patience(signum: int, frame: FrameType | None) -> None:
        screen.say(note)

    old = {s: signal.signal(s, patience) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _picture(screen: Screen, live: Live, out: Path) -> str:
    """Draw what was recorded of the story into ``out``; the summary's line about it."""
    timeline = live.board.recorder.timeline()
    if not timeline.samples:
        return "picture: none (nothing was recorded)"
    chart = story_chart(timeline, live.plan.facts.tiers, live.plan.story)
    with _patience(screen, "drawing the picture, a few seconds ..."):
        try:
            draw(chart, out)
        except PlotUnavailable as exc:
            return f"picture: none ({exc})"
        except Exception as exc:  # the summary matters more than the picture
            return f"picture: not written ({type(exc).__name__}: {exc})"
    dropped = (
        f"; {timeline.dropped_actions} later scale actions not marked"
        if timeline.dropped_actions
        else ""
    )
    return (
        f"picture: {out} (demand, ready and desired capacity per tier over the story, "
        f"scale actions marked{dropped})"
    )


def _summary(
    screen: Screen,
    live: Live,
    *,
    stopped: list[str],
    workdir: Path,
    logs: Path,
    picture: str,
) -> None:
    p, b = live.plan, live.board
    story = p.story
    scale = [e for e in b.events.values() if e.reason in SCALE_REASONS]
    first = min(
        (e for e in scale if e.reason == "ScaledOut" and e.time is not None),
        key=lambda e: e.time or live.started,
        default=None,
    )
    first_text = None
    if first is not None and first.time is not None:
        seconds = (first.time - live.started).total_seconds()
        tier = next((t.name for t in p.facts.tiers if t.kind == first.kind), first.name)
        first_text = f"{max(0.0, seconds):.0f} s into the story ({tier}: {first.message})"
    rows = [
        TierSummary(
            tier=t,
            tally=b.tallies.get(t.kind, lm.TierTally()),
            scale_outs=sum(1 for e in scale if e.kind == t.kind and e.reason == "ScaledOut"),
            scale_ins=sum(1 for e in scale if e.kind == t.kind and e.reason == "ScaledIn"),
            over_what=_over_what(t),
        )
        for t in p.facts.tiers
    ]
    log_names = sorted(f.name for f in logs.iterdir()) if logs.is_dir() else []
    heading = (
        f"summary: {mmss(live.wall)} of story ({story.clock(0)}-{story.clock(live.wall)} EDT), "
        f"ended by {b.ended_by or 'the end of the story'}; {b.jobs_sent:,} jobs sent, "
        f"{b.jobs_done:,} done"
    )
    warnings = sum(1 for e in b.events.values() if e.type == "Warning")
    tables = []
    for tf in p.facts.tables:
        tally = b.tallies.get(tf.label, lm.TierTally())
        outs = sum(1 for e in scale if e.name == tf.name and e.reason == "ScaledOut")
        ins = sum(1 for e in scale if e.name == tf.name and e.reason == "ScaledIn")
        seen = (
            f"{tally.min_capacity}-{tally.max_capacity}"
            if tally.min_capacity != tally.max_capacity
            else str(tally.min_capacity)
        )
        tables.append(
            f"{tf.label} ({tf.target}): {outs + ins} scale actions ({outs} out, {ins} in), "
            f"provisioned {seen} units, throttled {tally.share_over:.0%} of the time "
            f"({tally.seconds_over:.0f} of {tally.seconds:.0f} s)"
        )
    footer = [
        *tables,
        f"operator Events: {len(b.events)} ({warnings} warnings); load generator hiccups: "
        f"{b.tick_errors}" + (f" (last: {b.last_error})" if b.last_error else ""),
        f"logs: {logs} ({', '.join(log_names)}); resources as applied: "
        f"{workdir / 'stack-demo.yaml'}",
        "stopped: " + "; ".join(stopped),
        picture,
    ]
    screen.say(
        "", *render_summary(rows, heading=heading, first_scale_out=first_text, footer=footer)
    )


def ci() -> bool:
    return os.environ.get("CI") == "true"
