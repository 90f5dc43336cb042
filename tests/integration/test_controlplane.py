"""What only a real API server can answer: CRD installation, schema and CEL
validation, the status subresource, printer columns, server-side apply, RBAC."""

from __future__ import annotations

import copy
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stackscaler.devtools.controlplane import ControlPlane
from stackscaler.kube import KubeEvents
from stackscaler.model.crds import KINDS
from stackscaler.model.schema import RULE_CHECKS
from stackscaler.model.validation import validate_document
from stackscaler.reconcile import Ref
from tests.conftest import EXAMPLES, example, load_docs
from tests.integration.conftest import Kubectl
from tests.integration.rbac import client_as_role
from tests.unit.spec_cases import CASES, Case

pytestmark = pytest.mark.controlplane

GROUP, VERSION = "stackscaler.dev", "v1alpha1"


def _plural(kind: str) -> str:
    return KINDS[kind].plural


def _create(
    api: client.ApiClient, doc: dict[str, Any], namespace: str, *, dry_run: bool = False
) -> dict[str, Any]:
    body = copy.deepcopy(doc)
    if isinstance(body.get("metadata"), dict):
        body["metadata"]["namespace"] = namespace
    kind = body.get("kind", "WebTier")
    kwargs: dict[str, Any] = {"field_validation": "Strict"}
    if dry_run:
        kwargs["dry_run"] = "All"
    return client.CustomObjectsApi(api).create_namespaced_custom_object(  # type: ignore[no-any-return]
        GROUP, VERSION, namespace, _plural(kind if kind in KINDS else "WebTier"), body, **kwargs
    )


def test_every_crd_is_established(api_client: client.ApiClient) -> None:
    crds = client.ApiextensionsV1Api(api_client).list_custom_resource_definition().items
    ours = {c.metadata.name: c for c in crds if c.spec.group == GROUP}
    assert set(ours) == {f"{k.plural}.{GROUP}" for k in KINDS.values()}
    for name, crd in ours.items():
        conditions = {c.type: c.status for c in crd.status.conditions}
        assert conditions.get("Established") == "True", name
        assert conditions.get("NamesAccepted") == "True", name


def test_kubectl_apply_stack_and_printer_columns(kubectl: Kubectl) -> None:
    applied = kubectl("apply", "-f", str(EXAMPLES / "stack.yaml"))
    assert applied.returncode == 0, applied.stderr
    got = kubectl("get", "stackscaler", "-A")
    assert got.returncode == 0, got.stderr
    headers = [ln.split() for ln in got.stdout.splitlines() if ln.startswith("NAMESPACE")]
    assert headers and all(
        h
        == [
            "NAMESPACE",
            "NAME",
            "TARGET",
            "MIN",
            "MAX",
            "CURRENT",
            "DESIRED",
            "LAST",
            "SCALE",
            "AGE",
        ]
        for h in headers
    ), got.stdout
    for row in (
        "webtier.stackscaler.dev/web",
        "workerpool.stackscaler.dev/workers",
        "readreplicapool.stackscaler.dev/shop-db-readers",
        "cachepool.stackscaler.dev/sessions",
        "tablecapacity.stackscaler.dev/sessions-read",
        "tablecapacity.stackscaler.dev/sessions-write",
    ):
        assert row in got.stdout
    web = next(ln.split() for ln in got.stdout.splitlines() if "webtier.stackscaler.dev/web" in ln)
    assert web[2:5] == ["shop-web", "2", "40"]
    short = kubectl("get", "wt,wp,rrp,cp,tc", "-n", "shop", "-o", "name")
    assert short.returncode == 0, short.stderr
    assert len(short.stdout.split()) == 6
    wide = kubectl("get", "wt", "web", "-n", "shop", "-o", "wide")
    assert "AutoScalingGroup" in wide.stdout and "Active" in wide.stdout


