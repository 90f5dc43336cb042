"""A real Kubernetes control plane on loopback, for tests and local development.

kube-apiserver and etcd are built from the upstream Go modules pinned in
``tests/controlplane/go.mod`` (``k8s.io/kubernetes`` with its staging modules
pinned by ``replace``, and the etcd server it pins) into a git-ignored cache
folder keyed by those versions: ``.cache/controlplane/<key>/bin``. Nothing is
downloaded but Go modules; no binary is committed.

``start`` runs etcd and kube-apiserver in the background on free loopback
ports with generated certificates, service-account keys, RBAC authorization
and an admin token, waits for ``/readyz``, installs the stackscaler CRDs,
waits until they are Established and writes ``DIR/kubeconfig``. ``stop``
stops both and removes what they left.

This module does I/O on purpose (processes, files, HTTP); it is a developer
tool and never imported by the operator.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackscaler.errors import PermanentError
from stackscaler.model.crds import all_crds

BUILD_RECIPE = "1"
"""Bump to rebuild every cache entry when the build command changes."""
STATE_FILE = "state.json"
FIELD_MANAGER = "stackscaler-dev"
GO_HINT = (
    "the control plane is built from source with Go (>= 1.24): install Go from https://go.dev/dl "
    "(or your package manager), then run `make controlplane`; or point "
    "STACKSCALER_CONTROLPLANE_BIN at a directory holding kube-apiserver and etcd binaries"
)

Log = Callable[[str], None]


class ControlPlaneError(PermanentError):
    """The control plane cannot be built, started or stopped; the message says why."""


class ControlPlaneUnavailable(ControlPlaneError):
    """No binaries and no way to build them here (Go is missing)."""


def _quiet(_: str) -> None:
    pass


# --------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------


def source_dir() -> Path:
    """The checkout holding tests/controlplane/go.mod (cwd upwards, then the package's)."""
    env = os.environ.get("STACKSCALER_SOURCE_DIR")
    starts = [Path(env)] if env else []
    starts += [Path.cwd(), Path(__file__).resolve()]
    for start in starts:
        for d in [start, *start.parents]:
            if (d / "tests" / "controlplane" / "go.mod").is_file():
                return d
    raise ControlPlaneUnavailable(
        "cannot find tests/controlplane/go.mod: run this from a stackscaler checkout "
        "(or set STACKSCALER_SOURCE_DIR)"
    )


def pinned_versions(module_dir: Path) -> tuple[str, str]:
    """(kubernetes, etcd) versions pinned by the Go module."""
    text = (module_dir / "go.mod").read_text()
    k8s = re.search(r"^\s*k8s\.io/kubernetes\s+(v\S+)", text, re.M)
    etcd = re.search(r"^\s*go\.etcd\.io/etcd/server/v3\s+(v\S+)", text, re.M)
    if not k8s or not etcd:
        raise ControlPlaneError(f"{module_dir}/go.mod does not pin k8s.io/kubernetes and etcd")
    return k8s.group(1), etcd.group(1)


def cache_key(module_dir: Path) -> str:
    k8s, etcd = pinned_versions(module_dir)
    digest = hashlib.sha256(BUILD_RECIPE.encode())
    for f in sorted([module_dir / "go.mod", module_dir / "go.sum", *module_dir.glob("cmd/*/*.go")]):
        digest.update(f.relative_to(module_dir).as_posix().encode())
        digest.update(f.read_bytes())
    return f"k8s-{k8s}-etcd-{etcd}-{digest.hexdigest()[:12]}"


def binaries_dir(root: Path | None = None) -> Path:
    root = root or source_dir()
    module = root / "tests" / "controlplane"
    return root / ".cache" / "controlplane" / cache_key(module) / "bin"


def _has_binaries(d: Path) -> bool:
    return all(os.access(d / b, os.X_OK) for b in ("kube-apiserver", "etcd"))


def find_binaries() -> Path | None:
    """The binaries to use: STACKSCALER_CONTROLPLANE_BIN, else the built cache entry."""
    env = os.environ.get("STACKSCALER_CONTROLPLANE_BIN")
    if env:
        d = Path(env)
        if not _has_binaries(d):
            raise ControlPlaneError(f"STACKSCALER_CONTROLPLANE_BIN={env} lacks kube-apiserver/etcd")
        return d
    d = binaries_dir()
    return d if _has_binaries(d) else None


def build(log: Log = _quiet) -> Path:
    """Build kube-apiserver and etcd into the cache unless they are already there."""
    found = find_binaries()
    if found is not None:
        log(f"control plane binaries present: {found}")
        return found
    go = shutil.which("go")
    if go is None:
        raise ControlPlaneUnavailable("Go is not installed: " + GO_HINT)
    root = source_dir()
    module = root / "tests" / "controlplane"
    k8s, etcd = pinned_versions(module)
    out = binaries_dir(root)
    tmp = out.parent.with_name(f".tmp-{out.parent.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bin").mkdir(parents=True)
    major, minor = k8s.removeprefix("v").split(".")[:2]
    ldflags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        ldflags += [
            f"-X {pkg}.gitVersion={k8s}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    ldflags.append(f"-X go.etcd.io/etcd/api/v3/version.GitSHA={etcd}")
    cmd = [
        go,
        "build",
        "-trimpath",
        "-ldflags",
        " ".join(ldflags),
        "-o",
        str(tmp / "bin") + "/",
        "./cmd/kube-apiserver",
        "./cmd/etcd",
    ]
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
    log(f"building kube-apiserver {k8s} and etcd {etcd} from Go modules (first build: minutes)")
    started = time.monotonic()
    result = subprocess.run(cmd, cwd=module, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ControlPlaneError(f"go build failed ({result.returncode}):\n{result.stderr[-4000:]}")
    out.parent.parent.mkdir(parents=True, exist_ok=True)
    if out.parent.exists():  # a concurrent build won
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(out.parent)
    log(f"built in {time.monotonic() - started:.0f} s: {out}")
    return out


# --------------------------------------------------------------------------
# Start / stop
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ControlPlane:
    dir: Path
    server: str
    token: str
    pids: dict[str, int]
    started_in_seconds: float = 0.0

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.dir / "pki" / "ca.crt"


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def exit_with_parent() -> None:  # pragma: no cover - runs in the child
    """``preexec_fn`` for children that must die with us (Linux PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done != pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _is_ours(pid: int, name: str) -> bool:
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return _alive(pid)  # no /proc (macOS): trust the state file
    return Path(argv0).name == name


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Client:
    """Just enough HTTPS for readiness and CRD installation."""

    def __init__(self, server: str, token: str, ca: Path) -> None:
        self.server, self.token = server, token
        self.ctx = ssl.create_default_context(cafile=str(ca))

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": content_type,
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=5, context=self.ctx) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw.startswith(b"{") else raw.decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")


def _etcd_healthy(url: str) -> bool:
    with urllib.request.urlopen(url + "/health", timeout=2) as resp:
        return b'"health":"true"' in resp.read()


def _wait(
    probe: Callable[[], bool],
    what: str,
    timeout: float,
    procs: dict[str, subprocess.Popen[bytes]],
    logs: Path,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, p in procs.items():
            if p.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with {p.returncode} while waiting for {what}; "
                    f"{logs / (name + '.log')}:\n{_tail(logs / (name + '.log'))}"
                )
        with contextlib.suppress(OSError, ssl.SSLError, urllib.error.URLError):
            if probe():
                return
        time.sleep(0.05)
    raise ControlPlaneError(f"timed out after {timeout:.0f} s waiting for {what}")


def status(directory: Path) -> ControlPlane | None:
    """The control plane running from ``directory``, or None."""
    state_file = directory / STATE_FILE
    if not state_file.is_file():
        return None
    state = json.loads(state_file.read_text())
    pids = {k: int(v) for k, v in state["pids"].items()}
    if not any(_alive(pid) and _is_ours(pid, name) for name, pid in pids.items()):
        return None
    return ControlPlane(
        directory, state["server"], state["token"], pids, float(state.get("startedInSeconds", 0))
    )


def _kubeconfig(cp_dir: Path, server: str, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "stackscaler-dev",
                "cluster": {
                    "server": server,
                    "certificate-authority": str(cp_dir / "pki" / "ca.crt"),
                },
            }
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [
            {"name": "stackscaler-dev", "context": {"cluster": "stackscaler-dev", "user": "admin"}}
        ],
        "current-context": "stackscaler-dev",
    }


def _spawn(
    name: str, argv: list[str], logs: Path, die_with_parent: bool
) -> subprocess.Popen[bytes]:
    with (logs / f"{name}.log").open("wb") as log_file:
        return subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: stop() signals the whole group
            preexec_fn=exit_with_parent if die_with_parent else None,  # noqa: PLW1509
        )


def install_crds(client: _Client, timeout: float = 30.0) -> None:
    """Server-side apply every stackscaler CRD, then wait until each is Established."""
    names = []
    for body in all_crds().values():
        name = body["metadata"]["name"]
        names.append(name)
        code, resp = client.request(
            "PATCH",
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            f"?fieldManager={FIELD_MANAGER}&force=true",
            body,
            "application/apply-patch+yaml",
        )
        if code not in (200, 201):
            raise ControlPlaneError(f"installing CRD {name} failed ({code}): {resp}")
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            code, resp = client.request(
                "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            )
            status_ = resp.get("status") if isinstance(resp, dict) else None
            conds = (status_ or {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                pending.discard(name)
        if pending:
            time.sleep(0.05)
    if pending:
        raise ControlPlaneError(f"CRDs not Established after {timeout:.0f} s: {sorted(pending)}")


def start(
    directory: Path,
    *,
    binaries: Path | None = None,
    crds: bool = True,
    die_with_parent: bool = False,
    log: Log = _quiet,
) -> ControlPlane:
    """Start etcd and kube-apiserver on free loopback ports; return when ready."""
    directory = directory.resolve()
    running = status(directory)
    if running is not None:
        raise ControlPlaneError(
            f"a control plane is already running from {directory} (server {running.server}, "
            f"kubeconfig {running.kubeconfig}); stop it with "
            f"`stackscaler dev controlplane stop --dir {directory}`"
        )
    if (directory / STATE_FILE).exists():
        _cleanup(directory)  # stale state from a crashed run
    bins = binaries or find_binaries()
    if bins is None:
        if shutil.which("go") is None:
            raise ControlPlaneUnavailable(
                "no control plane binaries and Go is not installed: " + GO_HINT
            )
        bins = build(log)
    started = time.monotonic()
    # `cryptography` is an optional dependency (the `dev` extra): import it only here.
    from stackscaler.devtools.pki import make_pki  # noqa: PLC0415

    pki, logs = directory / "pki", directory / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    make_pki(pki)
    token = secrets.token_urlsafe(32)
    (pki / "tokens.csv").write_text(
        f'{token},stackscaler-admin,stackscaler-admin,"system:masters"\n'
    )
    (pki / "tokens.csv").chmod(0o600)
    etcd_port, peer_port, api_port = _free_ports(3)
    etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
    server = f"https://127.0.0.1:{api_port}"
    etcd_argv = [
        str(bins / "etcd"),
        "--name=stackscaler-dev",
        f"--data-dir={directory / 'etcd-data'}",
        f"--listen-client-urls={etcd_url}",
        f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=stackscaler-dev={peer_url}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync=true",  # a throwaway store: speed over durability
        "--log-level=warn",
    ]
    api_argv = [
        str(bins / "kube-apiserver"),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={api_port}",
        f"--cert-dir={directory / 'apiserver-certs'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--token-auth-file={pki / 'tokens.csv'}",
        "--authorization-mode=RBAC",
        f"--service-account-issuer={server}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-cluster-ip-range=10.0.0.0/24",
        # No controller manager creates 'default' ServiceAccounts, so this plugin would
        # refuse every Pod; and loopback endpoints make the reconciler log errors.
        "--disable-admission-plugins=ServiceAccount",
        "--endpoint-reconciler-type=none",
        "--profiling=false",
        "--v=1",
    ]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    pids: dict[str, int] = {}

    def save_state(elapsed: float | None = None) -> None:
        state: dict[str, Any] = {
            "server": server,
            "token": token,
            "pids": pids,
            "binaries": str(bins),
        }
        if elapsed is not None:
            state["startedInSeconds"] = round(elapsed, 2)
        (directory / STATE_FILE).write_text(json.dumps(state, indent=1))

    try:
        procs["etcd"] = _spawn("etcd", etcd_argv, logs, die_with_parent)
        pids["etcd"] = procs["etcd"].pid
        save_state()
        _wait(lambda: _etcd_healthy(etcd_url), "etcd /health", 30, procs, logs)
        procs["kube-apiserver"] = _spawn("kube-apiserver", api_argv, logs, die_with_parent)
        pids["kube-apiserver"] = procs["kube-apiserver"].pid
        save_state()
        client = _Client(server, token, pki / "ca.crt")
        _wait(
            lambda: client.request("GET", "/readyz")[0] == 200,
            "kube-apiserver /readyz",
            60,
            procs,
            logs,
        )
        if crds:
            install_crds(client)
    except BaseException:
        _terminate(pids)
        raise
    elapsed = time.monotonic() - started
    save_state(elapsed)
    (directory / "kubeconfig").write_text(
        json.dumps(_kubeconfig(directory, server, token), indent=1)
    )
    (directory / "kubeconfig").chmod(0o600)
    log(f"control plane ready in {elapsed:.1f} s: {server}")
    return ControlPlane(directory, server, token, dict(pids), elapsed)


def _terminate(pids: dict[str, int], timeout: float = 15.0) -> None:
    # the API server first, then its store
    for name in ("kube-apiserver", "etcd"):
        pid = pids.get(name)
        if pid is None or not _alive(pid) or not _is_ours(pid, name):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)


_LEFTOVERS = ("pki", "logs", "etcd-data", "apiserver-certs", "kubeconfig", STATE_FILE)


def _cleanup(directory: Path) -> None:
    for name in _LEFTOVERS:
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        directory.rmdir()  # only if nothing else is in it


def stop(directory: Path) -> bool:
    """Stop the control plane of ``directory`` and remove what it left; False if none ran."""
    directory = directory.resolve()
    state_file = directory / STATE_FILE
    if not state_file.is_file():
        return False
    pids = {k: int(v) for k, v in json.loads(state_file.read_text()).get("pids", {}).items()}
    was_running = any(_alive(p) for p in pids.values())
    _terminate(pids)
    _cleanup(directory)
    return was_running
