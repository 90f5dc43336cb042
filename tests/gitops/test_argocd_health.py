"""The Argo CD health check (docs/gitops/argocd/health.lua): crafted cases, run by lua5.4.

Every case runs the shipped script in Argo CD's sandbox (tests/gitops/argocd_harness.lua:
base, table and os libraries only, no string methods) on an object written as a Lua
literal by :func:`tests.gitops.lua.lua_literal`. The edge cases the operator rarely or
never writes are here: statuses of another shape, values of the wrong type, hostile
strings, conditions in combination. The statuses the operator really writes are in
test_argocd_health_live.py. Also checked: the argocd-cm snippet holds exactly the
script under one key per kind, and the script keeps to what Argo CD's Lua 5.1 sandbox
offers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackscaler.model.crds import KINDS
from tests.gitops.argocd_cm import ARGOCD_CM, key, render
from tests.gitops.lua import HEALTH_LUA, argocd_health, lua_literal, run_health

FIRST = "waiting for the stackscaler operator to reconcile this resource"


def cond(type_: str, status: str, message: str = "", reason: str = "R") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def resource(*conditions: dict[str, Any], generation: int = 4, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stackscaler.dev/v1alpha1",
        "kind": "WebTier",
        "metadata": {"name": "web", "namespace": "shop", "generation": generation},
        "status": {"observedGeneration": generation, "conditions": list(conditions), **status},
    }


READY = cond("Ready", "True", "hold 3: cpu 48 within tolerance of 50")
KNOWN = cond("MetricsAvailable", "True", "1 metric(s) read")


CASES: list[tuple[str, dict[str, Any], tuple[str, str]]] = [
    # --- not reconciled yet ---
    ("no status", {"metadata": {"generation": 1}}, ("Progressing", FIRST)),
    ("empty status", {"metadata": {"generation": 1}, "status": {}}, ("Progressing", FIRST)),
    ("no conditions", resource(), ("Progressing", FIRST)),
    ("conditions not a list", resource(conditions="Ready"), ("Progressing", FIRST)),
    ("a condition not an object", {"status": {"conditions": ["Ready", 7]}}, ("Progressing", FIRST)),
    ("no Ready", resource(KNOWN), ("Progressing", FIRST)),
    ("status not an object", {"metadata": {}, "status": "Ready"}, ("Progressing", FIRST)),
    (
        "an older generation",
        {**resource(READY, KNOWN), "metadata": {"generation": 5}},
        (
            "Progressing",
            "waiting for the stackscaler operator to reconcile generation 5 "
            "(the status is about generation 4)",
        ),
    ),
    (
        "no observedGeneration",
        {"metadata": {"generation": 2}, "status": {"conditions": [READY]}},
        (
            "Progressing",
            "waiting for the stackscaler operator to reconcile generation 2 "
            "(the status is about no generation)",
        ),
    ),
    (
        "an older generation, even when Ready=False",
        {**resource(cond("Ready", "False", "bad")), "metadata": {"generation": 5}},
        (
            "Progressing",
            "waiting for the stackscaler operator to reconcile generation 5 "
            "(the status is about generation 4)",
        ),
    ),
    (
        "observedGeneration as a string is no generation",
        resource(READY, observedGeneration="4"),
        (
            "Progressing",
            "waiting for the stackscaler operator to reconcile generation 4 "
            "(the status is about no generation)",
        ),
    ),
    ("no metadata.generation", {"status": {"conditions": [READY]}}, ("Healthy", READY["message"])),
    (
        "generations beyond 2^53",
        resource(READY, generation=2**60),
        ("Healthy", READY["message"]),
    ),
    (
        "Ready=Unknown",
        resource(cond("Ready", "Unknown", "starting")),
        ("Progressing", "Ready is Unknown: starting"),
    ),
    (
        "Ready without a status",
        resource({"type": "Ready", "reason": "Odd"}),
        ("Progressing", "Ready is without a status: Odd"),
    ),
    # --- degraded ---
    (
        "Ready=False",
        resource(cond("Ready", "False", "Auto Scaling group web does not exist", "TargetNotFound")),
        ("Degraded", "Auto Scaling group web does not exist"),
    ),
    (
        "Ready=False without a message: the reason",
        resource(cond("Ready", "False", "", "InvalidSpec")),
        ("Degraded", "InvalidSpec"),
    ),
    (
        "Ready=False with a message of another type: the reason",
        resource({"type": "Ready", "status": "False", "reason": "TickLate", "message": 42}),
        ("Degraded", "TickLate"),
    ),
    (
        "Ready=False with nothing to say",
        resource({"type": "Ready", "status": "False"}),
        ("Degraded", "not ready"),
    ),
    (
        "Conflict first",
        resource(
            cond("Ready", "False", "refused", "TargetConflict"),
            cond("Conflict", "True", "managed by the older WebTier shop/a"),
        ),
        ("Degraded", "managed by the older WebTier shop/a"),
    ),
    (
        "MetricsAvailable=False",
        resource(READY, cond("MetricsAvailable", "False", "cpu: no datapoints")),
        ("Degraded", "metrics unavailable: cpu: no datapoints"),
    ),
    (
        "in fallback",
        resource(
            READY,
            cond("MetricsAvailable", "False", "cpu: no datapoints"),
            cond("Fallback", "True", "6 (fallback)"),
        ),
        ("Degraded", "metrics unavailable: cpu: no datapoints; in fallback: 6 (fallback)"),
    ),
    (
        "Fallback=True alone",
        resource(READY, KNOWN, cond("Fallback", "True", "6 (fallback)")),
        ("Degraded", "metrics unavailable; in fallback: 6 (fallback)"),
    ),
    (
        "Degraded wins over paused",
        resource(READY, cond("MetricsAvailable", "False", "q: gone"), cond("Paused", "True", "p")),
        ("Degraded", "metrics unavailable: q: gone"),
    ),
    (
        "Ready=False wins over DryRun",
        resource(cond("Ready", "False", "denied"), cond("DryRun", "True", "would")),
        ("Degraded", "denied"),
    ),
    # --- suspended ---
    (
        "paused",
        resource(READY, KNOWN, cond("Paused", "True", "paused by the annotation; would hold 3")),
        ("Suspended", "paused by the annotation; would hold 3"),
    ),
    (
        "dry run",
        resource(READY, KNOWN, cond("DryRun", "True", "would scale 3 -> 5: cpu")),
        ("Suspended", "DryRun: would scale 3 -> 5: cpu"),
    ),
    (
        "paused and dry run: paused",
        resource(READY, cond("Paused", "True", "p"), cond("DryRun", "True", "d")),
        ("Suspended", "p"),
    ),
    # --- healthy ---
    (
        "ready, everything else False",
        resource(
            READY,
            KNOWN,
            cond("Fallback", "False"),
            cond("Paused", "False"),
            cond("DryRun", "False"),
            cond("Conflict", "False"),
            cond("ScalingLimited", "True", "at maxCapacity 20"),
            cond("OutOfBandChange", "True", "changed by hand"),
            currentCapacity=3,
            desiredCapacity=3,
        ),
        ("Healthy", READY["message"]),
    ),
    (
        "a scale-out decided",
        resource(
            cond("Ready", "True", "3 -> 5: cpu 80"), KNOWN, currentCapacity=3, desiredCapacity=5
        ),
        ("Healthy", "scaling: 3 -> 5: cpu 80"),
    ),
    (
        "a scale action being sent",
        resource(
            READY,
            KNOWN,
            currentCapacity=3,
            desiredCapacity=3,
            pendingAction={
                "time": "2025-01-01T00:00:00Z",
                "from": 3,
                "to": 6,
                "headline": "3 -> 6: q",
            },
        ),
        ("Healthy", "scaling: 3 -> 6: q"),
    ),
    (
        "a scale action without a headline",
        resource(READY, pendingAction={"from": 3, "to": 6}),
        ("Healthy", "scaling: 3 -> 6"),
    ),
    (
        "units starting after a scale-out",
        resource(
            cond("Ready", "True", "hold 5: cpu 52"),
            KNOWN,
            currentCapacity=5,
            desiredCapacity=5,
            startingCapacity=2,
        ),
        ("Healthy", "hold 5: cpu 52 (2 unit(s) starting)"),
    ),
    (
        "units starting while scaling further",
        resource(
            cond("Ready", "True", "5 -> 8: cpu 90"),
            currentCapacity=5,
            desiredCapacity=8,
            startingCapacity=2,
        ),
        ("Healthy", "scaling: 5 -> 8: cpu 90 (2 unit(s) starting)"),
    ),
    (
        "none starting",
        resource(READY, currentCapacity=3, desiredCapacity=3, startingCapacity=0),
        ("Healthy", READY["message"]),
    ),
    (
        "capacities of another type are ignored",
        resource(
            READY,
            currentCapacity="3",
            desiredCapacity=[5],
            pendingAction="soon",
            startingCapacity="2",
        ),
        ("Healthy", READY["message"]),
    ),
    (
        "Ready=True without a message: the reason",
        resource(cond("Ready", "True", "", "Reconciled")),
        ("Healthy", "Reconciled"),
    ),
]


@pytest.mark.parametrize(("obj", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_crafted_cases(obj: dict[str, Any], want: tuple[str, str]) -> None:
    assert argocd_health(obj) == want


HOSTILE = [
    'quote " backslash \\ end',
    "]] ]=] --[[ comment",
    '"; os.exit(3) --',
    '\\"); os.exit(3); --',
    "\n\r\t\x00\x1b[31mred\x1b[0m\x7f",
    "ünïcödé ✓ 🚀 \u202e",
    "%s %d %q",
    "a" * 4000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_strings_pass_through_as_data(text: str) -> None:
    obj = resource(cond("Ready", "False", text, "Bad"))
    # hostile keys and values everywhere else too
    obj["metadata"]["annotations"] = {text: text, "stackscaler.dev/paused": text}
    obj["status"]["lastDecision"] = {"reasons": [text], text: {text: [text, 1.5, True, None]}}
    assert argocd_health(obj) == ("Degraded", text)


def test_the_literal_escapes_everything_but_inert_characters() -> None:
    literal = lua_literal({'k"]': ['x"\\\n', 2**60, 0.1, False, None], "none": None})
    plain = r"[A-Za-z0-9 _\-.:/,;()]"
    structure = r"[A-Za-z0-9 _\-.+{}\[\]=,]"
    assert re.fullmatch(rf'(?:{structure}|"(?:{plain}|\\\d{{3}})*")*', literal), literal
    assert "none" not in literal  # null: an absent key, as Argo CD decodes it
    with pytest.raises(ValueError):
        lua_literal(float("nan"))


# --- the harness is Argo CD's sandbox, not a full Lua -------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ('return {status = string.format("%s", "Healthy")}', "string"),
        ('return {status = ("Healthy"):lower()}', "index"),
        ("return {status = math.floor(1)}", "math"),
        ('return {status = io.read("l")}', "io"),
        ('return {status = "Fine"}', "invalid health status"),
        ('return {status = "Healthy", message = {}}', "not a string"),
        ('return "Healthy"', "expect table output"),
    ],
)
def test_the_harness_refuses_what_argo_cd_refuses(tmp_path: Path, body: str, error: str) -> None:
    script = tmp_path / "health.lua"
    script.write_text(body)
    out = run_health({"metadata": {}}, script)
    assert out.returncode == 2, out
    assert error in out.stderr.decode(), out.stderr


def test_the_script_keeps_to_lua_5_1_and_argo_cds_libraries() -> None:
    """gopher-lua is Lua 5.1; Argo CD opens base, table and os only for argocd-cm scripts."""
    code = HEALTH_LUA.read_text()
    code = re.sub(r"--\[(=*)\[.*?\]\1\]", " ", code, flags=re.S)  # long comments
    code = re.sub(r"--[^\n]*", " ", code)  # line comments
    code = re.sub(r'"(\\.|[^"\\\n])*"', '""', code)  # strings
    code = re.sub(r"'(\\.|[^'\\\n])*'", "''", code)
    assert "[[" not in code
    for token in ("goto", "::", "//", "&", "|", "<<", ">>", "<const>", "<close>"):
        assert token not in code, token
    assert not re.search(r"~(?!=)", code), "bitwise not/xor is Lua 5.3"
    for library in ("string", "math", "io", "debug", "utf8", "coroutine", "require", "load"):
        assert not re.search(rf"\b{library}\b", code), library


# --- the argocd-cm snippet -----------------------------------------------------------------


def test_argocd_cm_holds_the_script_under_one_key_per_kind() -> None:
    text = ARGOCD_CM.read_text()
    assert text == render(HEALTH_LUA.read_text()), "run python -m tests.gitops.argocd_cm"
    doc = yaml.safe_load(text)
    assert (doc["apiVersion"], doc["kind"], doc["metadata"]["name"]) == (
        "v1",
        "ConfigMap",
        "argocd-cm",
    )
    script = HEALTH_LUA.read_text()
    assert doc["data"] == {key(kind): script for kind in KINDS}
    assert sorted(KINDS) == [
        "CachePool",
        "ReadReplicaPool",
        "TableCapacity",
        "WebTier",
        "WorkerPool",
    ]
