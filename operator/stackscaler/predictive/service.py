"""The operator's forecasts: history kept in memory, refreshed on the clock, a floor per tick.

:class:`Forecasts` is what the reconciler asks at each tick of a resource with
``spec.predictive`` (:meth:`Forecasts.at_tick`). It never blocks the tick:

* **History.** Per resource, the load of its forecast metric (see
  :mod:`stackscaler.predictive.plan`) in 5-minute bins, at most ``historyDays``
  (:mod:`stackscaler.predictive.history`). The first refresh of a resource (new, or
  after a restart, or after its spec changed) reads the whole window; every later one
  reads only what is new since the last read (plus the last period again, which
  CloudWatch may have completed since). CloudWatch reads of every resource refreshing at
  the same time share GetMetricData calls (:mod:`stackscaler.predictive.cloudwatch`);
  Prometheus has no batch API: one range query per resource.
* **Schedule.** A resource refreshes at its first tick, then at its first tick after each
  multiple of ``refreshSeconds`` on the clock (every hour on the hour by default), so
  the resources of a fleet read together. The refresh runs in a task of its own: the
  tick that starts it, and every tick until it ends, uses the forecast it had.
* **Fit.** :func:`stackscaler.forecast.build` (CPU: about 17 ms for 14 days of
  per-minute history, less at 5 minutes) runs in one dedicated thread, so fits run one
  at a time off the event loop, in the order their reads came back: 1,000 resources
  refitting on the hour take that thread for seconds, never a tick's time.
* **Failures.** A failed read (or fit) is reported in ``status.forecast`` and retried
  at the next refresh; a forecast that was ready keeps acting until it is older than two
  refresh intervals. Nothing here ever fails a tick or holds the reactive decision.

:func:`join` is the tick's part: the floor of the forecast over the next lead, joined to
the reactive decision in ForecastAndScale (``max(reactive, floor)``, never above max), or
only reported in ForecastOnly, and the ``status.forecast`` block that says so.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stackscaler.actuators.base import Capacity
from stackscaler.aws.clients import AwsCaller
from stackscaler.errors import PermanentError, StackscalerError
from stackscaler.forecast import (
    Backtest,
    PredictiveSettings,
    Ready,
    Refusal,
    RefusalReason,
    build,
    capacity_floor,
    raise_to_floor,
)
from stackscaler.metrics.base import MetricQuery
from stackscaler.metrics.cloudwatch import describe as describe_cloudwatch
from stackscaler.metrics.prometheus import PrometheusMetricSource, PrometheusSettings
from stackscaler.model.predictive import PredictiveMode, PredictiveSpec
from stackscaler.model.spec import CLOUDWATCH_DELIVERY_SECONDS, Resource, warmup
from stackscaler.policy import Decision
from stackscaler.predictive.cloudwatch import (
    CloudWatchHistory,
    HistoryRequest,
    Points,
    end_of_complete,
    window,
)
from stackscaler.predictive.history import STEP, Bins, CapacityRecorder, bin_of, load_series
from stackscaler.predictive.plan import CloudWatchRead, LoadPlan, PrometheusRead, plan_for
from stackscaler.text import safe_text

log = logging.getLogger("stackscaler.predictive")

MESSAGE_LIMIT = 1024
STALE_REFRESHES = 2
"""A ready forecast keeps acting through failed refreshes until it is this many refresh
intervals old."""
HISTORY_UNAVAILABLE = "HistoryUnavailable"
READING = "ReadingHistory"


class State(enum.StrEnum):
    PENDING = "Pending"
    """No forecast yet: the first history read or fit is running."""
    READY = "Ready"
    """A forecast to act on (ForecastAndScale) or to report (ForecastOnly)."""
    REFUSED = "Refused"
    """No forecast: too little history, a back-test error too high, no skill, or no
    history could be read."""


def _time(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Outlook:
    """What is known of one resource's forecast at a tick."""

    state: State
    reason: str
    message: str
    ready: Ready | None = None
    """The forecast to act on, if any."""
    refreshed_at: float | None = None
    """When the forecast (``ready``, or the last refusal) was built."""
    next_refresh: float | None = None
    history_hours: float = 0.0
    backtest: Backtest | None = None


