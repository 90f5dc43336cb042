"""``stackscaler run``: run the operator."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

from stackscaler.cli.files import UsageError

if TYPE_CHECKING:
    from stackscaler.leases import LeaseSettings

# The operator (kopf, the Kubernetes and AWS clients: about 1.4 s of imports) is
# imported when `stackscaler run` runs, not for every other command's start.


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("run", help="run the operator (kopf)")
    scope = r.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable; globs allowed)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)"
    )
    r.add_argument(
        "-l",
        "--selector",
        default="",
        metavar="KEY=VALUE,...",
        help="only resources with these labels (shard a fleet across operators)",
    )
    r.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help="coordinate replicas through Leases: resources split into N shards by uid, each "
        "owned by one live replica; replicas beyond N stand by (default: no leases, one replica)",
    )
    r.add_argument(
        "--lease-namespace",
        metavar="NS",
        help="namespace of the Leases (default: $POD_NAMESPACE, the pod's own, or 'default')",
    )
    r.add_argument(
        "--lease-group",
        default="stackscaler",
        metavar="NAME",
        help="prefix of the Lease names; replicas with the same group share the work",
    )
    r.add_argument(
        "--identity",
        metavar="ID",
        help="this replica's name in the Leases (default: $POD_NAME or the host name, plus a "
        "random suffix)",
    )
    r.add_argument(
        "--lease-duration",
        type=float,
        default=15.0,
        metavar="S",
        help="seconds a Lease stays valid without renewal (failover time); the holder stops "
        "acting after 2/3 of it and renews every 2/15 of it",
    )
    r.add_argument(
        "--metrics-port",
        type=int,
        default=8080,
        help="port for /metrics, /healthz and /readyz (0: any free port)",
    )
    r.add_argument("--metrics-host", default="0.0.0.0", help="address to serve them on")
    r.add_argument("--log-format", choices=("json", "text"), default="text")
    r.add_argument("--log-level", default="INFO")
    r.add_argument(
        "--prometheus-settings",
        type=Path,
        metavar="FILE",
        help="credentials for Prometheus servers (YAML; see docs/io.md)",
    )
    r.add_argument(
        "--tenancy",
        type=Path,
        metavar="FILE",
        help="what each namespace may reach: roles, targets, queues, metrics, Prometheus "
        "servers (YAML; see docs/security.md). Without it: single-tenant, own account only",
    )
    r.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, then KUBECONFIG)")


def _lease_settings(args: argparse.Namespace) -> LeaseSettings | None:
    from stackscaler.leases import (  # noqa: PLC0415
        RENEW_DEADLINE_SHARE,
        RETRY_PERIOD_SHARE,
        LeaseSettings,
        default_identity,
        default_namespace,
    )

    if args.shards is None:
        return None
    duration = float(args.lease_duration)
    try:
        return LeaseSettings(
            namespace=args.lease_namespace or default_namespace(),
            identity=args.identity or default_identity(),
            group=args.lease_group,
            shards=args.shards,
            lease_duration=duration,
            renew_deadline=duration * RENEW_DEADLINE_SHARE,
            retry_period=duration * RETRY_PERIOD_SHARE,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_run(args: argparse.Namespace) -> int:
    from stackscaler.handlers.operator import RunSettings, parse_selector, run_operator  # noqa: PLC0415

    try:
        selector = parse_selector(args.selector)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    settings = RunSettings(
        namespaces=tuple(args.namespace),
        selector=selector,
        leases=_lease_settings(args),
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        log_format=args.log_format,
        log_level=args.log_level.upper(),
        prometheus_settings=args.prometheus_settings,
        kubeconfig=args.kubeconfig,
        tenancy=args.tenancy,
        failpoints=frozenset(
            f for f in os.environ.get("STACKSCALER_FAILPOINTS", "").split(",") if f.strip()
        ),
    )
    asyncio.run(run_operator(settings))
    return 0
