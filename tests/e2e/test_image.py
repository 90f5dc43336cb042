"""The operator's image, built from the Dockerfile and run: what is in it, and one scale-out.

``make test`` builds the image with buildah on a base made from Debian's
packages (tests/e2e/image.py says how and why), then:

* checks what the image holds: its user, entrypoint and default arguments as
  configured, `stackscaler --version`, no compiler or build tool, no pip,
  setuptools or wheel in the runtime virtualenv, nothing of the builder (the
  source tree, the wheels, the build virtualenv) and nothing of the host's
  registry proxy (its CA, pip's configuration); it prints the image's size;
* runs `stackscaler run` in a container of it, as uid 10001 with a read-only
  root filesystem and a tmpfs at /tmp, against the control plane and moto,
  through one scale-out of a WebTier, and stops it with SIGTERM as the
  kubelet would: it exits 0.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import stackscaler
from stackscaler.devtools import controlplane as cp
from tests.e2e import image as img
from tests.e2e.conftest import (
    Aws,
    Kube,
    OperatorProcess,
    _tail,
    condition,
    cpu_web_tier,
    event_messages,
    eventually,
    suffix,
)

pytestmark = pytest.mark.controlplane

UID = 10001
HOST_EXTRA_CAS = Path("/usr/local/share/ca-certificates")
PEM = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[img.Image]:
    if missing := img.missing_tools():
        message = f"cannot build the image here, missing: {', '.join(missing)} (make image-tools)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {message}", pytrace=False)
        pytest.skip(message)
    log: list[str] = []
    workdir = tmp_path_factory.mktemp("image")
    base = img.base_image(workdir, log)
    name = f"localhost/stackscaler-test:{os.urandom(4).hex()}"
    built = img.build(base, name, log)
    try:
        yield built
    finally:
        img.remove_image(name)


@pytest.fixture
def box(image: img.Image) -> Iterator[img.Container]:
    with img.container(image.name) as container:
        yield container


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def test_the_image_holds_the_operator_and_nothing_of_its_build(
    image: img.Image, box: img.Container, capsys: pytest.CaptureFixture[str]
) -> None:
    venv = box.rootfs / "opt" / "venv"
    with capsys.disabled():
        print(
            f"\n[image] {image.name}: {image.size / 1e6:.0f} MB, of which the Debian base "
            f"{image.base_size / 1e6:.0f} MB and /opt/venv {_dir_size(venv) / 1e6:.0f} MB"
        )
    # as configured: numeric non-root user, `stackscaler run --log-format json`
    assert image.user == f"{UID}:{UID}"
    assert image.entrypoint == ("stackscaler", "run")
    assert image.cmd == ("--log-format", "json")

    # it runs as that user, and its CLI is the package's
    who = box.run(["id", "-u"])
    assert who.returncode == 0 and who.stdout.strip() == str(UID), who
    version = box.run(["stackscaler", "--version"])
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"stackscaler {stackscaler.__version__}"
    validate = box.run(["stackscaler", "validate", "--help"])
    assert validate.returncode == 0, validate.stderr

    # no compiler or build tool anywhere on PATH
    tools = "gcc cc c++ g++ clang make ld as pip pip3 apt-get"
    found = box.run(["sh", "-c", f"for t in {tools}; do command -v $t; done; true"])
    found_tools = found.stdout.split()
    assert found_tools in (["/usr/bin/apt-get"], []), found_tools  # apt-get: the base's own

    # the runtime virtualenv has no pip, setuptools or wheel
    probe = (
        "import importlib.util as u, json; "
        "print(json.dumps([m for m in ('pip', 'setuptools', 'wheel', '_distutils_hack') "
        "if u.find_spec(m)]))"
    )
    modules = box.run(["/opt/venv/bin/python", "-c", probe])
    assert modules.returncode == 0, modules.stderr
    assert json.loads(modules.stdout) == []
    assert not list((venv / "bin").glob("pip*"))
    assert (venv / "bin" / "stackscaler").exists()

    # nothing of the builder stage
    for leftover in ("src", "wheels", "build"):
        assert not (box.rootfs / leftover).exists(), leftover

    # nothing of the registry proxy the build borrowed: no pip.conf, and none of the
    # host's own CAs in the image's bundle (the Debian bundle of ca-certificates only)
    assert not (box.rootfs / "etc" / "pip.conf").exists()
    bundle = set(PEM.findall((box.rootfs / "etc/ssl/certs/ca-certificates.crt").read_text()))
    assert bundle, "the image has no CA bundle"
    extra = {pem for crt in HOST_EXTRA_CAS.glob("*.crt") for pem in PEM.findall(crt.read_text())}
    assert not extra & bundle


def test_the_root_filesystem_is_read_only_and_tmp_is_writable(box: img.Container) -> None:
    """The view the scale-out below runs in: even root cannot write outside /tmp."""
    probe = box.run(
        ["sh", "-c", "touch /opt/venv/x 2>&1; touch /etc/x 2>&1; touch /tmp/x && echo tmp-ok"],
        user="0:0",
    )
    assert "'/opt/venv/x': Read-only file system" in probe.stdout, probe
    assert "'/etc/x': Read-only file system" in probe.stdout, probe
    assert "tmp-ok" in probe.stdout, probe


class ImageOperator(OperatorProcess):
    """`stackscaler run` as the image's ENTRYPOINT, in a container of the image."""

    def __init__(  # noqa: PLR0917
        self,
        box: img.Container,
        built: img.Image,
        config: Path,
        container_env: dict[str, str],
        workdir: Path,
        namespaces: tuple[str, ...],
    ) -> None:
        host_env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        super().__init__(Path("/config/kubeconfig"), host_env, workdir, namespaces)
        self.box, self.built, self.config = box, built, config
        self.container_env = container_env

    def command(self, *run_args: str) -> list[str]:
        return self.box.command(
            [*self.built.entrypoint, *run_args],
            env=self.container_env,
            volumes=[(self.config, "/config")],
        )

    def terminate(self, proc: subprocess.Popen[bytes]) -> None:
        # buildah answers SIGTERM with SIGKILL to its command: signal the container's process
        pid = img.container_process(proc.pid, UID, self.built.entrypoint[0])
        assert pid is not None, "no stackscaler process of uid 10001 under buildah run"
        os.kill(pid, signal.SIGTERM)