class _Entry:
    """One resource's forecast: its plan, history and schedule (never shared)."""

    def __init__(self, key: tuple[LoadPlan, int], spec: PredictiveSpec, plan: LoadPlan) -> None:
        self.key = key
        self.spec = spec
        self.settings = PredictiveSettings.from_spec(spec)
        self.plan = plan
        limit = spec.history_seconds // STEP + 1
        self.metric = Bins(limit)
        self.capacity = CapacityRecorder(limit) if plan.observed_capacity else None
        self.read_until: float | None = None
        """The end of the last successful read (None: the next read is a full one)."""
        self.outcome: Ready | Refusal | None = None
        self.built_at: float | None = None
        self.ready_at: float | None = None
        """When ``outcome``'s model (the last Ready) was built."""
        self.last_ready: Ready | None = None
        self.error: str | None = None
        """The last refresh's failure (None once a refresh succeeds)."""
        self.next_refresh = -math.inf
        self.task: asyncio.Task[None] | None = None

    def history_hours(self) -> float:
        return self.metric.known() * STEP / 3600


class Forecasts:
    """Every resource's forecast in this process (see the module docstring)."""

    def __init__(
        self,
        cloudwatch: CloudWatchHistory | None,
        prometheus: PrometheusMetricSource | None,
        *,
        delivery: float = CLOUDWATCH_DELIVERY_SECONDS,
        on_refresh: Callable[[str], None] | None = None,
    ) -> None:
        """``on_refresh(outcome)``: told of each refresh's outcome (Ready, a refusal
        reason, or HistoryUnavailable), for the operator's metrics."""
        self.cloudwatch, self.prometheus = cloudwatch, prometheus
        self.delivery = delivery
        self.on_refresh = on_refresh
        self._entries: dict[str, _Entry] = {}
        self._fits = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stackscaler-forecast")
        self._tasks: set[asyncio.Task[None]] = set()
        self._owned: PrometheusMetricSource | None = None
        """The Prometheus source :meth:`build` made (closed by :meth:`close`)."""

    @classmethod
    def build(
        cls,
        caller: AwsCaller,
        prometheus: PrometheusSettings | None,
        *,
        on_refresh: Callable[[str], None] | None = None,
    ) -> Forecasts:
        """The operator's: CloudWatch reads through its AwsCaller (its rate limits, retries
        and thread pools), Prometheus range queries with its Prometheus settings."""
        forecasts = cls(
            CloudWatchHistory(caller), PrometheusMetricSource(prometheus), on_refresh=on_refresh
        )
        forecasts._owned = forecasts.prometheus
        return forecasts

    def __len__(self) -> int:
        return len(self._entries)

    # --- the tick's side ---------------------------------------------------------------

    def at_tick(self, uid: str, resource: Resource, capacity: Capacity, now: datetime) -> Outlook:
        """The forecast of ``resource`` as of ``now``; starts a refresh when one is due."""
        spec = resource.scaling.predictive
        if spec is None:
            self.forget(uid)
            return Outlook(State.REFUSED, "Disabled", "")
        entry = self._entry(uid, resource, spec)
        if isinstance(entry, StackscalerError):
            return Outlook(State.REFUSED, HISTORY_UNAVAILABLE, safe_text(str(entry)))
        t = now.timestamp()
        if entry.capacity is not None:
            entry.capacity.record(t, capacity.ready)
        if t >= entry.next_refresh and entry.task is None:
            r = spec.refresh_seconds
            entry.next_refresh = (math.floor(t / r) + 1) * r
            task = asyncio.get_running_loop().create_task(self._refresh(entry, resource, t))
            entry.task = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return self._outlook(entry, t)

    def _entry(
        self, uid: str, resource: Resource, spec: PredictiveSpec
    ) -> _Entry | StackscalerError:
        try:
            plan = plan_for(resource)
        except StackscalerError as exc:
            self.forget(uid)
            return exc
        key = (plan, spec.history_days)
        entry = self._entries.get(uid)
        if entry is None or entry.key != key:  # new, or a history of something else
            self.forget(uid)
            entry = self._entries[uid] = _Entry(key, spec, plan)
        elif entry.spec != spec:  # the same history, other settings: refit at once
            entry.spec, entry.settings = spec, PredictiveSettings.from_spec(spec)
            entry.next_refresh = -math.inf
        return entry

    def _outlook(self, e: _Entry, t: float) -> Outlook:
        def outlook(
            state: State,
            reason: str,
            message: str,
            *,
            ready: Ready | None = None,
            at: float | None = None,
            backtest: Backtest | None = None,
        ) -> Outlook:
            return Outlook(
                state,
                reason,
                safe_text(message, MESSAGE_LIMIT),
                ready,
                at,
                e.next_refresh,
                e.history_hours(),
                backtest,
            )

        if e.error is not None:
            stale = e.ready_at is None or t - e.ready_at > STALE_REFRESHES * e.spec.refresh_seconds
            if e.last_ready is not None and not stale:
                return outlook(
                    State.READY,
                    HISTORY_UNAVAILABLE,
                    f"{e.error}; acting on the forecast refitted at {_time(e.ready_at)} until "
                    f"the next refresh ({e.last_ready.describe()})",
                    ready=e.last_ready,
                    at=e.ready_at,
                    backtest=e.last_ready.backtest,
                )
            return outlook(
                State.REFUSED,
                HISTORY_UNAVAILABLE,
                f"{e.error}; retrying at the next refresh",
                at=e.built_at,
            )
        out = e.outcome
        if isinstance(out, Ready):
            return outlook(
                State.READY,
                "Ready",
                f"{out.describe()}; history: {e.plan.describe()}",
                ready=out,
                at=e.built_at,
                backtest=out.backtest,
            )
        if isinstance(out, Refusal):
            return outlook(
                State.REFUSED, str(out.reason), out.message, at=e.built_at, backtest=out.backtest
            )
        return outlook(
            State.PENDING,
            READING,
            f"reading the last {e.spec.history_days} days of {e.plan.describe()}",
        )

    def forget(self, uid: str) -> None:
        """Drop a resource's history (deleted, no longer this replica's, or no forecast)."""
        entry = self._entries.pop(uid, None)
        if entry is not None and entry.task is not None:
            entry.task.cancel()

    async def idle(self) -> None:
        """Wait until every refresh started so far has ended (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._fits.shutdown(wait=False, cancel_futures=True)
        if self._owned is not None:
            await self._owned.close()

    # --- the refresh -----------------------------------------------------------------

    async def _refresh(self, e: _Entry, resource: Resource, t: float) -> None:
        try:
            try:
                k_stop = await self._read(e, resource, t)
            except StackscalerError as exc:
                self._failed(e, resource, t, str(exc))
                return
            series = load_series(
                e.metric, e.capacity.bins if e.capacity is not None else None, k_stop
            )
            if series is None:
                outcome: Ready | Refusal = Refusal(
                    RefusalReason.TOO_LITTLE_HISTORY,
                    f"no history: {e.plan.describe()} has no datapoints over the last "
                    f"{e.spec.history_days} days",
                )
            else:
                loop = asyncio.get_running_loop()
                outcome = await loop.run_in_executor(self._fits, build, series, t, e.settings)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in a fit must not end the forecasts of others
            log.exception("%s: the forecast's refresh failed", resource.key)
            self._failed(e, resource, t, f"the forecast's refresh failed: {type(exc).__name__}")
            return
        finally:
            e.task = None
        e.outcome, e.built_at, e.error = outcome, t, None
        if isinstance(outcome, Ready):
            e.last_ready, e.ready_at = outcome, t
        else:
            e.last_ready = e.ready_at = None
        if self.on_refresh is not None:
            self.on_refresh("Ready" if isinstance(outcome, Ready) else str(outcome.reason))

    def _failed(self, e: _Entry, resource: Resource, t: float, message: str) -> None:
        log.warning("%s: forecast history: %s", resource.key, message)
        e.error = message
        e.built_at = t
        if self.on_refresh is not None:
            self.on_refresh(HISTORY_UNAVAILABLE)

    async def _read(self, e: _Entry, resource: Resource, t: float) -> int:
        """Read what is new of the history into ``e``; the bin the history now ends at."""
        read = e.plan.read
        history = e.spec.history_seconds
        if isinstance(read, CloudWatchRead):
            period = read.period
            end = end_of_complete(t, period, self.delivery)
            start = window(end, period, e.read_until, history)
            points = await self._read_cloudwatch(e, resource, read, start, end)
        else:
            end = math.floor(t / STEP) * STEP
            start = window(end, STEP, e.read_until, history)
            points = await self._read_prometheus(e, resource, read, start, end)
        e.metric.put(points)
        k_stop = bin_of(end - 1) + 1
        e.metric.extend_to(k_stop)
        e.read_until = end
        return k_stop

    async def _read_cloudwatch(
        self, e: _Entry, resource: Resource, read: CloudWatchRead, start: float, end: float
    ) -> Points:
        if self.cloudwatch is None:
            raise PermanentError("the operator has no CloudWatch client for forecasts")
        query = MetricQuery(resource.key, e.plan.metric)
        description = describe_cloudwatch(query, read.source) + " history"
        request = HistoryRequest(resource.key, read, start, end, description)
        return await self.cloudwatch.read(request)

    async def _read_prometheus(
        self, e: _Entry, resource: Resource, read: PrometheusRead, start: float, end: float
    ) -> Points:
        if self.prometheus is None:
            raise PermanentError("the operator has no Prometheus client for forecasts")
        query = MetricQuery(resource.key, e.plan.metric)
        pairs = await self.prometheus.read_range(query, start + STEP, end, STEP)
        # a value evaluated at T stands for the 5 minutes that end at T
        return [(math.ceil(ts / STEP) - 1, v) for ts, v in pairs]


# --- the tick's join --------------------------------------------------------------------


@dataclass(frozen=True)
class Joined:
    decision: Decision
    """The reactive decision, raised to the floor in ForecastAndScale."""
    status: dict[str, Any]
    """``status.forecast``."""
    floor: int | None = None
    raised: bool = False
    """ForecastAndScale raised the decision (ForecastOnly: would have)."""


def lead_seconds(resource: Resource, capacity: Capacity) -> int:
    """``leadSeconds``, else the target's warm-up (its own setting where it has one)."""
    spec = resource.scaling.predictive
    if spec is not None and spec.lead_seconds is not None:
        return spec.lead_seconds
    if capacity.warmup_seconds is not None:
        return capacity.warmup_seconds
    return warmup(resource).seconds


