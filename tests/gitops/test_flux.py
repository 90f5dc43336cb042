"""The Flux example (docs/gitops/flux): it parses, its references hold, its values validate.

* Every document parses and is of a kind and API version Flux v2 serves
  (GitRepository source.toolkit.fluxcd.io/v1, Kustomization
  kustomize.toolkit.fluxcd.io/v1, HelmRelease helm.toolkit.fluxcd.io/v2) or a kustomize
  config, with the fields those APIs require.
* What it names exists: each sourceRef is the GitRepository of the example, each path a
  directory of this repository that kustomize (kubectl's) builds, the chart path holds
  charts/stackscaler, dependsOn names a Kustomization of the example.
* The HelmRelease's values validate against charts/stackscaler/values.schema.json, with
  jsonschema and with the pinned helm (``helm lint --strict`` and ``helm template``,
  whose render carries them).
* The tiers, built by kustomize, are valid to ``stackscaler validate`` and to the real
  API server (a server-side dry-run apply as kustomize-controller, CRD schema and CEL
  rules included).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.e2e.conftest import Kube
from tests.packaging.test_chart import CHART, Helm, helm, one

__all__ = ["helm"]  # the pinned helm fixture, found by pytest here

ROOT = Path(__file__).resolve().parents[2]
FLUX = ROOT / "docs" / "gitops" / "flux"
STACKSCALER = Path(sys.executable).parent / "stackscaler"

SERVED = {
    "GitRepository": "source.toolkit.fluxcd.io/v1",
    "Kustomization": "kustomize.toolkit.fluxcd.io/v1",
    "HelmRelease": "helm.toolkit.fluxcd.io/v2",
}
KUSTOMIZE_CONFIG = "kustomize.config.k8s.io/v1beta1"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _flux() -> dict[tuple[str, str], dict[str, Any]]:
    """Every Flux object of the example by (kind, name)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(FLUX.rglob("*.yaml")):
        for doc in _docs(path):
            if doc["kind"] in SERVED and doc["apiVersion"] == SERVED[doc["kind"]]:
                key = (doc["kind"], doc["metadata"]["name"])
                assert key not in found, key
                found[key] = doc
    return found


def _kustomize(path: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize``: kubectl's built-in kustomize, as Flux builds a path."""
    if shutil.which("kubectl") is None:
        message = "kubectl is not installed (its kustomize builds the Flux paths)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires {message}", pytrace=False)
        pytest.skip(message)
    out = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _helmrelease() -> dict[str, Any]:
    return _flux()[("HelmRelease", "stackscaler")]


def test_every_document_parses_and_is_served_by_flux_or_kustomize() -> None:
    files = sorted(FLUX.rglob("*.yaml"))
    assert {p.relative_to(FLUX).as_posix() for p in files} == {
        "stackscaler.yaml",
        "operator/kustomization.yaml",
        "operator/helmrelease.yaml",
        "tiers/kustomization.yaml",
        "tiers/shop.yaml",
    }
    for path in files:
        for doc in _docs(path):
            kind, api = doc["kind"], doc["apiVersion"]
            if path.name == "kustomization.yaml":
                assert (api, kind) == (KUSTOMIZE_CONFIG, "Kustomization"), path
            elif path.parent.name == "tiers":
                assert api in ("v1", "stackscaler.dev/v1alpha1"), (path, api)
            else:
                assert SERVED.get(kind) == api, (path, kind, api)
    assert sorted(_flux()) == [
        ("GitRepository", "stackscaler"),
        ("HelmRelease", "stackscaler"),
        ("Kustomization", "stackscaler-operator"),
        ("Kustomization", "stackscaler-tiers"),
    ]