def test_server_side_apply_of_every_example(kubectl: Kubectl, namespace: str) -> None:
    applied = set()
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in load_docs(path):
            if doc["kind"] not in KINDS:
                continue
            applied.add((doc["kind"], doc["metadata"]["name"]))
            doc["metadata"]["namespace"] = namespace
            r = kubectl(
                "apply",
                "--server-side",
                "--field-manager=stackscaler-test",
                "-f",
                "-",
                stdin=yaml.safe_dump(doc),
            )
            assert r.returncode == 0, f"{path.name}: {r.stderr}"
    listed = kubectl("get", "stackscaler", "-n", namespace, "-o", "name")
    assert len(listed.stdout.split()) == len(applied) >= 10


INVALID_BY_KUBECTL = [
    ("min-above-max", {"minCapacity": 50}, "minCapacity must be <= maxCapacity"),
    (
        "negative-cooldown",
        {"behavior": {"scaleIn": {"cooldownSeconds": -5}}},
        "spec.behavior.scaleIn.cooldownSeconds",
    ),
    ("missing-target", {"target": None}, "spec.target: Required value"),
    ("unknown-field", {"behaviour": {}}, 'unknown field "spec.behaviour"'),
]


@pytest.mark.parametrize(
    ("change", "message"),
    [(c, m) for _, c, m in INVALID_BY_KUBECTL],
    ids=[i for i, _, _ in INVALID_BY_KUBECTL],
)
def test_kubectl_rejects_invalid_resources(
    kubectl: Kubectl, namespace: str, change: dict[str, Any], message: str
) -> None:
    doc = example("WebTier")
    doc["metadata"]["namespace"] = namespace
    for key, value in change.items():
        if value is None:
            del doc["spec"][key]
        elif isinstance(value, dict) and isinstance(doc["spec"].get(key), dict):
            doc["spec"][key] = {**doc["spec"][key], **value}
        else:
            doc["spec"][key] = value
    r = kubectl("apply", "--validate=strict", "-f", "-", stdin=yaml.safe_dump(doc))
    assert r.returncode != 0
    assert message in r.stderr, r.stderr


def _rejection(exc: ApiException) -> tuple[set[str], str]:
    body = json.loads(exc.body)
    causes = (body.get("details") or {}).get("causes") or []
    return {c.get("field", "") for c in causes}, body.get("message", "")


def _rule_message(case: Case) -> str | None:
    """The static CEL message the server must show, when the case is a CEL rule."""
    for rule in RULE_CHECKS.values():
        if (
            rule.message in case.message
            or case.message in rule.message
            or (rule.explain is not None and case.message.split(" (")[0] in rule.message)
        ):
            return rule.message
    return None


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_server_and_offline_validation_agree(
    api_client: client.ApiClient, namespace: str, case: Case
) -> None:
    doc = case.make()
    if case.offline_only:
        # the API server cannot check this; the operator's model does (the offline test)
        _create(api_client, doc, namespace, dry_run=True)
        return
    with pytest.raises(ApiException) as info:
        _create(api_client, doc, namespace, dry_run=True)
    assert info.value.status in (400, 422), info.value.body
    fields, message = _rejection(info.value)
    assert (
        case.path in fields
        or case.path in message
        or (case.path == "apiVersion" and 'in version "v1" cannot be handled' in message)
    ), f"server reported {fields} / {message!r}, offline {case.path}"
    expected = _rule_message(case)
    if expected is not None and "some validation rules were not checked" not in message:
        assert expected in message


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_server_accepts_every_example(
    api_client: client.ApiClient, namespace: str, path: Any
) -> None:
    for doc in load_docs(path):
        if doc["kind"] in KINDS:
            _create(api_client, doc, namespace, dry_run=True)


def test_server_applies_the_same_defaults(api_client: client.ApiClient, namespace: str) -> None:
    doc = example("WebTier")
    del doc["spec"]["behavior"]
    created = _create(api_client, doc, namespace)
    offline, errors = validate_document(doc)
    assert errors == [] and offline is not None
    assert created["spec"] == offline["spec"]


