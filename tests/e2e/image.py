"""The operator's image, built from the repository's Dockerfile and run, without a Docker engine.

Where the tests run there is no Docker engine and no container registry, so
``python:3.11-slim`` cannot be pulled. Instead:

* the base is made from Debian bookworm's own packages with ``mmdebstrap``
  (python3, python3-venv, ca-certificates) and imported into buildah's local
  storage; it is kept there, named after what it is made of, and reused;
* the Dockerfile, unchanged, is built with ``buildah bud --isolation chroot``
  and ``--build-arg BASE_IMAGE=<that base>``. Package registries are reached
  through a TLS proxy with its own CA: the build borrows the host's CA bundle
  as a read-only mount and /etc/pip.conf as the build secret ``pipconf`` that
  the Dockerfile's builder step mounts, so nothing of them stays in the image
  (a test checks it);
* a container is run with ``buildah run --isolation chroot`` as the image's
  USER, with every top-level directory of its root filesystem bind-mounted
  read-only over itself and a tmpfs at /tmp: the view that
  ``readOnlyRootFilesystem: true`` plus an emptyDir at /tmp gives in a pod.
  ``podman run`` cannot run here (crun cannot set RLIMIT_NPROC).

buildah answers SIGTERM by killing its command with SIGKILL, so a graceful
stop signals the container's own process (chroot isolation shares the host's
PID namespace): see ``container_process``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
TOOLS = ("buildah", "mmdebstrap")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
HOST_PIP_CONF = Path("/etc/pip.conf")
READ_ONLY_DIRS = ("usr", "etc", "opt", "var", "root", "home", "srv", "mnt", "media")
"""The root filesystem's top-level directories (bin, sbin and lib are links into usr
in bookworm; /dev, /proc, /sys are buildah's own; /tmp is a tmpfs)."""

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH in the base's config, as Debian's and python:3.11-slim's images have it."""

BUILD_TIMEOUT = 900
RUN_TIMEOUT = 120


class ImageToolsMissing(RuntimeError):
    """buildah or mmdebstrap is missing, or this is not root (buildah's storage needs it)."""


@dataclass(frozen=True)
class Image:
    name: str
    size: int
    """Bytes, as buildah reports the image."""
    base: str
    base_size: int
    user: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]


def missing_tools() -> list[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.append("root (buildah's storage in /var/lib/containers)")
    return missing


def _run(argv: Sequence[str], *, timeout: float = RUN_TIMEOUT) -> str:
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:3])} ... exited {out.returncode}:\n{out.stdout[-3000:]}"
            f"\n{out.stderr[-3000:]}"
        )
    return out.stdout


def _exists(image: str) -> bool:
    return (
        subprocess.run(
            ["buildah", "inspect", "--type", "image", image],
            capture_output=True,
            check=False,
            timeout=RUN_TIMEOUT,
        ).returncode
        == 0
    )


def _inspect(image: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(_run(["buildah", "inspect", "--type", "image", image]))
    return found


def _size(image: str) -> int:
    """Bytes of the image's layers (uncompressed, as stored; buildah prints only "368 MB")."""
    manifest = json.loads(_inspect(image)["Manifest"])
    return sum(int(layer["size"]) for layer in manifest["layers"])


def base_image(workdir: Path, log: list[str]) -> str:
    """The Debian base in buildah's storage, made with mmdebstrap unless it is there."""
    recipe = f"{SUITE} minbase {' '.join(BASE_PACKAGES)} PATH={BASE_PATH}"
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    name = f"localhost/stackscaler-test-base:{SUITE}-{digest}"
    if _exists(name):
        log.append(f"base {name}: reused")
        return name
    tar = workdir / "base.tar"
    _run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            SUITE,
            str(tar),
        ],
        timeout=BUILD_TIMEOUT,
    )
    container = _run(["buildah", "from", "--quiet", "scratch"]).strip()
    try:
        _run(["buildah", "add", "--quiet", container, str(tar), "/"])
        _run(["buildah", "config", "--env", f"PATH={BASE_PATH}", container])
        _run(["buildah", "commit", "--quiet", "--rm", container, name], timeout=BUILD_TIMEOUT)
    except BaseException:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
        raise
    finally:
        tar.unlink(missing_ok=True)
    log.append(f"base {name}: made with mmdebstrap ({recipe})")
    return name