def test_required_fields_and_references_resolve_in_this_repository() -> None:
    flux = _flux()
    source = flux[("GitRepository", "stackscaler")]
    assert source["spec"]["interval"] and source["spec"]["url"].startswith("https://")
    assert source["spec"]["ref"]["branch"]
    namespace = source["metadata"]["namespace"]
    kustomizations = {n: d for (k, n), d in flux.items() if k == "Kustomization"}
    for name, ks in kustomizations.items():
        spec = ks["spec"]
        assert ks["metadata"]["namespace"] == namespace, name
        assert spec["interval"] and isinstance(spec["prune"], bool), name  # both required
        assert spec["sourceRef"] == {"kind": "GitRepository", "name": "stackscaler"}, name
        path = ROOT / spec["path"]
        assert spec["path"].startswith("./") and (path / "kustomization.yaml").is_file(), name
        assert _kustomize(path), name  # kustomize builds it
        for dep in spec.get("dependsOn", []):
            assert dep["name"] in kustomizations, (name, dep)
    assert kustomizations["stackscaler-tiers"]["spec"]["dependsOn"] == [
        {"name": "stackscaler-operator"}
    ]
    # the operator Kustomization applies the HelmRelease and waits for it
    built = _kustomize(ROOT / kustomizations["stackscaler-operator"]["spec"]["path"])
    assert built == [_helmrelease()]
    assert kustomizations["stackscaler-operator"]["spec"]["wait"] is True
    chart = _helmrelease()["spec"]["chart"]["spec"]
    assert chart["sourceRef"] == {"kind": "GitRepository", "name": "stackscaler"}
    assert (ROOT / chart["chart"]).resolve() == CHART
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["name"] == "stackscaler"
    assert chart["reconcileStrategy"] in ("ChartVersion", "Revision")
    assert _helmrelease()["spec"]["interval"]


def _coalesce(defaults: Any, override: Any) -> Any:
    """Helm's merge of a release's values over the chart's: maps deep, the rest replaced."""
    if isinstance(defaults, dict) and isinstance(override, dict):
        out = dict(defaults)
        for k, v in override.items():
            out[k] = _coalesce(defaults.get(k), v)
        return out
    return copy.deepcopy(override)


def test_helmrelease_values_validate_against_the_chart_schema() -> None:
    """What helm validates: the chart's values.yaml with the release's values over them."""
    validator = jsonschema.Draft7Validator(json.loads((CHART / "values.schema.json").read_text()))
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    values = _helmrelease()["spec"]["values"]
    validator.validate(_coalesce(defaults, values))
    typo = copy.deepcopy(values)
    typo["image"]["tga"] = typo["image"].pop("tag")
    with pytest.raises(jsonschema.ValidationError, match="tga"):
        validator.validate(_coalesce(defaults, typo))


def test_helm_accepts_and_renders_the_helmrelease_values(helm: Helm) -> None:
    release = _helmrelease()["spec"]
    values = release["values"]
    lint = helm(
        "lint", "--strict", str(CHART), "--namespace", release["targetNamespace"], values=values
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = helm.template(
        values, release=release["releaseName"], namespace=release["targetNamespace"]
    )
    deployment = one(docs, "Deployment")
    assert deployment["metadata"]["namespace"] == "stackscaler"
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/platform/stackscaler:0.1.0"
    args = container["args"]
    assert args[args.index("--namespace") + 1] == "shop"
    account = one(docs, "ServiceAccount")
    assert (
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        == (values["aws"]["irsaRoleArn"])
    )
    assert len([d for d in docs if d["kind"] == "CustomResourceDefinition"]) == 5


@pytest.mark.controlplane
def test_the_tiers_are_valid_to_stackscaler_and_to_the_api_server(
    kube: Kube, namespace: str
) -> None:
    built = _kustomize(FLUX / "tiers")
    assert [(d["kind"], d["metadata"]["name"]) for d in built] == [
        ("Namespace", "shop"),
        ("WebTier", "web"),
        ("WorkerPool", "workers"),
    ]
    text = yaml.safe_dump_all(built)
    out = subprocess.run(
        [str(STACKSCALER), "validate", "-f", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 resource(s) valid" in out.stdout + out.stderr
    # into the test's namespace, as a Kustomization's targetNamespace would put them
    tiers = [
        {**d, "metadata": {**d["metadata"], "namespace": namespace}}
        for d in built
        if d["kind"] != "Namespace"
    ]
    applied = kube.run(
        "apply", "--server-side", "--dry-run=server", "--field-manager", "kustomize-controller",
        "-f", "-", stdin=yaml.safe_dump_all(tiers),
    )  # fmt: skip
    assert applied.count("serverside-applied (server dry run)") == 2, applied
    # the same documents with a spec the CRD's rules refuse are refused: the dry run checks
    bad = copy.deepcopy(tiers[1])
    bad["spec"]["minCapacity"] = bad["spec"]["maxCapacity"] + 1
    refused = kube.kubectl(
        "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(bad)
    )
    assert refused.returncode != 0 and "minCapacity" in refused.stderr, refused.stderr
