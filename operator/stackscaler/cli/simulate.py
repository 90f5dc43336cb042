"""``stackscaler simulate``: replay a demand trace through a tier's policy and baselines."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from stackscaler.cli import args as argtypes
from stackscaler.cli.files import Document, UsageError, read_documents
from stackscaler.cli.simulate_table import TABLE_KIND, cmd_simulate_table
from stackscaler.errors import InvalidSpec
from stackscaler.forecast import PredictiveMode, PredictiveSettings
from stackscaler.forecast.types import DAY
from stackscaler.model.spec import Resource, parse_resource
from stackscaler.sim.policies import POLICIES, PREDICTIVE_POLICIES
from stackscaler.sim.report import preamble, stack_header, stack_json, table, to_json
from stackscaler.sim.run import DEFAULT_PRICE, Report, RunConfig, compare, spec_settings
from stackscaler.sim.stack import ALONE, STACK_POLICIES, Coupling, StackTier, compare_stack
from stackscaler.sim.trace import load_trace
from stackscaler.text import safe_text

NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
"""A resource's name (a DNS subdomain)."""
PerTier = tuple[str | None, float]
"""``[NAME=]VALUE``: a value for the tier NAME, or (no name) for the front tier."""


def _step(text: str) -> float:
    value = argtypes.positive(text)
    if not 1 <= value <= 60:
        raise argparse.ArgumentTypeError(f"must be within 1-60 seconds, got {text}")
    return value


def _name(text: str) -> str:
    if not NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a resource name: {safe_text(text, 80)!r}")
    return text


def _per_tier(value: Callable[[str], float]) -> Callable[[str], PerTier]:
    """``[NAME=]VALUE``: for the tier NAME of a stack, or without a name for the front tier."""

    def parse(text: str) -> PerTier:
        name, sep, raw = text.rpartition("=")
        return (_name(name) if sep else None, value(raw))

    return parse


def _couple(text: str) -> Coupling:
    """``NAME=RATIO[@LAG]``: the tier NAME's load is RATIO x the front tier's demand, LAG
    seconds later."""
    name, sep, rest = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=RATIO[@LAG], got {safe_text(text, 80)!r}")
    ratio, at, lag = rest.partition("@")
    lag = lag.removesuffix("s")
    try:
        return Coupling(
            _name(name),
            argtypes.positive(ratio),
            argtypes.non_negative(lag) if at else 0.0,
        )
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _window(text: str) -> tuple[float, float]:
    """``FROM:TO`` in hours from the trace's start."""
    a, sep, b = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected FROM:TO in hours, got {safe_text(text, 80)!r}")
    lo, hi = argtypes.non_negative(a), argtypes.positive(b)
    if not lo < hi:
        raise argparse.ArgumentTypeError(f"FROM must be before TO, got {safe_text(text, 80)!r}")
    return lo, hi


