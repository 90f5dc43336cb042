"""The CRDs: generated from one source, structural, documented, and their CEL rules
agree with the Python twins the offline validator runs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import celpy
import celpy.adapter
import pytest
import yaml

from stackscaler.cli.commands import render_chart_crds, render_crds
from stackscaler.model.apidoc import render_api_reference
from stackscaler.model.crds import KINDS, all_crds, resource_schema
from stackscaler.model.schema import RULE_CHECKS, iter_schemas
from stackscaler.model.validation import validate_document, validate_value
from tests.conftest import EXAMPLES, ROOT, load_docs
from tests.unit.spec_cases import CASES


def test_committed_crds_equal_generated() -> None:
    rendered = render_crds()
    committed = {p.name for p in (ROOT / "crds").glob("*.yaml")}
    assert committed == set(rendered), "crds/ has extra or missing files: run `make crds`"
    for name, text in rendered.items():
        on_disk = (ROOT / "crds" / name).read_text(encoding="utf-8")
        assert on_disk == text, f"crds/{name} is out of date: run `make crds`"


def test_chart_crd_templates_equal_generated() -> None:
    rendered = render_chart_crds()
    chart = ROOT / "charts" / "stackscaler" / "templates" / "crds"
    assert {p.name for p in chart.glob("*.yaml")} == set(rendered), "run `make crds`"
    for name, text in rendered.items():
        assert (chart / name).read_text(encoding="utf-8") == text, f"{name}: run `make crds`"
        assert text.startswith("{{- if .Values.crds.install }}")
        assert "helm.sh/resource-policy: keep" in text


def test_committed_api_reference_equals_generated() -> None:
    text = render_api_reference()
    assert (ROOT / "docs" / "api.md").read_text(encoding="utf-8") == text, (
        "docs/api.md is out of date: run `make crds`"
    )
    for kind in KINDS:
        assert f"## {kind}" in text
    assert "| `spec.behavior.scaleIn.cooldownSeconds` | integer | `120` | >= 0; <= 86400 |" in text


@pytest.mark.parametrize("kind", list(KINDS))
def test_crd_shape(kind: str) -> None:
    crd = all_crds()[f"stackscaler.dev_{KINDS[kind].plural}.yaml"]
    names = crd["spec"]["names"]
    assert names["kind"] == kind
    assert names["categories"] == ["stackscaler"]
    assert names["shortNames"] == list(KINDS[kind].short_names)
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Target", "Min", "Max", "Current", "Desired", "Last Scale", "Age"]


def _walk(schema: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    return iter(iter_schemas(schema))


@pytest.mark.parametrize("kind", list(KINDS))
def test_schema_is_structural_and_documented(kind: str) -> None:
    for path, node in _walk(resource_schema(kind)):
        if path == ".metadata":
            assert node == {"type": "object"}
            continue
        assert node.get("type"), f"{kind}{path}: every node needs a type (structural schema)"
        if path:
            assert node.get("description"), f"{kind}{path}: missing description"
        if node["type"] == "array":
            # bounded lists keep the API server's CEL cost estimate finite
            assert "maxItems" in node, f"{kind}{path}: arrays need maxItems"
        if node["type"] == "string" and "enum" not in node and path.count(".") > 1:
            assert "maxLength" in node or "pattern" in node or "format" in node, (
                f"{kind}{path}: bound the string"
            )
        # defaults must themselves be valid (the API server rejects a CRD otherwise)
        for rule in node.get("x-kubernetes-validations", ()):
            assert rule["rule"] in RULE_CHECKS
            assert rule["message"]


def test_every_defaulted_value_validates() -> None:
    for kind in KINDS:
        for path, node in _walk(resource_schema(kind)):
            if "default" in node:
                _, errors = validate_value(node, node["default"], path)
                assert errors == [], f"{kind}{path}: default is invalid: {errors}"


# --- CEL agreement -----------------------------------------------------------

_ENV = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


def _cel(expr: str, node: Any) -> Any:
    if expr not in _PROGRAMS:
        _PROGRAMS[expr] = _ENV.program(_ENV.compile(expr))
    return _PROGRAMS[expr].evaluate({"self": celpy.adapter.json_to_cel(node)})


def _as_k8s_types(schema: Mapping[str, Any], value: Any) -> Any:
    """JSON as the API server hands it to CEL: `number` fields are doubles."""
    t = schema.get("type")
    if t == "number" and isinstance(value, int):
        return float(value)
    if t == "object" and isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: _as_k8s_types(props[k], v) if k in props else v for k, v in value.items()}
    if t == "array" and isinstance(value, list):
        return [_as_k8s_types(schema["items"], v) for v in value]
    return value


def _rule_sites(schema: Mapping[str, Any], value: Any) -> Iterator[tuple[str, Any]]:
    """(rule, node) for every rule of the schema applied to the value's nodes."""
    for rule in schema.get("x-kubernetes-validations", ()):
        yield rule["rule"], value
    if isinstance(value, dict):
        for k, v in value.items():
            sub = schema.get("properties", {}).get(k)
            if sub is not None:
                yield from _rule_sites(sub, v)
    elif isinstance(value, list) and "items" in schema:
        for v in value:
            yield from _rule_sites(schema["items"], v)


def _corpus() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in load_docs(path):
            if doc["kind"] in KINDS:
                yield path.name, doc
    for case in CASES:
        yield case.id, case.make()


def test_cel_rules_agree_with_python_twins() -> None:
    """Wherever both are defined (no type errors in the node), CEL and Python agree;
    every rule is exercised, and every rule is seen both passing and failing."""
    results: dict[str, set[bool]] = {expr: set() for expr in RULE_CHECKS}
    for label, doc in _corpus():
        out, _ = validate_document(doc)
        if out is None:
            continue
        schema = resource_schema(out["kind"])
        for expr, node in _rule_sites(schema, _as_k8s_types(schema, out)):
            try:
                py = RULE_CHECKS[expr].check(node)
            except (TypeError, KeyError):
                continue
            cel = _cel(expr, node)
            if isinstance(cel, celpy.CELEvalError):
                continue
            assert bool(cel) == py, f"{label}: CEL says {cel}, Python says {py} for {expr!r}"
            results[expr].add(py)
    partial = {expr: seen for expr, seen in results.items() if seen != {True, False}}
    assert not partial, f"rules not seen both passing and failing: {partial}"


def test_rules_hold_on_raw_defaults() -> None:
    """The API server checks an object's `default` against its CEL rules *without* applying
    the nested defaults first (found against the real server: a rule reading
    `self.action` on `default: {}` made it reject the CRD). Every rule must hold there."""
    checked = 0
    for kind in KINDS:
        schema = resource_schema(kind)
        for path, node in _walk(schema):
            if "default" not in node:
                continue
            for rule in node.get("x-kubernetes-validations", ()):
                result = _cel(rule["rule"], _as_k8s_types(node, node["default"]))
                assert not isinstance(result, celpy.CELEvalError), f"{kind}{path}: {result}"
                assert bool(result), f"{kind}{path}: default violates {rule['rule']!r}"
                checked += 1
    assert checked > 0


def test_generated_yaml_is_loadable_and_ordered() -> None:
    for name, text in render_crds().items():
        body = yaml.safe_load(text)
        assert body["kind"] == "CustomResourceDefinition"
        assert list(body) == ["apiVersion", "kind", "metadata", "spec"], name