def test_status_subresource_and_generation(api_client: client.ApiClient, namespace: str) -> None:
    api = client.CustomObjectsApi(api_client)
    created = _create(api_client, example("WebTier"), namespace)
    name = created["metadata"]["name"]
    assert created["metadata"]["generation"] == 1
    status = {
        "status": {
            "currentCapacity": 3,
            "desiredCapacity": 4,
            "history": {"version": 1, "consecutiveFailures": 2},
        }
    }
    after = api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "webtiers", name, status
    )
    assert after["metadata"]["generation"] == 1
    assert after["status"]["desiredCapacity"] == 4
    assert after["status"]["history"]["consecutiveFailures"] == 2  # preserved, not pruned
    # status sent to the main resource is ignored
    ignored = api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "webtiers", name, {"status": {"desiredCapacity": 99}}
    )
    assert ignored["status"]["desiredCapacity"] == 4
    assert ignored["metadata"]["generation"] == 1
    changed = api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "webtiers", name, {"spec": {"maxCapacity": 30}}
    )
    assert changed["metadata"]["generation"] == 2
    assert changed["status"]["desiredCapacity"] == 4


def test_rbac_minimal_role(
    api_client: client.ApiClient, namespace: str, controlplane: ControlPlane
) -> None:
    _create(api_client, example("WebTier"), namespace)
    rules = [
        client.V1PolicyRule(
            api_groups=[GROUP], resources=["webtiers"], verbs=["get", "list", "watch"]
        ),
        client.V1PolicyRule(
            api_groups=[GROUP], resources=["webtiers/status"], verbs=["get", "patch", "update"]
        ),
    ]
    with client_as_role(api_client, controlplane, namespace, "scaler", rules) as sa_client:
        objs = client.CustomObjectsApi(sa_client)
        listed = objs.list_namespaced_custom_object(GROUP, VERSION, namespace, "webtiers")
        assert [i["metadata"]["name"] for i in listed["items"]] == ["web"]
        patched = objs.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "webtiers", "web", {"status": {"desiredCapacity": 5}}
        )
        assert patched["status"]["desiredCapacity"] == 5
        denied = [
            lambda: objs.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, "webtiers", "web", {"spec": {"maxCapacity": 9}}
            ),
            lambda: client.CoreV1Api(sa_client).list_namespaced_secret(namespace),
            lambda: objs.list_namespaced_custom_object(GROUP, VERSION, "shop", "webtiers"),
            lambda: objs.list_namespaced_custom_object(GROUP, VERSION, namespace, "workerpools"),
        ]
        for call in denied:
            with pytest.raises(ApiException) as info:
                call()
            assert info.value.status == 403


async def test_a_keyed_event_is_posted_once_and_a_long_name_still_fits(
    api_client: client.ApiClient, namespace: str
) -> None:
    """One scale action, one Event: the replica that finds the action pending after a
    handover posts it under the same name, and the API server refuses the second."""
    long_name = "w" * 250  # a resource name at the limit: the Event name is cut to fit
    with ThreadPoolExecutor(2) as pool:
        events = KubeEvents(api_client, pool)
        for name in ("web", long_name):
            ref = Ref("WebTier", namespace, name, "uid-1")
            await events.record(ref, "Normal", "ScaledOut", "3 -> 6: cpu", key="k" * 20)
            await events.record(ref, "Normal", "ScaledOut", "3 -> 6: again", key="k" * 20)
            await events.record(ref, "Normal", "ScaledOut", "6 -> 9: cpu", key="j" * 20)
            await events.record(ref, "Normal", "ScaledIn", "no key, twice")
            await events.record(ref, "Normal", "ScaledIn", "no key, twice")
    posted = client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    for name in ("web", long_name):
        mine = sorted(e.message for e in posted if e.involved_object.name == name)
        assert mine == ["3 -> 6: cpu", "6 -> 9: cpu", "no key, twice", "no key, twice"], mine
    assert all(len(e.metadata.name) <= 253 for e in posted)
    one = next(e for e in posted if e.message == "3 -> 6: cpu" and e.involved_object.name == "web")
    assert (one.type, one.reason, one.count) == ("Normal", "ScaledOut", 1)
    assert one.metadata.name == f"web.{'k' * 20}"
    assert (one.involved_object.kind, one.involved_object.uid) == ("WebTier", "uid-1")
    assert one.involved_object.api_version == f"{GROUP}/{VERSION}"
    assert one.first_timestamp is not None and one.last_timestamp is not None
    assert one.source.component == "stackscaler"
    assert one.reporting_component == f"{GROUP}/operator"