def _policies(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    if names == ["all"]:
        return ["all"]
    known = (*POLICIES, *PREDICTIVE_POLICIES, ALONE)
    for n in names:
        if n not in known:
            raise argparse.ArgumentTypeError(
                f"unknown policy {n!r}; choose from {', '.join(known)} or all"
            )
    return names


def _history_days(text: str) -> float:
    value = argtypes.positive(text)
    if not 2 <= value <= 14:
        raise argparse.ArgumentTypeError(f"must be within 2-14 days, got {text}")
    return value


def _predictive(args: argparse.Namespace, resource: Resource) -> PredictiveSettings | None:
    """The forecast's overrides: ``--predictive`` and its flags over the resource's
    ``spec.predictive``. None without any flag: the simulator runs the spec's own."""
    flags = {
        "--predictive-metric": args.predictive_metric,
        "--lead": args.lead,
        "--history-days": args.history_days,
    }
    given = {flag: value for flag, value in flags.items() if value is not None}
    if args.predictive is None and not given:
        return None
    base = spec_settings(resource)
    if args.predictive is None and base is None:
        flag = next(iter(given))
        raise UsageError(
            f"{flag} needs --predictive ForecastOnly|ForecastAndScale or a spec.predictive "
            f"on {resource.key}"
        )
    mode = PredictiveMode(args.predictive) if args.predictive else None
    if base is None:
        metric = args.predictive_metric
        if metric is None:
            metric = next((m.name for m in resource.scaling.metrics if m.target is not None), None)
            if metric is None:
                raise UsageError(f"{resource.key}: --predictive needs a target-tracking metric")
        assert mode is not None
        base = PredictiveSettings(mode, metric)
    changes: dict[str, object] = {}
    if mode is not None:
        changes["mode"] = mode
    if args.predictive_metric is not None:
        changes["metric"] = args.predictive_metric
    if args.lead is not None:
        changes["lead_seconds"] = round(args.lead)
    if args.history_days is not None:
        changes["history_seconds"] = round(args.history_days * DAY)
    try:
        return replace(base, **changes)  # type: ignore[arg-type]
    except InvalidSpec as exc:
        raise UsageError(str(exc)) from exc


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "simulate",
        help="replay a demand trace through a tier's policy (and baselines) in simulated time",
        description=(
            "Discrete-time simulation of one tier, or with --stack of several tiers of the file "
            "under the same trace: demand from a CSV trace, capacity units that serve after a "
            "warm-up, metrics delivered with their period and delay, and the same policy.decide "
            "the operator runs (with each tier's spec.predictive and its tier sources). Compare "
            "with the Kubernetes HPA's algorithm, AWS target tracking with instance warm-up, "
            "static peak provisioning and the perfect-foresight oracle."
        ),
    )
    s.add_argument("-f", "--file", required=True, metavar="STACK.yaml", help="resources (YAML)")
    s.add_argument("--trace", required=True, metavar="TRACE.csv[.gz]", help="demand trace")
    s.add_argument(
        "--tier",
        metavar="NAME",
        help="the resource's name when the file has several (with --stack: the front tier, "
        "which the trace drives; default: the file's first resource)",
    )
    s.add_argument(
        "--stack",
        action="store_true",
        help="simulate the front tier and every tier coupled to it (--couple) together",
    )
    s.add_argument(
        "--couple",
        type=_couple,
        action="append",
        metavar="NAME=RATIO[@LAG]",
        help="with --stack: the tier NAME's load is RATIO x the front tier's demand (e.g. "
        "reads per web request), LAG seconds later (default 0); repeatable",
    )
    s.add_argument(
        "--policy",
        type=_policies,
        action="extend",
        metavar="NAME[,NAME]",
        help=f"{', '.join(POLICIES)} or all; reactive (the default policy without the "
        "forecast) when a tier forecasts; with --stack also alone (the default policy "
        "without tier sources); repeatable or comma-separated (default: default)",
    )
    s.add_argument(
        "--scale",
        type=argtypes.positive,
        default=1.0,
        metavar="FACTOR",
        help="multiply the trace's demand (default 1)",
    )
    s.add_argument(
        "--capacity-per-unit",
        type=_per_tier(argtypes.positive),
        action="append",
        metavar="[NAME=]N",
        help="demand one unit serves per trace row interval at 100%% (default 1); with --stack "
        "NAME=N for the tier NAME, N alone for the front tier; repeatable",
    )
    s.add_argument(
        "--warmup",
        type=_per_tier(argtypes.non_negative),
        action="append",
        metavar="[NAME=]SECONDS",
        help="seconds until a new unit serves (default by target: EC2 180, RDS and "
        "ElastiCache 600, pods 30); NAME= as for --capacity-per-unit",
    )
    s.add_argument(
        "--starting-seconds",
        type=_per_tier(argtypes.non_negative),
        action="append",
        metavar="[NAME=]SECONDS",
        help="how long the default policy is told a new unit is starting (the operator's "
        "warmupSeconds; default: the tier's warmupSeconds, else until the unit serves); "
        "NAME= as for --capacity-per-unit",
    )
    s.add_argument(
        "--step",
        type=_step,
        default=60.0,
        metavar="SECONDS",
        help="simulation step, 1-60 s (default 60)",
    )
    s.add_argument(
        "--price",
        type=argtypes.non_negative,
        default=DEFAULT_PRICE,
        metavar="USD",
        help=f"price per unit-hour (default {DEFAULT_PRICE}, m5.large)",
    )
    s.add_argument(
        "--predictive",
        choices=[m.value for m in PredictiveMode],
        help="override the mode of the tier's spec.predictive, or forecast a tier that has "
        "none (its first target-tracking metric, the defaults): the default policy "
        "forecasts its metric from its own history (refit every hour, 24 h to fit and a day "
        "to back-test first) and, with ForecastAndScale, never holds less than the forecast "
        "needs a lead ahead",
    )
    s.add_argument(
        "--predictive-metric",
        metavar="NAME",
        help="override the target-tracking metric forecast (default: spec.predictive's, "
        "else the tier's first)",
    )
    s.add_argument(
        "--lead",
        type=argtypes.non_negative,
        metavar="SECONDS",
        help="override how far ahead the forecast provisions (default: spec.predictive's, "
        "else the tier's warm-up)",
    )
    s.add_argument(
        "--history-days",
        type=_history_days,
        metavar="DAYS",
        help="override the history the forecast is fitted on, 2-14 days (default: "
        "spec.predictive's, else 14)",
    )
    s.add_argument("--json", metavar="OUT", help="write the report as JSON (- for stdout)")
    s.add_argument(
        "--plot",
        type=argtypes.plot_file,
        metavar="OUT.png|OUT.svg",
        help="draw demand, ready and desired capacity (needs the 'plot' extra)",
    )
    s.add_argument(
        "--plot-window",
        type=_window,
        metavar="FROM:TO",
        help="draw only these hours of the run, counted from the trace's start (e.g. 288:312 "
        "for its 13th day); the whole run is simulated",
    )


