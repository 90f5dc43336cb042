"""The /scale actuator against the real API server.

No controllers run here, so no workload's status ever changes by itself; the
tests that need replicas ready write the status themselves through the status
subresource, as the Deployment and StatefulSet controllers do.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from stackscaler.actuators.k8s_scale import K8sScaleActuator
from stackscaler.devtools.controlplane import ControlPlane
from stackscaler.errors import AccessDenied, TargetNotFound
from stackscaler.model.spec import Resource, parse_resource
from tests.integration.rbac import client_as_role

pytestmark = pytest.mark.controlplane


def _resource(namespace: str, kind: str, name: str) -> Resource:
    return parse_resource(
        {
            "apiVersion": "stackscaler.dev/v1alpha1",
            "kind": "WebTier",
            "metadata": {"name": f"tier-{name}", "namespace": namespace},
            "spec": {
                "target": {"kind": kind, "name": name},
                "maxCapacity": 10,
                "metrics": [
                    {
                        "name": "rps",
                        "target": {"value": 10},
                        "prometheus": {"serverAddress": "http://p:9090", "query": "rps"},
                    }
                ],
            },
        }
    )


def _pod_template(name: str) -> client.V1PodTemplateSpec:
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels={"app": name}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="app", image="nginx")]),
    )


def _workloads(api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(api)
    selector = client.V1LabelSelector(match_labels={"app": "web"})
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=2, selector=selector, template=_pod_template("web")
            ),
        ),
    )
    apps.create_namespaced_stateful_set(
        namespace,
        client.V1StatefulSet(
            metadata=client.V1ObjectMeta(name="cache"),
            spec=client.V1StatefulSetSpec(
                replicas=3,
                selector=client.V1LabelSelector(match_labels={"app": "cache"}),
                service_name="cache",
                template=_pod_template("cache"),
            ),
        ),
    )


@pytest.mark.parametrize(
    ("kind", "name", "start"), [("Deployment", "web", 2), ("StatefulSet", "cache", 3)]
)
async def test_observe_and_apply(
    api_client: client.ApiClient, namespace: str, kind: str, name: str, start: int
) -> None:
    _workloads(api_client, namespace)
    actuator = K8sScaleActuator(api_client)
    try:
        res = _resource(namespace, kind, name)
        cap = await actuator.observe(res)
        # no controllers run here: nothing is ready, everything asked for is pending
        assert (cap.current, cap.ready, cap.pending) == (start, 0, start)
        same = await actuator.apply(res, start, cap)
        assert not same.changed
        assert actuator.calls["patch_scale"] == 0
        result = await actuator.apply(res, 7, cap)
        assert result.changed and result.requested == 7
        assert (await actuator.observe(res)).current == 7
        assert actuator.calls["patch_scale"] == 1
        assert actuator.calls["get_workload"] == 2
    finally:
        await actuator.close()
    apps = client.AppsV1Api(api_client)
    read: Any = (
        apps.read_namespaced_deployment
        if kind == "Deployment"
        else apps.read_namespaced_stateful_set
    )
    assert read(name, namespace).spec.replicas == 7  # the workload itself changed


async def test_missing_workload(api_client: client.ApiClient, namespace: str) -> None:
    actuator = K8sScaleActuator(api_client)
    try:
        with pytest.raises(TargetNotFound) as info:
            await actuator.observe(_resource(namespace, "Deployment", "absent"))
        assert f"Deployment {namespace}/absent does not exist" in str(info.value)
    finally:
        await actuator.close()


def _set_status(
    api: client.ApiClient, namespace: str, kind: str, name: str, status: dict[str, Any]
) -> None:
    """Write a workload's status as its controller would (none runs here)."""
    apps = client.AppsV1Api(api)
    patch: Any = (
        apps.patch_namespaced_deployment_status
        if kind == "Deployment"
        else apps.patch_namespaced_stateful_set_status
    )
    patch(name, namespace, {"status": status}, _content_type="application/merge-patch+json")


@pytest.mark.parametrize(("kind", "name"), [("Deployment", "web"), ("StatefulSet", "cache")])
async def test_ready_is_the_available_replicas_and_the_rest_are_starting(
    api_client: client.ApiClient, namespace: str, kind: str, name: str
) -> None:
    _workloads(api_client, namespace)
    actuator = K8sScaleActuator(api_client)
    res = _resource(namespace, kind, name)
    try:
        await actuator.apply(res, 4, await actuator.observe(res))
        # 4 asked for, 3 pods exist, 3 ready, 2 of them ready for minReadySeconds
        _set_status(
            api_client,
            namespace,
            kind,
            name,
            {"replicas": 3, "readyReplicas": 3, "availableReplicas": 2, "observedGeneration": 2},
        )
        cap = await actuator.observe(res)
        assert (cap.current, cap.ready, cap.starting, cap.removing) == (4, 2, 2, 0)
        assert "availableReplicas 2" in cap.detail and "readyReplicas 3" in cap.detail

        # scaled in to 2 while 3 pods still run: 2 ready, 1 leaving
        await actuator.apply(res, 2, cap)
        _set_status(api_client, namespace, kind, name, {"availableReplicas": 3})
        cap = await actuator.observe(res)
        assert (cap.current, cap.ready, cap.starting, cap.removing) == (2, 2, 0, 1)
    finally:
        await actuator.close()


async def test_forbidden_names_the_permission(
    api_client: client.ApiClient, namespace: str, controlplane: ControlPlane
) -> None:
    _workloads(api_client, namespace)
    rules = [client.V1PolicyRule(api_groups=["apps"], resources=["deployments"], verbs=["get"])]
    with client_as_role(api_client, controlplane, namespace, "reader", rules) as limited:
        actuator = K8sScaleActuator(limited)
        try:
            res = _resource(namespace, "Deployment", "web")
            cap = await actuator.observe(res)  # get is allowed
            with pytest.raises(AccessDenied) as info:
                await actuator.apply(res, 5, cap)
            assert "'patch' on 'deployments/scale'" in str(info.value)
        finally:
            await actuator.close()


async def test_reading_the_workload_needs_get_on_it_not_only_on_scale(
    api_client: client.ApiClient, namespace: str, controlplane: ControlPlane
) -> None:
    """The grant before capacity in flight (get and patch on /scale only) is not enough."""
    _workloads(api_client, namespace)
    rules = [
        client.V1PolicyRule(
            api_groups=["apps"], resources=["statefulsets/scale"], verbs=["get", "patch"]
        )
    ]
    with client_as_role(api_client, controlplane, namespace, "scaler", rules) as limited:
        actuator = K8sScaleActuator(limited)
        try:
            with pytest.raises(AccessDenied) as info:
                await actuator.observe(_resource(namespace, "StatefulSet", "cache"))
            assert "'get' on 'statefulsets'" in str(info.value)
        finally:
            await actuator.close()
