"""The demo's child processes: moto in server mode and the operator (``stackscaler run``).

Each child runs in its own session (so a Ctrl-C in the terminal reaches only
the demo, which then stops everything in order), dies with the demo on
Linux (``PR_SET_PDEATHSIG``, also if the demo is killed), listens on
loopback only and logs to a file in the demo's log folder. Both are spawned
from the main thread: the death signal follows the thread that spawned.

Fake AWS credentials and the moto endpoint exist only in the children's
environment, never in the demo's own: every ``AWS_*`` variable of the
demo's environment is dropped from it, and the shared config and
credentials files are pointed at ``/dev/null``, so no real AWS account can
be reached.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stackscaler.devtools.controlplane import exit_with_parent

FAKE_ACCESS_KEY = "stackscaler-demo"
FAKE_SECRET_KEY = "stackscaler-demo-not-a-secret"


class ChildFailed(RuntimeError):
    """A child process could not start, or exited while the demo needed it."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass(frozen=True)
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM to its process group, then SIGKILL after ``timeout``; its exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def spawn(name: str, argv: list[str], log: Path, env: Mapping[str, str] | None = None) -> Child:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=exit_with_parent,  # noqa: PLW1509 - spawned before any thread exists
        )
    return Child(name, proc, log)


def children_env(endpoint: str, region: str) -> dict[str, str]:
    """The demo's environment for its children: fake credentials, moto, no real AWS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "STACKSCALER_AWS_ENDPOINT_URL": endpoint,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def moto_executable() -> str | None:
    """The virtualenv's moto_server (pinned by the test extra), else the one on PATH."""
    venv = Path(sys.executable).parent / "moto_server"
    if venv.exists():
        return str(venv)
    return shutil.which("moto_server")


def start_moto(
    exe: str, logs: Path, region: str, *, timeout: float = 30.0, attempts: int = 3
) -> tuple[Child, str]:
    """moto in server mode on a free loopback port; returns when it answers.

    A port taken between choosing and binding it makes moto exit at once: it
    is tried again on another port.
    """
    for attempt in range(1, attempts + 1):
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        child = spawn(
            "moto",
            [exe, "-H", "127.0.0.1", "-p", str(port)],
            logs / "moto.log",
            children_env(endpoint, region),
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):
                    return child, endpoint
            except OSError:
                if child.alive() and time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                exited = not child.alive()
                child.stop()
                if exited and attempt < attempts:
                    break  # most likely the port: another one
                raise ChildFailed(
                    f"moto_server did not start; {child.log}:\n{tail(child.log)}"
                ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def start_operator(kubeconfig: Path, namespace: str, logs: Path, env: Mapping[str, str]) -> Child:
    """``stackscaler run`` for one namespace; health and metrics on a free loopback port."""
    argv = [
        sys.executable,
        "-m",
        "stackscaler",
        "run",
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        namespace,
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        "0",
        "--log-format",
        "text",
    ]
    return spawn("operator", argv, logs / "operator.log", env)
