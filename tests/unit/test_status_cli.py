"""``stackscaler status`` without a cluster: views, text, JSON, colors, watch frames.

Statuses come from the real reconciler (tests/unit/test_reconcile.py's harness
with its in-memory target and metrics), so what is rendered is what the
operator writes; hostile statuses are written by hand, as anyone allowed to
write ``/status`` could.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes.client.exceptions import ApiException

from stackscaler.actuators.base import Capacity
from stackscaler.cli import main
from stackscaler.cli.status import Screen, fit, use_color
from stackscaler.errors import AccessDenied, KubernetesUnavailable, NotInstalled, PermanentError
from stackscaler.model.spec import Resource
from stackscaler.reconcile import material
from stackscaler.status.render import (
    COLOR,
    PLAIN,
    dump_json,
    duration,
    render_text,
    scale_in_short,
    to_json,
)
from stackscaler.status.source import Scope, default_namespace, translate
from stackscaler.status.view import ScaleInState, tier_view, tier_views
from stackscaler.text import UNSAFE
from tests.unit.test_reconcile import T0, FakeActuator, FakeSources, Harness, body

SGR = re.compile(r"\x1b\[[0-9;]*m")
HOSTILE = "a\x1b[2Jb\u202ec\nd\u200be\x07f\x9b31m"
"""Clears the screen, reverses the text, breaks the line, hides a character, rings the
bell, and a C1 CSI: each must reach the terminal as a visible escape."""


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def scaled_then_idle() -> dict[str, Any]:
    """A WebTier the reconciler scaled out 3 -> 6, then held while the load fell."""
    doc = body(
        behavior={
            "scaleOut": {"cooldownSeconds": 60, "maxStep": {"units": 100}},
            "scaleIn": {
                "cooldownSeconds": 300,
                "stabilizationWindowSeconds": 600,
                "maxStep": {"units": 1},
            },
        }
    )
    h = Harness(doc, sources=FakeSources({"cpu": 100.0}))

    async def go() -> None:
        await h.tick()  # 3 -> 6
        h.sources.values["cpu"] = 10.0
        await h.tick(after=30)  # wants 2; the window holds 6

    _run(go())
    return copy.deepcopy(h.body)


# --- what the reconciler writes -------------------------------------------------------


@dataclass
class StartingActuator(FakeActuator):
    ready: int = 3
    removing: int = 0

    async def observe(self, resource: Resource) -> Capacity:
        return Capacity(self.current, self.ready, removing=self.removing, is_setpoint=True)


def test_the_status_carries_the_units_starting_and_leaving_and_they_are_volatile() -> None:
    h = Harness(body(), actuator=StartingActuator(current=5, ready=3, removing=1))
    _run(h.tick())
    first = copy.deepcopy(h.body["status"])
    assert (first["startingCapacity"], first["leavingCapacity"]) == (2, 1)
    writes = len(h.rec.statuses)
    h.actuator.ready = 5  # the two are ready now; nothing else changed
    h.actuator.removing = 0
    _run(h.tick(after=30))
    assert len(h.rec.statuses) == writes  # not material: it waits for the refresh
    later = dict(first, startingCapacity=0, leavingCapacity=0)
    assert material(later) == material(first)


# --- the view -----------------------------------------------------------------------


def test_a_reconciled_resource_at_a_glance() -> None:
    b = scaled_then_idle()
    now = T0 + timedelta(seconds=50)
    v = tier_view(b, now)
    assert (v.kind, v.namespace, v.name) == ("WebTier", "shop", "web")
    assert (v.current, v.desired, v.starting, v.leaving, v.applied) == (6, 6, 0, 0, 6)
    assert v.decision is not None and v.decision.limited_by == "scaleInStabilization"
    assert v.decision.direction == "None"
    # the window holds 6 for 600 s from the scale-out tick (the first window); the
    # cooldown runs 300 s from the scale-out
    s = v.scale_in
    assert s.state is ScaleInState.WAITING
    assert s.waiting_for == ("scaleInStabilization", "scaleInCooldown")
    assert s.cooldown_until == T0.timestamp() + 300
    assert s.window_until == T0.timestamp() + 600
    assert s.allowed_at == T0.timestamp() + 600
    assert s.seconds_left == 550
    assert s.recommended is True
    assert scale_in_short(s) == "in 9m10s"
    # after both: allowed now
    assert tier_view(b, T0 + timedelta(seconds=601)).scale_in.state is ScaleInState.ALLOWED


def test_text_names_the_capacity_the_decision_its_reasons_and_the_conditions() -> None:
    b = scaled_then_idle()
    now = T0 + timedelta(seconds=50)
    lines = render_text(tier_views([b], now), now)
    text = "\n".join(lines)
    header = lines[0].split()
    assert header[:5] == ["KIND", "NAME", "CURRENT", "DESIRED", "STARTING"]
    assert lines[1].split() == [
        "WebTier",
        "web",
        "6",
        "6",
        "0",
        "True",
        "scaleInStabilization",
        "in",
        "9m10s",
    ]
    assert "WebTier shop/web" in lines
    assert "current 6, desired 6, starting 0, leaving 0, applied 6" in text
    assert "hold 6, limited by scaleInStabilization, 20s ago (2026-11-26T12:00:30Z)" in text
    assert "- scale-in stabilization: highest recommendation of the last 600s is 6" in text
    assert "cpu 10 (target 50) -> 2 [Known]" in text
    assert (
        "in 9m10s, at 2026-11-26T12:10:00Z: the stabilization window holds it until "
        "2026-11-26T12:10:00Z; the cooldown runs until 2026-11-26T12:05:00Z "
        "(the last recommendation asks for one)"
    ) in text
    ready = next(ln for ln in lines if ln.strip().startswith("Ready "))
    assert ready.split()[:3] == ["Ready", "True", "Reconciled:"]
    assert "\x1b" not in text  # plain: no color


def test_a_resource_without_status_and_one_at_its_minimum() -> None:
    fresh = body()
    fresh["metadata"]["name"] = "new"
    v = tier_view(fresh, T0)
    assert v.scale_in.state is ScaleInState.UNKNOWN
    assert (v.current, v.decision, v.conditions) == (None, None, ())
    at_min = scaled_then_idle()
    at_min["status"]["currentCapacity"] = 1  # minCapacity 1
    views = tier_views([fresh, at_min], T0)
    assert [v.name for v in views] == ["new", "web"]
    lines = render_text(views, T0)
    assert lines[1].split()[:3] == ["WebTier", "new", "-"]
    assert lines[2].split()[-3:] == ["at", "min", "1"]
    assert "scale-in   unknown: no decision yet" in "\n".join(lines)
    assert render_text([], T0, scope="in namespace shop") == [
        "No stackscaler resources in namespace shop."
    ]


def test_an_invalid_spec_or_history_makes_the_scale_in_unknown() -> None:
    bad_spec = scaled_then_idle()
    bad_spec["spec"]["maxCapacity"] = -1
    assert tier_view(bad_spec, T0).scale_in.detail == "the spec is invalid (see Ready)"
    bad_history = scaled_then_idle()
    bad_history["status"]["history"] = {"version": 99}
    assert tier_view(bad_history, T0).scale_in.detail == "status.history cannot be read"


def test_wrong_types_in_a_status_read_as_absent() -> None:
    b = scaled_then_idle()
    b["status"].update(
        currentCapacity="six",
        desiredCapacity=True,
        conditions={"type": "Ready"},
        lastDecision={"reasons": ["ok", 7, None], "metrics": "cpu", "time": "yesterday"},
        pendingAction=[1, 2],
    )
    v = tier_view(b, T0)
    assert (v.current, v.desired, v.conditions, v.pending) == (None, None, (), None)
    assert v.decision is not None and v.decision.reasons == ("ok",)
    assert v.decision.at is None and v.decision.metrics == ()
    assert render_text([v], T0)  # renders


# --- hostile strings ---------------------------------------------------------------


def hostile() -> dict[str, Any]:
    b = scaled_then_idle()
    st = b["status"]
    st["lastDecision"]["reasons"].append(HOSTILE)
    st["lastDecision"]["limitedBy"] = HOSTILE
    st["lastDecision"]["direction"] = HOSTILE
    st["lastDecision"]["time"] = HOSTILE
    st["lastDecision"]["metrics"][0]["name"] = HOSTILE
    st["lastDecision"]["metrics"][0]["state"] = HOSTILE
    st["desiredCapacity"] = 4
    st["pendingAction"] = {"time": HOSTILE, "from": 6, "to": 4, "headline": HOSTILE}
    st["lastScaleTime"] = HOSTILE
    for c in st["conditions"]:
        c.update(reason=HOSTILE, message=HOSTILE * 3, lastTransitionTime=HOSTILE)
    st["conditions"].append({"type": HOSTILE, "status": HOSTILE})
    st["forecast"] = {
        **dict.fromkeys(("mode", "metric", "state", "reason", "message"), HOSTILE),
        "nextRefreshTime": HOSTILE,
        "floor": 4,
        "wouldRaiseTo": 4,
    }
    b["spec"]["target"]["name"] = HOSTILE
    b["spec"]["mode"] = HOSTILE
    b["metadata"]["name"] = HOSTILE
    b["metadata"]["namespace"] = HOSTILE
    b["kind"] = "WebTier"
    return b


@pytest.mark.parametrize("style", [PLAIN, COLOR], ids=["plain", "color"])
def test_every_string_of_a_resource_is_escaped(style: Any) -> None:
    now = T0 + timedelta(seconds=50)
    lines = render_text(tier_views([hostile()], now), now, style=style, namespaces=True)
    for line in lines:
        shown = SGR.sub("", line)  # the only escape sequences: our colors
        assert not UNSAFE.search(shown), repr(line)
    text = "\n".join(lines)
    assert "\u202e" not in text and "\x07" not in text
    assert "\\x1b[2Jb\\u202ec\\nd\\u200be\\x07f\\x9b31m" in text  # visible, not obeyed
    assert text.count("\\u202e") >= 20  # in names, reasons, messages, conditions, times


def test_json_keeps_the_strings_but_is_pure_ascii_with_stable_keys() -> None:
    now = T0 + timedelta(seconds=50)
    views = tier_views([hostile(), scaled_then_idle(), body()], now)
    text = dump_json(to_json(views, now))
    assert text.isascii()
    assert "\x1b" not in text and "\n\t" not in text
    doc = json.loads(text)
    assert doc["version"] == 1 and doc["time"] == "2026-11-26T12:00:50Z"
    evil = next(i for i in doc["items"] if i["name"] == HOSTILE)
    assert evil["lastDecision"]["reasons"][-1] == HOSTILE  # exact, for programs
    keys = {json.dumps(sorted(i)) for i in doc["items"]}
    assert len(keys) == 1  # every item has every key, known or not
    assert sorted(doc["items"][0]) == sorted(
        [
            "kind",
            "namespace",
            "name",
            "target",
            "mode",
            "minCapacity",
            "maxCapacity",
            "generation",
            "observedGeneration",
            "capacity",
            "lastScaleTime",
            "lastScaleOutTime",
            "lastScaleInTime",
            "lastDecision",
            "pendingAction",
            "conditions",
            "scaleIn",
            "forecast",
        ]
    )
    web = next(i for i in doc["items"] if i["name"] == "web" and i["capacity"]["current"])
    assert web["capacity"] == {
        "current": 6,
        "desired": 6,
        "starting": 0,
        "leaving": 0,
        "applied": 6,
    }
    assert web["scaleIn"] == {
        "state": "Waiting",
        "allowedAt": "2026-11-26T12:10:00Z",
        "secondsLeft": 550,
        "waitingFor": ["scaleInStabilization", "scaleInCooldown"],
        "cooldownUntil": "2026-11-26T12:05:00Z",
        "stabilizationUntil": "2026-11-26T12:10:00Z",
        "recommended": True,
        "minCapacity": 1,
        "detail": "",
    }
    assert web["lastDecision"]["ageSeconds"] == 20


# --- terminal or pipe ---------------------------------------------------------------


@pytest.fixture
def terminal() -> Iterator[io.TextIOWrapper]:
    """A real pseudo-terminal's slave end, as a text stream (isatty() is True)."""
    master, slave = os.openpty()
    stream = open(slave, "w", encoding="utf-8", closefd=True)  # noqa: SIM115
    try:
        yield stream
    finally:
        stream.close()
        os.close(master)