def join(
    outlook: Outlook, resource: Resource, capacity: Capacity, decision: Decision, now: datetime
) -> Joined:
    """The floor of the forecast over the next lead, joined to (ForecastAndScale) or only
    reported beside (ForecastOnly) the reactive decision, and the status block."""
    spec = resource.scaling
    p = spec.predictive
    assert p is not None
    lead = lead_seconds(resource, capacity)
    block: dict[str, Any] = {
        "mode": str(p.mode),
        "metric": p.metric,
        "state": str(outlook.state),
        "reason": outlook.reason,
        "message": outlook.message,
        "leadSeconds": lead,
        "refreshTime": _time(outlook.refreshed_at),
        "nextRefreshTime": _time(outlook.next_refresh)
        if outlook.next_refresh is not None and math.isfinite(outlook.next_refresh)
        else None,
        "historyHours": round(outlook.history_hours, 2),
    }
    if outlook.backtest is not None:
        block["backtestError"] = round(outlook.backtest.error, 4)
    ready = outlook.ready
    target = spec.metric(p.metric).target if ready is not None else None
    if ready is None or target is None:
        return Joined(decision, _drop_none(block))
    t = now.timestamp()
    peak = ready.model.peak(t, t + lead)
    floor = capacity_floor(
        peak,
        target,
        decision.min_capacity,
        decision.max_capacity,
        current=decision.current,
        tolerance=spec.band,
    )
    block["load"] = round(peak.upper, 6)
    block["floor"] = floor
    if floor <= decision.desired:
        return Joined(decision, _drop_none(block), floor)
    if p.mode is PredictiveMode.FORECAST_AND_SCALE:
        why = f"{p.metric} forecast over the next {lead} s; {ready.describe()}"
        raised = raise_to_floor(decision, floor, spec, now, why)
        return Joined(raised, _drop_none(block), floor, raised.desired != decision.desired)
    block["wouldRaiseTo"] = min(floor, decision.max_capacity)
    return Joined(decision, _drop_none(block), floor, True)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}
