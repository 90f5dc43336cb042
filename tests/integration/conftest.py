"""Fixtures that start real protocol peers: the Kubernetes control plane.

The control plane (kube-apiserver + etcd built from the upstream Go modules by
`make controlplane`) starts once per test session on loopback and is torn down
at the end, also when tests fail; its processes also die with the test process
(PR_SET_PDEATHSIG). Without Go the tests that need it are skipped with a
message saying how to get it, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from kubernetes import client, config

from stackscaler.aws import AwsCaller, AwsSettings
from stackscaler.devtools import controlplane as cp
from stackscaler.devtools.controlplane import exit_with_parent
from tests.integration.netutil import free_port
from tests.integration.prometheus_fixtures import (  # noqa: F401 - fixtures
    exporter_fixture,
    fake_prometheus_fixture,
    https_fake_prometheus_fixture,
    prometheus_fixture,
)

REGION = "us-east-1"


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
    stem = "t-" + request.node.name.lower()[:40]
    stem = "".join(c if c.isalnum() else "-" for c in stem).strip("-")
    core = client.CoreV1Api(api_client)
    for _ in range(5):  # 40 random bits: a clash is rare, and retried
        name = f"{stem}-{os.urandom(5).hex()}"
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        except client.exceptions.ApiException as exc:
            if exc.status == 409:
                continue
            raise
        yield name
        return
    raise RuntimeError(f"could not create a unique namespace for {stem}")


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


# --- AWS stand-in: moto in server mode on loopback --------------------------------


class MotoServer:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def reset(self) -> None:
        req = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's HTTP server in its own process on a free loopback port."""
    # the venv's moto (pinned by the test extra) first, not whatever is on PATH
    venv_exe = Path(sys.executable).parent / "moto_server"
    exe = str(venv_exe) if venv_exe.exists() else (shutil.which("moto_server") or "moto_server")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # a crashed pytest worker takes its moto with it
            preexec_fn=exit_with_parent,  # noqa: PLW1509 - only prctl, no locks
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
    try:
        yield MotoServer(endpoint)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def aws_env(moto_server: MotoServer) -> Iterator[dict[str, str]]:
    """Fake credentials and region for the whole session (never real AWS)."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "STACKSCALER_AWS_ENDPOINT_URL": moto_server.endpoint,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def moto(moto_server: MotoServer, aws_env: dict[str, str]) -> MotoServer:
    """A clean moto state for each test."""
    moto_server.reset()
    return moto_server


@pytest.fixture
async def aws(moto: MotoServer) -> AsyncIterator[AwsCaller]:
    """The operator's AWS caller, pointed at moto."""
    caller = AwsCaller(AwsSettings(default_region=REGION, endpoint_url=moto.endpoint))
    try:
        yield caller
    finally:
        caller.close()


@pytest.fixture
def boto(moto: MotoServer) -> Any:
    """A plain boto3 factory for arranging test fixtures in moto."""

    def make(service: str, region: str = REGION) -> Any:
        return boto3.client(service, region_name=region, endpoint_url=moto.endpoint)

    return make
