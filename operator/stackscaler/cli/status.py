"""``stackscaler status``: the stack at a glance, read from the resources' status.

Lists the four kinds in one namespace (``-n``, default the context's), in all
(``-A``), or only those with one NAME, and prints a summary table and every
resource in detail (:mod:`stackscaler.status.render`): capacity (current,
desired, starting, leaving), the last decision with its reasons and the
rule that limited it, the conditions, and when the next scale-in is
allowed. ``--json`` prints the same as one JSON document.

``--watch`` keeps going: one watch per kind (:mod:`stackscaler.status.source`)
and every change shown as it comes. On a terminal the screen is redrawn on
every change and every second (the times count down); into a pipe, each
resource that changed is printed again below; with ``--json``, one document
per line for each change. It ends with Ctrl-C (exit 130), after
``--timeout`` seconds (exit 0), or with an error (exit 1).
"""

from __future__ import annotations

import argparse
import io
import os
import queue
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from stackscaler.cli.args import positive
from stackscaler.cli.files import UsageError
from stackscaler.kube import api_client
from stackscaler.status.render import (
    COLOR,
    CYAN,
    DIM,
    PLAIN,
    Style,
    dump_json,
    esc,
    render_text,
    render_tier,
    to_json,
)
from stackscaler.status.source import (
    Change,
    Failed,
    Listed,
    Relisted,
    Scope,
    StatusReader,
    Update,
    default_namespace,
)
from stackscaler.status.view import SpecCache, tier_view, tier_views

REFRESH_SECONDS = 1.0
"""How often a terminal is redrawn while watching, for the times that count down."""