def test_color_on_a_terminal_unless_no_color_and_never_into_a_pipe(
    terminal: io.TextIOWrapper, tmp_path: Path
) -> None:
    assert use_color("auto", terminal, {})
    assert not use_color("auto", terminal, {"NO_COLOR": "1"})
    assert use_color("auto", terminal, {"NO_COLOR": ""})  # no-color.org: empty is unset
    assert not use_color("auto", terminal, {"TERM": "dumb"})
    assert not use_color("never", terminal, {})
    with (tmp_path / "out").open("w") as piped:
        assert not use_color("auto", piped, {})
        assert use_color("always", piped, {"NO_COLOR": "1"})
    assert not use_color("auto", io.StringIO(), {})


def _screen(out: io.StringIO, *, as_json: bool = False, redraw: bool = False) -> Screen:
    return Screen(out, Scope("shop"), as_json=as_json, style=PLAIN, redraw=redraw, watching=True)


def _objects(*bodies: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(b["kind"], b["metadata"]["namespace"], b["metadata"]["name"]): b for b in bodies}


def test_watching_into_a_pipe_prints_each_change_once() -> None:
    web = scaled_then_idle()
    other = copy.deepcopy(web)
    other["metadata"]["name"] = "api"
    out = io.StringIO()
    screen = _screen(out)
    before = _objects(web, other)
    screen.show(before)
    first = out.getvalue()
    assert first.count("WebTier shop/") == 2
    # only the resourceVersion moved: nothing to show
    touched = copy.deepcopy(web)
    touched["metadata"]["resourceVersion"] = "999"
    screen.changed(before, _objects(touched, other))
    assert out.getvalue() == first
    # a status change: that resource's block again, and only it
    paused = copy.deepcopy(web)
    for c in paused["status"]["conditions"]:
        if c["type"] == "Paused":
            c.update(status="True", reason="PausedByAnnotation")
    screen.changed(before, _objects(paused, other))
    added = out.getvalue()[len(first) :]
    assert added.count("WebTier shop/web") == 1 and "shop/api" not in added
    assert re.search(r"Paused +True +PausedByAnnotation", added)
    # a deletion
    screen.changed(_objects(paused, other), _objects(paused))
    assert out.getvalue().endswith("\nWebTier shop/api: deleted\n")


