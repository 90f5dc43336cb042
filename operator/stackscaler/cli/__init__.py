"""The ``stackscaler`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stackscaler import __version__
from stackscaler.cli import commands, demo, dev, run, simulate, status
from stackscaler.cli.files import UsageError
from stackscaler.errors import InvalidSpec, StackscalerError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stackscaler",
        description="Autoscale every elastic part of an AWS web stack from Kubernetes.",
    )
    p.add_argument("--version", action="version", version=f"stackscaler {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("validate", help="check resources offline against the CRDs and rules")
    v.add_argument(
        "-f",
        "--file",
        action="append",
        required=True,
        metavar="FILE",
        help="a YAML file of one or more documents (- for stdin); repeatable",
    )
    v.add_argument("-v", "--verbose", action="store_true", help="also list valid documents")

    commands.add_decide_parser(sub)

    c = sub.add_parser("crds", help="write the CustomResourceDefinitions as YAML")
    c.add_argument("--output-dir", default="crds", metavar="DIR")
    c.add_argument("--docs", metavar="FILE", help="also write the Markdown API reference")
    c.add_argument(
        "--chart-crds", metavar="DIR", help="also write the Helm chart's CRD templates into DIR"
    )
    c.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the files in DIR differ from the generated ones",
    )

    demo.add_parser(sub)
    dev.add_parser(sub)
    run.add_parser(sub)
    simulate.add_parser(sub)
    status.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {
        "validate": commands.cmd_validate,
        "decide": commands.cmd_decide,
        "crds": commands.cmd_crds,
        "demo": demo.cmd_demo,
        "dev": dev.cmd_dev,
        "run": run.cmd_run,
        "simulate": simulate.cmd_simulate,
        "status": status.cmd_status,
    }
    try:
        return handlers[args.command](args)
    except InvalidSpec as exc:
        for e in exc.errors:
            print(f"{exc.source + ': ' if exc.source else ''}{e}", file=sys.stderr)
        return 1
    except (UsageError, StackscalerError) as exc:
        print(f"stackscaler: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