def _docs(path: str) -> list[Document]:
    return [d for d in read_documents(path) if d.is_stackscaler]


def _named(doc: Document) -> str | None:
    body = doc.body
    name = (body.get("metadata") or {}).get("name") if isinstance(body, dict) else None
    return name if isinstance(name, str) else None


def _resource(path: str, tier: str | None) -> Resource:
    docs = _docs(path)
    if tier is not None:
        docs = [d for d in docs if _named(d) == tier]
        if not docs:
            raise UsageError(f"{path}: no resource named {tier!r}")
    if len(docs) != 1:
        names = [d.label for d in docs]
        raise UsageError(
            f"{path}: {len(docs)} resources; choose one with --tier NAME"
            + (": " + "; ".join(names) if names else "")
        )
    return parse_resource(docs[0].body, source=docs[0].label)


def _pick(values: Sequence[PerTier] | None, name: str, front: bool) -> float | None:
    """The last value given for tier ``name`` (a bare value is the front tier's)."""
    out = None
    for n, v in values or ():
        if n == name or (n is None and front):
            out = v
    return out


def _check_names(args: argparse.Namespace, simulated: Sequence[str]) -> None:
    for flag in ("capacity_per_unit", "warmup", "starting_seconds"):
        for n, _ in getattr(args, flag) or ():
            if n is not None and n not in simulated:
                raise UsageError(
                    f"--{flag.replace('_', '-')} {n}=...: {n} is not simulated "
                    f"(simulated: {', '.join(simulated)})"
                )


def _config(args: argparse.Namespace, name: str, *, front: bool) -> RunConfig:
    cpu = _pick(args.capacity_per_unit, name, front)
    return RunConfig(
        step_seconds=args.step,
        scale=args.scale,
        capacity_per_unit=1.0 if cpu is None else cpu,
        warmup_seconds=_pick(args.warmup, name, front),
        starting_seconds=_pick(args.starting_seconds, name, front),
        price_per_unit_hour=args.price,
        record_series=bool(args.plot),
    )


def _policy_names(args: argparse.Namespace, every: Sequence[str]) -> list[str]:
    names = [n for p in args.policy or ["default"] for n in (every if p == "all" else [p])]
    return list(dict.fromkeys(names))


def _forecast_lines(reports: Sequence[Report]) -> None:
    for r in reports:
        if r.predictive is not None:
            print(f"{r.policy}: {r.predictive.describe()}")
            print(f"  last refit: {safe_text(r.predictive.last, 400)}")