def _config_for_the_container(plane: cp.ControlPlane, into: Path) -> Path:
    """The control plane's kubeconfig and CA, readable by uid 10001, mounted at /config."""
    into.mkdir(mode=0o755)
    config: dict[str, Any] = json.loads(plane.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    ca = Path(cluster["certificate-authority"])
    (into / "ca.crt").write_bytes(ca.read_bytes())
    cluster["certificate-authority"] = "/config/ca.crt"
    (into / "kubeconfig").write_text(json.dumps(config))
    for path in (into / "ca.crt", into / "kubeconfig"):
        path.chmod(0o644)  # a test token for a throwaway control plane
    return into


def test_the_image_scales_out_a_web_tier(  # noqa: PLR0917
    image: img.Image,
    box: img.Container,
    controlplane: cp.ControlPlane,
    aws: Aws,
    aws_env: dict[str, str],
    kube: Kube,
    namespace: str,
) -> None:
    group = f"web-{suffix()}"
    aws.group_with_template(group, desired=2, max_size=50)
    aws.cpu(group, 90.0)  # target 50: 1.8 x the capacity

    # moto's instances serve at once: warmupSeconds 0
    web = cpu_web_tier(namespace, group, pollIntervalSeconds=5, warmupSeconds=0)
    kube.apply(web)

    with tempfile.TemporaryDirectory(prefix="stackscaler-image-") as scratch:
        work = Path(scratch)
        config = _config_for_the_container(controlplane, work / "config")
        (work / "logs").mkdir()
        op = ImageOperator(box, image, config, dict(aws_env), work / "logs", (namespace,))
        try:
            op.start()
            pid = img.container_process(op.proc.pid if op.proc else 0, UID, "stackscaler")
            assert pid is not None, "the operator does not run as uid 10001"

            def scaled_out() -> list[str]:
                events = event_messages(kube, "WebTier", namespace, "web", "ScaledOut")
                assert events, "no ScaledOut Event yet"
                return events

            first = eventually(scaled_out, what="a scale-out by the operator in the image")[0]
            assert first.split(":")[0] == "2 -> 4", first  # HPA's rule: ceil(2 x 90 / 50)
            assert aws.desired(group) >= 4
            status = kube.status("WebTier", namespace, "web")
            assert status["desiredCapacity"] >= 4
            assert condition(status, "Ready")["status"] == "True"
            code = op.stop()
            assert code == 0, _tail(op.logs[-1])
            assert not op.problems(), op.problems()
            records = op.records()
            assert records and all("level" in r for r in records), records[:3]  # JSON logs
        finally:
            op.kill()