def build(base: str, name: str, log: list[str]) -> Image:
    """``buildah bud`` of the repository's Dockerfile on ``base``."""
    # The registries' TLS proxy, lent to the build only. The CA bundle is mounted over the
    # base's own (a path that exists in both stages, so nothing is left behind); pip's
    # configuration is the build secret the Dockerfile's builder step mounts: a --volume
    # would leave an empty /etc/pip.conf behind as its mount point in the final stage.
    mounts: list[str] = []
    if HOST_CA.exists():
        mounts += ["--volume", f"{HOST_CA}:{HOST_CA}:ro"]
    if HOST_PIP_CONF.exists():
        mounts += ["--secret", f"id=pipconf,src={HOST_PIP_CONF}"]
    _run(
        [
            "buildah",
            "bud",
            "--isolation",
            "chroot",
            "--layers=false",
            "--build-arg",
            f"BASE_IMAGE={base}",
            *mounts,
            "--tag",
            name,
            "--file",
            str(ROOT / "Dockerfile"),
            str(ROOT),
        ],
        timeout=BUILD_TIMEOUT,
    )
    config = _inspect(name)["OCIv1"]["config"]
    image = Image(
        name=name,
        size=_size(name),
        base=base,
        base_size=_size(base),
        user=str(config.get("User", "")),
        entrypoint=tuple(config.get("Entrypoint") or ()),
        cmd=tuple(config.get("Cmd") or ()),
    )
    log.append(f"image {name}: built, {image.size / 1e6:.0f} MB")
    return image


def remove_image(name: str) -> None:
    subprocess.run(["buildah", "rmi", "--force", name], capture_output=True, check=False)


class Container:
    """A working container of an image, run with a read-only root filesystem."""

    def __init__(self, image: str) -> None:
        self.id = _run(["buildah", "from", "--quiet", "--pull=never", image]).strip()
        self.rootfs = Path(_run(["buildah", "mount", self.id]).strip())

    def command(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        volumes: Sequence[tuple[Path, str]] = (),
    ) -> list[str]:
        """The host command line that runs ``argv`` in the container."""
        line = ["buildah", "run", "--isolation", "chroot", "--network", "host"]
        if user is not None:
            line += ["--user", user]
        for directory in READ_ONLY_DIRS:
            if (self.rootfs / directory).is_dir() and not (self.rootfs / directory).is_symlink():
                line += [
                    "--mount",
                    f"type=bind,src={self.rootfs / directory},dst=/{directory},ro",
                ]
        line += ["--mount", "type=tmpfs,dst=/tmp"]
        for source, target in volumes:
            line += ["--volume", f"{source}:{target}:ro"]
        for key, value in (env or {}).items():
            line += ["--env", f"{key}={value}"]
        return [*line, self.id, "--", *argv]

    def run(
        self, argv: Sequence[str], *, user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(argv, user=user),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )

    def remove(self) -> None:
        subprocess.run(["buildah", "umount", self.id], capture_output=True, check=False)
        subprocess.run(["buildah", "rm", self.id], capture_output=True, check=False)


@contextmanager
def container(image: str) -> Iterator[Container]:
    box = Container(image)
    try:
        yield box
    finally:
        box.remove()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except OSError:
            continue
        found += [int(child) for child in text.split()]
    return found


def container_process(buildah_pid: int, uid: int, program: str) -> int | None:
    """The container's own process under ``buildah run``.

    The deepest descendant that runs as ``uid`` with ``program`` (a basename)
    among its command line's first two words (a console script runs as
    ``python3 /opt/venv/bin/stackscaler``). buildah's own chroot helper above
    it runs as ``uid`` too, as ``buildah-chroot-exec /opt/venv/bin/stackscaler``:
    signalling it would kill the command instead.
    """
    found: int | None = None
    queue = [buildah_pid]
    for _ in range(1000):  # bounded walk of a small process tree
        if not queue:
            break
        pid = queue.pop(0)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2]
        except OSError:
            continue
        real_uid = next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:")),
            -1,
        )
        names = {os.path.basename(w.decode(errors="replace")) for w in words}
        if real_uid == uid and program in names:
            found = pid  # breadth first: a later match is deeper
        queue += _children(pid)
    return found
