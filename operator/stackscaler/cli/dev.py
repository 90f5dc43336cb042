"""``stackscaler dev controlplane build|start|stop|status``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stackscaler.devtools import controlplane as cp


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = sub.add_parser("dev", help="developer tools")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True, metavar="TOOL")
    c = dev_sub.add_parser(
        "controlplane",
        help="a real kube-apiserver + etcd on loopback, built from the upstream Go modules",
    )
    actions = c.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("build", help="build the binaries into .cache/ (no-op when present)")
    for name, text in (
        ("start", "start in the background; prints the kubeconfig path"),
        ("stop", "stop and remove what it left"),
        ("status", "exit 0 and print the server when running"),
    ):
        p = actions.add_parser(name, help=text)
        p.add_argument(
            "--dir",
            required=True,
            type=Path,
            metavar="DIR",
            help="working directory (certificates, etcd data, logs, kubeconfig)",
        )
        if name == "start":
            p.add_argument("--no-crds", action="store_true", help="do not install the CRDs")


def cmd_dev(args: argparse.Namespace) -> int:
    if args.action == "build":
        print(cp.build(_log))
        return 0
    if args.action == "start":
        plane = cp.start(args.dir, crds=not args.no_crds, log=_log)
        _log(
            f"server {plane.server}; stop with: stackscaler dev controlplane stop --dir {args.dir}"
        )
        print(plane.kubeconfig)
        return 0
    if args.action == "stop":
        if cp.stop(args.dir):
            _log(f"stopped the control plane of {args.dir}")
        else:
            _log(f"no control plane was running from {args.dir}")
        return 0
    running = cp.status(args.dir)
    if running is None:
        _log(f"no control plane is running from {args.dir}")
        return 1
    print(f"{running.server} kubeconfig={running.kubeconfig}")
    return 0