def test_watching_json_prints_one_document_per_line_per_change() -> None:
    web = scaled_then_idle()
    out = io.StringIO()
    screen = _screen(out, as_json=True)
    screen.show(_objects(web))
    changed = copy.deepcopy(web)
    changed["status"]["desiredCapacity"] = 7
    screen.changed(_objects(web), _objects(changed))
    screen.refresh(_objects(changed))  # no redraw for JSON
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert [json.loads(ln)["items"][0]["capacity"]["desired"] for ln in lines] == [6, 7]


def test_a_terminal_is_redrawn_in_place() -> None:
    out = io.StringIO()
    screen = _screen(out, redraw=True)
    assert screen.refresh_every == 1.0
    screen.show(_objects(scaled_then_idle()))
    frame = out.getvalue()
    assert frame.startswith("\x1b[H") and frame.endswith("\x1b[J")
    assert "\x1b[K\n" in frame and "(Ctrl-C to stop)" in frame


def test_a_frame_taller_than_the_terminal_is_cut_and_says_so() -> None:
    lines = [str(i) for i in range(30)]
    assert fit(lines, 0) == lines  # size unknown
    assert fit(lines, 31) == lines
    cut = fit(lines, 10)
    assert len(cut) == 9 and cut[:8] == lines[:8]
    assert cut[-1] == "... 22 more lines: name one resource, or use -n"


