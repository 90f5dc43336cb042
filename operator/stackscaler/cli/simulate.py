"""``stackscaler simulate``: replay a demand trace through a tier's policy and baselines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stackscaler.cli import args as argtypes
from stackscaler.cli.files import UsageError, read_documents
from stackscaler.errors import InvalidSpec
from stackscaler.forecast import PredictiveMode, PredictiveSettings
from stackscaler.forecast.types import DAY
from stackscaler.model.spec import Resource, parse_resource
from stackscaler.sim.policies import POLICIES, PREDICTIVE_POLICIES
from stackscaler.sim.report import preamble, table, to_json
from stackscaler.sim.run import DEFAULT_PRICE, RunConfig, compare
from stackscaler.sim.trace import load_trace


def _step(text: str) -> float:
    value = argtypes.positive(text)
    if not 1 <= value <= 60:
        raise argparse.ArgumentTypeError(f"must be within 1-60 seconds, got {text}")
    return value


def _policies(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    if names == ["all"]:
        return ["all"]
    known = (*POLICIES, *PREDICTIVE_POLICIES)
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
    """``--predictive`` and its flags as the settings ``spec.predictive`` will parse into."""
    if args.predictive is None:
        for flag, value in (
            ("--predictive-metric", args.predictive_metric),
            ("--lead", args.lead),
            ("--history-days", args.history_days),
        ):
            if value is not None:
                raise UsageError(f"{flag} needs --predictive ForecastOnly|ForecastAndScale")
        return None
    metric = args.predictive_metric
    if metric is None:
        metric = next((m.name for m in resource.scaling.metrics if m.target is not None), None)
        if metric is None:
            raise UsageError(f"{resource.key}: --predictive needs a target-tracking metric")
    days = 14.0 if args.history_days is None else args.history_days
    try:
        return PredictiveSettings(
            PredictiveMode(args.predictive),
            metric,
            history_seconds=round(days * DAY),
            lead_seconds=None if args.lead is None else round(args.lead),
        )
    except InvalidSpec as exc:
        raise UsageError(str(exc)) from exc


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "simulate",
        help="replay a demand trace through a tier's policy (and baselines) in simulated time",
        description=(
            "Discrete-time simulation of one tier: demand from a CSV trace, capacity units "
            "that serve after a warm-up, metrics delivered with their period and delay, and the "
            "same policy.decide the operator runs. Compare with the Kubernetes HPA's algorithm, "
            "AWS target tracking with instance warm-up, static peak provisioning and the "
            "perfect-foresight oracle."
        ),
    )
    s.add_argument("-f", "--file", required=True, metavar="STACK.yaml", help="resources (YAML)")
    s.add_argument("--trace", required=True, metavar="TRACE.csv[.gz]", help="demand trace")
    s.add_argument("--tier", metavar="NAME", help="the resource's name when the file has several")
    s.add_argument(
        "--policy",
        type=_policies,
        action="extend",
        metavar="NAME[,NAME]",
        help=f"{', '.join(POLICIES)} or all; with --predictive also reactive (the default "
        "policy without the forecast); repeatable or comma-separated (default: default)",
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
        type=argtypes.positive,
        default=1.0,
        metavar="N",
        help="demand one unit serves per trace row interval at 100%% (default 1)",
    )
    s.add_argument(
        "--warmup",
        type=argtypes.non_negative,
        metavar="SECONDS",
        help="seconds until a new unit serves (default by target: EC2 180, RDS and "
        "ElastiCache 600, pods 30)",
    )
    s.add_argument(
        "--starting-seconds",
        type=argtypes.non_negative,
        metavar="SECONDS",
        help="how long the default policy is told a new unit is starting (the operator's "
        "warmupSeconds; default: the tier's warmupSeconds, else until the unit serves)",
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
        help="the default policy forecasts its metric from its own history (refit every "
        "hour, 24 h to fit and a day to back-test first) and, with ForecastAndScale, never "
        "holds less than the forecast needs a lead ahead",
    )
    s.add_argument(
        "--predictive-metric",
        metavar="NAME",
        help="the target-tracking metric forecast (default: the tier's first)",
    )
    s.add_argument(
        "--lead",
        type=argtypes.non_negative,
        metavar="SECONDS",
        help="how far ahead the forecast provisions (default: the tier's warm-up)",
    )
    s.add_argument(
        "--history-days",
        type=_history_days,
        metavar="DAYS",
        help="history the forecast is fitted on, 2-14 days (default 14)",
    )
    s.add_argument("--json", metavar="OUT", help="write the report as JSON (- for stdout)")
    s.add_argument(
        "--plot",
        type=argtypes.plot_file,
        metavar="OUT.png|OUT.svg",
        help="draw demand, ready and desired capacity (needs the 'plot' extra)",
    )


def _resource(path: str, tier: str | None) -> Resource:
    docs = [d for d in read_documents(path) if d.is_stackscaler]
    if tier is not None:
        docs = [
            d
            for d in docs
            if isinstance(d.body, dict) and (d.body.get("metadata") or {}).get("name") == tier
        ]
        if not docs:
            raise UsageError(f"{path}: no resource named {tier!r}")
    if len(docs) != 1:
        names = [d.label for d in docs]
        raise UsageError(
            f"{path}: {len(docs)} resources; choose one with --tier NAME"
            + (": " + "; ".join(names) if names else "")
        )
    return parse_resource(docs[0].body, source=docs[0].label)


def cmd_simulate(args: argparse.Namespace) -> int:
    resource = _resource(args.file, args.tier)
    if not resource.scaling.metrics:
        raise UsageError(f"{resource.key}: has no metrics to simulate")
    trace = load_trace(args.trace)
    predictive = _predictive(args, resource)
    every = [*POLICIES, *(PREDICTIVE_POLICIES if predictive else ())]
    names = [n for p in args.policy or ["default"] for n in (every if p == "all" else [p])]
    policies = list(dict.fromkeys(names))
    try:
        cfg = RunConfig(
            step_seconds=args.step,
            scale=args.scale,
            capacity_per_unit=args.capacity_per_unit,
            warmup_seconds=args.warmup,
            starting_seconds=args.starting_seconds,
            price_per_unit_hour=args.price,
            record_series=bool(args.plot),
            predictive=predictive,
        )
        if args.plot:
            from stackscaler.sim.plot import require_matplotlib  # noqa: PLC0415

            require_matplotlib()
        reports = compare(resource, trace, policies, cfg)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(preamble(reports[0]))
    print()
    print(table(reports))
    for r in reports:
        if r.predictive is not None:
            print(f"{r.policy}: {r.predictive.describe()}")
            print(f"  last refit: {r.predictive.last}")
    if args.json:
        text = json.dumps(to_json(reports), indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    if args.plot:
        from stackscaler.sim.plot import plot  # noqa: PLC0415

        plot(reports, args.plot)
        print(f"plot: {args.plot}")
    return 0