Key = tuple[str, str, str]
"""(kind, namespace, name)."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "status",
        help="the stack at a glance: capacity, the last decision and why, conditions, "
        "the next scale-in",
        description="Show every stackscaler resource's status: current, desired and starting "
        "capacity, the last decision with its reasons and the rule that limited it, the "
        "conditions, and when the next scale-in is allowed.",
    )
    s.add_argument("name", nargs="?", metavar="NAME", help="only resources with this name")
    scope = s.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", metavar="NS", help="namespace (default: the context's, or default)"
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="resources of every namespace"
    )
    s.add_argument("--json", action="store_true", help="print JSON (stable keys)")
    s.add_argument(
        "-w",
        "--watch",
        action="store_true",
        help="keep showing changes (Ctrl-C to stop); with --json one document per line",
    )
    s.add_argument(
        "--timeout",
        type=positive,
        metavar="S",
        help="with --watch: stop after S seconds (exit 0)",
    )
    s.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="auto: on a terminal, unless NO_COLOR is set or TERM=dumb",
    )
    s.add_argument(
        "--request-timeout",
        type=positive,
        default=30.0,
        metavar="S",
        help="seconds each list request may take (default 30)",
    )
    s.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, then KUBECONFIG)")


def use_color(choice: str, stream: TextIO, env: Mapping[str, str]) -> bool:
    """``--color``: always, never, or auto (a terminal, NO_COLOR unset or empty, TERM not
    dumb; https://no-color.org)."""
    if choice == "always":
        return True
    if choice == "never" or env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    return _isatty(stream)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return False


def _key(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return (str(body.get("kind", "")), str(meta.get("namespace", "")), str(meta.get("name", "")))


def _fingerprint(body: Mapping[str, Any]) -> Any:
    """What a resource shows: a change elsewhere (managedFields, resourceVersion) is none."""
    meta = body.get("metadata") or {}
    return (body.get("spec"), body.get("status"), meta.get("generation"))


class Screen:
    """Where frames go: JSON documents, a redrawn terminal, or text appended to a pipe."""

    def __init__(
        self,
        out: TextIO,
        scope: Scope,
        *,
        as_json: bool,
        style: Style,
        redraw: bool,
        watching: bool,
    ) -> None:
        self.out, self.scope = out, scope
        self.as_json, self.style, self.redraw, self.watching = as_json, style, redraw, watching
        self.cache: SpecCache = {}

    @property
    def refresh_every(self) -> float | None:
        """Seconds between redraws without a change (None: only on changes)."""
        return REFRESH_SECONDS if self.redraw and not self.as_json else None

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _text(self, objects: Mapping[Key, Mapping[str, Any]], now: datetime) -> list[str]:
        return render_text(
            tier_views(objects.values(), now, self.cache),
            now,
            style=self.style,
            namespaces=self.scope.namespace is None,
            scope=esc(self.scope.describe()),
        )

    def show(self, objects: Mapping[Key, Mapping[str, Any]]) -> None:
        """The whole view."""
        now = datetime.now(UTC)
        if self.as_json:
            document = to_json(tier_views(objects.values(), now, self.cache), now)
            self._write(dump_json(document, indent=None if self.watching else 2) + "\n")
        elif self.redraw:
            head = self.style(
                f"stackscaler status {esc(self.scope.describe())}, "
                f"{now.isoformat(timespec='seconds').replace('+00:00', 'Z')} "
                "(Ctrl-C to stop)",
                DIM,
            )
            lines = fit([head, "", *self._text(objects, now)], self._rows())
            # home, each line cleared to its end, then the rest of the screen: no flicker
            self._write("\x1b[H" + "".join(f"{ln}\x1b[K\n" for ln in lines) + "\x1b[J")
        else:
            self._write("\n".join(self._text(objects, now)) + "\n")

    def _rows(self) -> int:
        try:
            return os.get_terminal_size(self.out.fileno()).lines
        except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
            return 0

    def refresh(self, objects: Mapping[Key, Mapping[str, Any]]) -> None:
        """No change, but the times moved on."""
        if self.redraw and not self.as_json:
            self.show(objects)

    def changed(
        self, before: Mapping[Key, Mapping[str, Any]], after: Mapping[Key, Mapping[str, Any]]
    ) -> None:
        """Show what differs between ``before`` and ``after`` (nothing if nothing does)."""
        changed = [
            k
            for k, body in after.items()
            if k not in before or _fingerprint(before[k]) != _fingerprint(body)
        ]
        gone = [k for k in before if k not in after]
        if not changed and not gone:
            return
        if self.as_json or self.redraw:
            self.show(after)
            return
        now = datetime.now(UTC)
        lines: list[str] = []
        for k in sorted(gone):
            kind, ns, name = (esc(x) for x in k)
            lines += ["", f"{self.style(kind, CYAN)} {ns}/{name}: deleted"]
        views = sorted((tier_view(after[k], now, self.cache) for k in changed), key=lambda v: v.key)
        for v in views:
            lines += ["", *render_tier(v, now.timestamp(), style=self.style)]
        self._write("\n".join(lines) + "\n")


def fit(lines: list[str], rows: int) -> list[str]:
    """At most ``rows - 1`` lines (0: any), the last saying how many more there are: a
    frame taller than the terminal would scroll, and the next one draw over its middle."""
    if rows <= 1 or len(lines) < rows:
        return lines
    keep = max(0, rows - 2)
    return [*lines[:keep], f"... {len(lines) - keep} more lines: name one resource, or use -n"]


def _apply(objects: dict[Key, dict[str, Any]], update: Update) -> None:
    if isinstance(update, Failed):
        raise update.error
    if isinstance(update, Relisted):
        for k in [k for k in objects if k[0] == update.kind]:
            del objects[k]
        objects.update((_key(b), b) for b in update.bodies)
    elif isinstance(update, Change):
        if update.type == "DELETED":
            objects.pop(_key(update.body), None)
        else:
            objects[_key(update.body)] = update.body


def watch_loop(
    reader: StatusReader, listed: Listed, screen: Screen, *, timeout: float | None
) -> int:
    """Show every change until Ctrl-C (KeyboardInterrupt), ``timeout`` or an error."""
    objects = {_key(b): b for b in listed.bodies}
    updates: queue.Queue[Update] = queue.Queue()
    stop = threading.Event()
    reader.watch(listed, updates, stop)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        screen.show(objects)
        while True:
            wait = screen.refresh_every
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return 0
                wait = left if wait is None else min(wait, left)
            try:
                batch = [updates.get(timeout=wait)]
            except queue.Empty:
                screen.refresh(objects)
                continue
            while True:  # everything that came together is shown together
                try:
                    batch.append(updates.get_nowait())
                except queue.Empty:
                    break
            before = dict(objects)
            for update in batch:
                _apply(objects, update)
            screen.changed(before, objects)
    finally:
        stop.set()


def cmd_status(args: argparse.Namespace) -> int:
    out = sys.stdout
    if isinstance(out, io.TextIOWrapper):  # a character the terminal cannot encode is escaped
        out.reconfigure(errors="backslashreplace")
    if args.timeout is not None and not args.watch:
        raise UsageError("--timeout applies to --watch only")
    api = api_client(args.kubeconfig)
    try:
        namespace = None if args.all_namespaces else args.namespace
        if namespace is None and not args.all_namespaces:
            namespace = default_namespace(args.kubeconfig)
        scope = Scope(namespace, args.name)
        reader = StatusReader(api, scope, request_timeout=args.request_timeout)
        listed = reader.list_all()
        tty = _isatty(out)
        screen = Screen(
            out,
            scope,
            as_json=args.json,
            style=COLOR if use_color(args.color, out, os.environ) else PLAIN,
            redraw=tty and args.watch,
            watching=args.watch,
        )
        if args.watch:
            return watch_loop(reader, listed, screen, timeout=args.timeout)
        if args.name is not None and not listed.bodies:
            print(f"stackscaler: no stackscaler resource {esc(scope.describe())}", file=sys.stderr)
            return 1
        screen.show({_key(b): b for b in listed.bodies})
        return 0
    except BrokenPipeError:  # the reader went away (| head): no traceback, no more output
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        return 141
    finally:
        api.close()
