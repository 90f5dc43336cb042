"""Fixtures that start real protocol peers: the Kubernetes control plane.

The control plane (kube-apiserver + etcd built from the upstream Go modules by
`make controlplane`) starts once per test session on loopback and is torn down
at the end, also when tests fail; its processes also die with the test process
(PR_SET_PDEATHSIG). Without Go the tests that need it are skipped with a
message saying how to get it, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from stackscaler.devtools import controlplane as cp


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true requires the control plane: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def controlplane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cp.ControlPlane]:
    try:
        binaries = cp.build(log=print)
    except cp.ControlPlaneUnavailable as exc:
        _unavailable(str(exc))
    directory = tmp_path_factory.mktemp("controlplane")
    plane = cp.start(directory, binaries=binaries, die_with_parent=True)
    try:
        yield plane
    finally:
        cp.stop(directory)


@pytest.fixture(scope="session")
def api_client(controlplane: cp.ControlPlane) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(controlplane.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(api_client: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test (namespaces are never deleted: no controller manager)."""
    name = (
        "t-"
        + request.node.name.lower().replace("_", "-")[:40].strip("-")
        + "-"
        + os.urandom(2).hex()
    )
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name)
    client.CoreV1Api(api_client).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    yield name


class Kubectl:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            input=stdin,
            timeout=60,
            check=False,
        )
        # kubectl older than the server warns about version skew; it is not an error
        result.stderr = "\n".join(
            ln for ln in result.stderr.splitlines() if not ln.startswith("Warning: version")
        )
        return result


@pytest.fixture(scope="session")
def kubectl(controlplane: cp.ControlPlane) -> Kubectl:
    if (
        subprocess.run(
            ["kubectl", "version", "--client"], capture_output=True, check=False
        ).returncode
        != 0
    ):
        _unavailable("kubectl is not installed")
    return Kubectl(controlplane.kubeconfig)


def custom(api_client: client.ApiClient) -> Any:
    return client.CustomObjectsApi(api_client)