def test_durations() -> None:
    assert [duration(s) for s in (0, 0.2, 59, 60, 252, 3600, 7500, 90000)] == [
        "0s",
        "1s",
        "59s",
        "1m00s",
        "4m12s",
        "1h00m",
        "2h05m",
        "1d01h",
    ]


# --- errors -------------------------------------------------------------------------


def _api_error(status: int, message: str) -> ApiException:
    exc = ApiException(status=status, reason="Reason")
    exc.body = json.dumps({"kind": "Status", "message": message}).encode()
    return exc


def test_errors_are_translated_into_the_error_tree_and_escaped() -> None:
    scope = Scope("shop")
    kw = {"verb": "list", "plural": "webtiers", "scope": scope, "server": "https://k:6443"}
    denied = translate(_api_error(403, f"user {HOSTILE} cannot list"), **kw)  # type: ignore[arg-type]
    assert isinstance(denied, AccessDenied)
    assert "forbidden to list webtiers.stackscaler.dev in namespace shop" in str(denied)
    assert "get, list and watch" in str(denied)
    assert not UNSAFE.search(str(denied))
    assert isinstance(translate(_api_error(401, "no"), **kw), AccessDenied)  # type: ignore[arg-type]
    missing = translate(_api_error(404, "not found"), **kw)  # type: ignore[arg-type]
    assert isinstance(missing, NotInstalled) and "CRDs are not installed" in str(missing)
    busy = translate(_api_error(503, "etcd"), **kw)  # type: ignore[arg-type]
    assert isinstance(busy, KubernetesUnavailable) and busy.temporary
    other = translate(_api_error(422, "bad"), **kw)  # type: ignore[arg-type]
    assert isinstance(other, PermanentError) and "422" in str(other)
    down = translate(urllib3.exceptions.NewConnectionError(None, "refused"), **kw)  # type: ignore[arg-type]
    assert isinstance(down, KubernetesUnavailable)
    assert "cannot reach the Kubernetes API server at https://k:6443" in str(down)


def test_the_default_namespace_is_the_contexts(tmp_path: Path) -> None:
    conf = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [
            {"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "shop"}},
            {"name": "b", "context": {"cluster": "c", "user": "u"}},
        ],
        "current-context": "a",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(conf))
    assert default_namespace(str(path)) == "shop"
    path.write_text(yaml.safe_dump(dict(conf, **{"current-context": "b"})))
    assert default_namespace(str(path)) == "default"
    assert default_namespace(str(tmp_path / "missing")) == "default"


def test_the_command_fails_clearly_without_a_kubeconfig(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["status", "--kubeconfig", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("stackscaler: no Kubernetes configuration")
    assert main(["status", "--timeout", "5"]) == 1
    assert "--timeout applies to --watch only" in capsys.readouterr().err
