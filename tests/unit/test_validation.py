"""Offline validation: every mistake gets a precise message naming its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stackscaler.errors import InvalidSpec
from stackscaler.model.spec import (
    DBClusterTarget,
    DBInstanceTarget,
    Mode,
    ReplicationGroupTarget,
    TargetType,
    Tolerance,
    WorkloadTarget,
    parse_resource,
)
from stackscaler.model.validation import validate_document
from tests.conftest import EXAMPLES, example, load_docs, mutate
from tests.unit.spec_cases import CASES, Case

EXAMPLE_FILES = sorted(p for p in EXAMPLES.glob("*.yaml"))


def _stackscaler_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in load_docs(path) if d["apiVersion"].startswith("stackscaler.dev/")]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    docs = _stackscaler_docs(path)
    assert docs, f"{path} has no stackscaler resources"
    for doc in docs:
        parse_resource(doc)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_document_gets_precise_message(case: Case) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_resource(case.make())
    errors = info.value.errors
    matching = [e for e in errors if e.path == case.path and case.message in e.message]
    assert matching, f"expected {case.path}: ...{case.message}...; got {[str(e) for e in errors]}"


def test_five_mistakes_give_five_messages() -> None:
    doc = load_docs(EXAMPLES / "invalid" / "five-mistakes.yaml")[0]
    with pytest.raises(InvalidSpec) as info:
        parse_resource(doc)
    paths = [e.path for e in info.value.errors]
    assert paths == [
        "spec.behavior.scaleIn.cooldownSeconds",
        "spec.metrics[0].target.value",
        "spec.minCapacity",
        "spec.schedules[0].cron",
        "spec.schedules[0].timeZone",
    ]


def test_defaults_are_applied_like_the_api_server() -> None:
    doc = example("WebTier")
    del doc["spec"]["behavior"]
    out, errors = validate_document(doc)
    assert errors == []
    assert out is not None
    spec = out["spec"]
    assert spec["behavior"]["scaleIn"] == {
        "cooldownSeconds": 120,
        "stabilizationWindowSeconds": 600,
        "maxStep": {"units": 1, "percent": 25, "periodSeconds": 60, "select": "Max"},
    }
    assert spec["behavior"]["scaleOut"]["stabilizationWindowSeconds"] == 0
    assert "tolerance" not in spec  # no schema default: the kind's band (below)
    assert spec["mode"] == "Active"
    assert spec["pollIntervalSeconds"] == 30
    assert spec["metrics"][0]["staleAfterSeconds"] == 300
    assert spec["metrics"][0]["cloudWatch"]["periodSeconds"] == 60
    # the input is not modified
    assert "behavior" not in doc["spec"]


def test_the_tolerance_band_by_side_and_kind() -> None:
    """Unset: 0.2 above the target, 0.1 below (a table: 0.2 both ways); spec.tolerance sets
    both sides, a direction's own tolerance its side (the HPA's scaleUp/scaleDown.tolerance)."""
    web = example("WebTier")
    assert parse_resource(web).scaling.band == Tolerance(above=0.2, below=0.1)
    both = mutate(web, "spec.tolerance", 0.3)
    assert parse_resource(both).scaling.band == Tolerance.both(0.3)
    one = mutate(both, "spec.behavior.scaleIn.tolerance", 0.05)
    assert parse_resource(one).scaling.band == Tolerance(above=0.3, below=0.05)
    out = mutate(web, "spec.behavior.scaleOut.tolerance", 0.1)
    assert parse_resource(out).scaling.band == Tolerance(above=0.1, below=0.1)
    assert parse_resource(example("TableCapacity")).scaling.band == Tolerance.both(0.2)


def test_partial_max_step_gets_leaf_defaults_only() -> None:
    doc = mutate(example("WebTier"), "spec.behavior.scaleOut.maxStep", {"units": 2})
    res = parse_resource(doc)
    step = res.scaling.behavior.scale_out.max_step
    assert step is not None
    assert (step.units, step.percent, step.period_seconds) == (2, None, 60)


def test_typed_model_of_the_stack() -> None:
    docs = {d["kind"]: parse_resource(d) for d in _stackscaler_docs(EXAMPLES / "stack.yaml")}
    web = docs["WebTier"]
    assert web.key == "shop/web"
    assert web.target.kind == "AutoScalingGroup"
    assert [m.name for m in web.scaling.metrics] == ["cpu", "requests-per-minute"]
    cpu = web.scaling.metric("cpu")
    assert cpu.target is not None and cpu.target.type is TargetType.VALUE
    assert cpu.target.value == 50
    assert web.scaling.schedules[0].time_zone.key == "America/New_York"
    workers = docs["WorkerPool"]
    assert workers.queue is not None
    assert workers.queue.backlog_per_worker == pytest.approx(100)  # 10 s / 0.1 s
    backlog = workers.scaling.metrics[0]
    assert backlog.name == "backlog"
    assert backlog.target is not None and backlog.target.type is TargetType.AVERAGE_VALUE
    assert workers.scaling.min_capacity == 0
    replicas = docs["ReadReplicaPool"]
    assert isinstance(replicas.target, DBInstanceTarget)
    assert replicas.target.engine == "postgres"
    assert replicas.target.template.availability_zones == ("us-east-1a", "us-east-1b", "us-east-1c")
    assert isinstance(docs["CachePool"].target, ReplicationGroupTarget)


def test_other_examples_types() -> None:
    dry = parse_resource(load_docs(EXAMPLES / "webtier-deployment.yaml")[0])
    assert dry.scaling.mode is Mode.DRY_RUN
    assert isinstance(dry.target, WorkloadTarget) and dry.target.kind == "Deployment"
    aurora = parse_resource(load_docs(EXAMPLES / "readreplicapool-aurora.yaml")[0])
    assert isinstance(aurora.target, DBClusterTarget)
    assert aurora.target.template.promotion_tier == 15


def test_specs_are_frozen() -> None:
    res = parse_resource(example("WebTier"))
    with pytest.raises(AttributeError):
        res.scaling.min_capacity = 3  # type: ignore[misc]


@pytest.mark.parametrize("bad", [None, [], "text", 42])
def test_non_mapping_documents(bad: Any) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_resource(bad)
    assert "must be a mapping" in str(info.value)


def test_unknown_kind_suggests_the_right_one() -> None:
    doc = mutate(example("WebTier"), "kind", "Webtier")
    with pytest.raises(InvalidSpec) as info:
        parse_resource(doc)
    assert "did you mean 'WebTier'?" in str(info.value)


def test_every_problem_is_reported_not_just_the_first() -> None:
    doc = example("WebTier")
    doc = mutate(doc, "spec.minCapacity", "x")
    doc = mutate(doc, "spec.tolerance", -1)
    doc = mutate(doc, "spec.extra", 1)
    with pytest.raises(InvalidSpec) as info:
        parse_resource(doc)
    assert {e.path for e in info.value.errors} == {
        "spec.minCapacity",
        "spec.tolerance",
        "spec.extra",
    }