def _write_json(target: str, data: object) -> None:
    text = json.dumps(data, indent=2)
    if target == "-":
        print(text)
    else:
        Path(target).write_text(text + "\n", encoding="utf-8")


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.plot_window is not None and not args.plot:
        raise UsageError("--plot-window needs --plot")
    if args.stack:
        return _cmd_stack(args)
    if args.couple:
        raise UsageError("--couple needs --stack")
    if ALONE in (args.policy or []):
        raise UsageError("policy 'alone' needs --stack (it leaves out the tier sources)")
    resource = _resource(args.file, args.tier)
    if resource.kind == TABLE_KIND:
        return cmd_simulate_table(args, resource)
    if not resource.scaling.metrics:
        raise UsageError(f"{resource.key}: has no metrics to simulate")
    _check_names(args, [resource.name])
    trace = load_trace(args.trace)
    predictive = _predictive(args, resource)
    forecasts = predictive is not None or spec_settings(resource) is not None
    policies = _policy_names(args, [*POLICIES, *(PREDICTIVE_POLICIES if forecasts else ())])
    try:
        cfg = replace(_config(args, resource.name, front=True), predictive=predictive)
        if args.plot:
            from stackscaler.sim.plot import require_matplotlib  # noqa: PLC0415

            require_matplotlib()
        reports = compare(resource, trace, policies, cfg)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(preamble(reports[0]))
    print()
    print(table(reports))
    _forecast_lines(reports)
    if args.json:
        _write_json(args.json, to_json(reports))
    if args.plot:
        from stackscaler.sim.plot import plot  # noqa: PLC0415

        plot(reports, args.plot, window=args.plot_window)
        print(f"plot: {args.plot}")
    return 0


def _stack_tiers(args: argparse.Namespace) -> tuple[list[StackTier], list[str]]:
    """The front tier and the coupled ones, in that order; and the file's others."""
    docs = _docs(args.file)
    if not docs:
        raise UsageError(f"{args.file}: no stackscaler resource")
    by_name: dict[str, Document] = {}
    for d in docs:
        name = _named(d)
        if name is not None:
            by_name.setdefault(name, d)
    front = args.tier if args.tier is not None else _named(docs[0])
    if front is None or front not in by_name:
        raise UsageError(f"{args.file}: no resource named {front!r}")
    couplings = args.couple or []
    names = [c.tier for c in couplings]
    for n in names:
        if n not in by_name:
            raise UsageError(f"--couple {n}=...: {args.file} has no resource named {n!r}")
        if n == front:
            raise UsageError(f"--couple {n}=...: {n} is the front tier, which the trace drives")
    if len(set(names)) != len(names):
        raise UsageError("--couple names a tier twice")
    _check_names(args, [front, *names])
    tiers = []
    for name, coupling in [(front, None), *((c.tier, c) for c in couplings)]:
        doc = by_name[name]
        resource = parse_resource(doc.body, source=doc.label)
        if resource.kind == TABLE_KIND:
            raise UsageError(
                f"{resource.key}: a {TABLE_KIND} is not simulated in a --stack (its capacity "
                "changes at once and its decreases have a daily budget): simulate it with --tier"
            )
        if not resource.scaling.metrics:
            raise UsageError(f"{resource.key}: has no metrics to simulate")
        cfg = _config(args, name, front=coupling is None)
        tiers.append(StackTier(resource, cfg, coupling))
    others = [d.label for d in docs if _named(d) not in (front, *names)]
    return tiers, others


def _cmd_stack(args: argparse.Namespace) -> int:
    for flag, value in (
        ("--predictive", args.predictive),
        ("--predictive-metric", args.predictive_metric),
        ("--lead", args.lead),
        ("--history-days", args.history_days),
    ):
        if value is not None:
            raise UsageError(
                f"{flag} is for one tier; with --stack each tier's spec.predictive runs"
            )
    tiers, others = _stack_tiers(args)
    trace = load_trace(args.trace)
    every = list(STACK_POLICIES)
    if any(t.forecasts for t in tiers):
        every.insert(1, "reactive")
    if not any(t.has_tier_sources for t in tiers):
        every.remove(ALONE)
    policies = _policy_names(args, every)
    try:
        if args.plot:
            from stackscaler.sim.plot import require_matplotlib  # noqa: PLC0415

            require_matplotlib()
        runs = compare_stack(tiers, trace, policies)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(stack_header(tiers, trace, others))
    for k in range(len(tiers)):
        reports = [per_policy[k] for per_policy in runs]
        print()
        print(f"== {reports[0].tier} ==")
        print(preamble(reports[0]))
        print()
        print(table(reports))
        _forecast_lines(reports)
    if args.json:
        _write_json(args.json, stack_json(tiers, trace, runs))
    if args.plot:
        from stackscaler.sim.plot import plot_stack  # noqa: PLC0415

        plot_stack(runs, args.plot, window=args.plot_window)
        print(f"plot: {args.plot}")
    return 0
