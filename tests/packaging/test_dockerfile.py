"""Static checks of the Dockerfile and .dockerignore.

These tests read the Dockerfile as text and check what a user building it
with Docker gets by default (stages, base images, user, entrypoint, labels,
what the final stage installs, what the build context holds).
tests/e2e/test_image.py builds and runs the image itself, with buildah, on a
base made from Debian's packages (no registry is reachable there): these
checks cover the parts that build cannot show, e.g. that the default base is
python:3.11-slim.

``dockerfile_problems`` returns every problem it finds; the last tests feed it
broken variants of the real file to show that each check can fail.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from stackscaler.cli import run

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

BASE_IMAGE = "python:3.11-slim"
UID = 10001
REQUIRED_LABELS = {
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.source",
    "org.opencontainers.image.licenses",
    "org.opencontainers.image.version",
}
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|clang|make|build-essential|python3?-dev|libc6?-dev|"
    r"pip\s+install|pip\s+wheel|setuptools|apt-get\s+install|apk\s+add)\b"
)
IGNORED = (".venv", ".cache", ".git", "tests")


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse(text: str) -> list[Stage]:
    """Stages of a Dockerfile: comments dropped, continuation lines joined."""
    stages: list[Stage] = []
    defaults: dict[str, str] = {}  # ARGs before the first FROM, which FROM lines may use
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continuation are dropped, as docker does
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        joined = " ".join(p for p in pending if p)
        pending = []
        keyword, _, args = joined.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip(), start)
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            image = re.sub(
                r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), words[0]
            )
            stages.append(Stage(image, name))
        elif instruction.keyword == "ARG" and not stages:
            key, _, value = instruction.args.partition("=")
            defaults[key.strip()] = value.strip().strip('"')
        elif stages:
            stages[-1].instructions.append(instruction)
    return stages


def labels(stage: Stage) -> dict[str, str]:
    out = {}
    for instruction in stage.all("LABEL"):
        for token in shlex.split(instruction.args):
            key, _, value = token.partition("=")
            out[key] = value
    return out


def env(stage: Stage) -> dict[str, str]:
    out = {}
    for instruction in stage.all("ENV"):
        for token in shlex.split(instruction.args):
            key, _, value = token.partition("=")
            out[key] = value
    return out


def exec_form(instruction: Instruction | None) -> list[str] | None:
    if instruction is None:
        return None
    try:
        value = json.loads(instruction.args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stackscaler", exit_on_error=False)
    run.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def dockerfile_problems(text: str) -> list[str]:
    stages = parse(text)
    if len(stages) != 2:
        return [f"expected two stages (builder, final), got {len(stages)}"]
    builder, final = stages
    problems = []
    for stage in stages:
        if stage.image != BASE_IMAGE:
            problems.append(
                f"stage {stage.name or 'final'} is FROM {stage.image}, not {BASE_IMAGE}"
            )
    if builder.name is None:
        problems.append("the first stage has no name (FROM ... AS builder)")

    # the builder installs the package without extras
    installs = " ".join(i.args for i in builder.all("RUN"))
    if "pip wheel --no-deps" not in installs or "--without-pip" not in installs:
        problems.append("the builder does not build a wheel into a pip-less virtualenv")
    if re.search(r"\[[a-z,]*(test|dev)[a-z,]*\]", text):
        problems.append("an extra ([test] or [dev]) is installed")

    # the final stage: only the virtualenv from the builder, no build tools
    for instruction in final.all("RUN"):
        if BUILD_TOOLS.search(instruction.args):
            problems.append(f"line {instruction.line}: the final stage installs or builds")
    for instruction in final.all("COPY") + final.all("ADD"):
        if instruction.args.split()[0] != f"--from={builder.name}":
            problems.append(f"line {instruction.line}: the final stage copies from the context")

    # non-root, numeric user
    users = final.all("USER")
    user = users[-1].args if users else "root"
    if not re.fullmatch(r"\d+(:\d+)?", user) or int(user.split(":")[0]) == 0:
        problems.append(f"USER must be a numeric non-root uid, got {user!r}")
    elif int(user.split(":")[0]) != UID:
        problems.append(f"USER must be {UID}, got {user}")

    # entrypoint and default arguments, parsed by the real `stackscaler run` parser
    entrypoint = exec_form(final.last("ENTRYPOINT"))
    cmd = exec_form(final.last("CMD")) or []
    if entrypoint is None or entrypoint[:2] != ["stackscaler", "run"]:
        problems.append(f"ENTRYPOINT must be the exec form of stackscaler run, got {entrypoint}")
        return problems
    try:
        args = run_parser().parse_args(["run", *entrypoint[2:], *cmd])
    except (argparse.ArgumentError, SystemExit) as exc:
        return [*problems, f"stackscaler run rejects {entrypoint[2:] + cmd}: {exc}"]
    if args.log_format != "json":
        problems.append("the default arguments do not select --log-format json")
    exposed = {p.split("/")[0] for i in final.all("EXPOSE") for p in i.args.split()}
    if exposed != {str(args.metrics_port)}:
        problems.append(f"EXPOSE {exposed} is not the metrics port {args.metrics_port}")

    # metadata and environment
    found = labels(final)
    if missing := REQUIRED_LABELS - set(found):
        problems.append(f"missing labels {sorted(missing)}")
    if found.get("org.opencontainers.image.licenses") != "Apache-2.0":
        problems.append("the licenses label is not Apache-2.0")
    version_args = {a.args.partition("=")[0]: a.args.partition("=")[2] for a in final.all("ARG")}
    version = found.get("org.opencontainers.image.version", "")
    match = re.fullmatch(r"\$\{?(\w+)\}?", version)
    if not match or match.group(1) not in version_args:
        problems.append("the version label does not come from an ARG of the final stage")
    elif version_args[match.group(1)] != PYPROJECT["project"]["version"]:
        problems.append("the version ARG's default is not the version in pyproject.toml")
    variables = env(final)
    for name in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"):
        if variables.get(name) != "1":
            problems.append(f"{name}=1 is not set in the final stage")
    if not variables.get("HOME", "").startswith("/tmp"):
        problems.append("HOME is not under /tmp (the only writable path)")
    if final.all("VOLUME"):
        problems.append("the final stage declares a VOLUME")
    return problems


def ignore_patterns(text: str) -> list[str]:
    return [
        line.strip().rstrip("/")
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``path`` (or the directory holding it) out of the context."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern)
        or (pattern.startswith("**/") and fnmatch.fnmatch(parts[-1], pattern[3:]))
        for pattern in patterns
        if not pattern.startswith("!")
        for prefix in prefixes
    )


def context_sources(text: str) -> list[str]:
    """What the Dockerfile COPYs from the build context."""
    out: list[str] = []
    for stage in parse(text):
        for instruction in stage.all("COPY") + stage.all("ADD"):
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            if not instruction.args.startswith("--from="):
                out.extend(w.rstrip("/") for w in words[:-1])
    return out


# --- the real files ---------------------------------------------------------------


def test_dockerfile_passes_every_static_check() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


def test_console_script_of_the_entrypoint_is_the_cli() -> None:
    assert PYPROJECT["project"]["scripts"]["stackscaler"] == "stackscaler.cli:main"


def test_dockerignore_keeps_local_state_and_tests_out() -> None:
    patterns = ignore_patterns(DOCKERIGNORE.read_text())
    for path in (*IGNORED, "operator/stackscaler/__pycache__/x.pyc", "x.egg-info"):
        assert ignored(path, patterns), path


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    patterns = ignore_patterns(DOCKERIGNORE.read_text())
    sources = context_sources(DOCKERFILE.read_text())
    assert sorted(sources) == ["README.md", "operator", "pyproject.toml"]
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source, patterns), source
    assert not ignored("operator/stackscaler/cli/run.py", patterns)


# --- each check can fail ------------------------------------------------------------


def _variant(old: str, new: str) -> list[str]:
    text = DOCKERFILE.read_text()
    assert old in text, old
    return dockerfile_problems(text.replace(old, new, 1))


def test_single_stage_is_rejected() -> None:
    text = DOCKERFILE.read_text()
    final = text[text.index("FROM ${BASE_IMAGE}\n") :]
    assert dockerfile_problems(final) == ["expected two stages (builder, final), got 1"]


def test_the_default_base_comes_from_the_base_image_argument() -> None:
    other = _variant("ARG BASE_IMAGE=python:3.11-slim", "ARG BASE_IMAGE=python:3.12-alpine")
    assert other == [
        "stage builder is FROM python:3.12-alpine, not python:3.11-slim",
        "stage final is FROM python:3.12-alpine, not python:3.11-slim",
    ]
    unset = _variant("ARG BASE_IMAGE=python:3.11-slim", "")
    assert "stage final is FROM ${BASE_IMAGE}, not python:3.11-slim" in unset


def test_root_or_named_user_is_rejected() -> None:
    assert any("numeric non-root" in p for p in _variant("USER 10001:10001", "USER 0"))
    assert any("numeric non-root" in p for p in _variant("USER 10001:10001", "USER stackscaler"))
    assert any("numeric non-root" in p for p in _variant("USER 10001:10001", ""))


def test_shell_form_or_other_entrypoint_is_rejected() -> None:
    shell = _variant('ENTRYPOINT ["stackscaler", "run"]', "ENTRYPOINT stackscaler run")
    assert any("exec form of stackscaler run" in p for p in shell)
    other = _variant('ENTRYPOINT ["stackscaler", "run"]', 'ENTRYPOINT ["stackscaler"]')
    assert any("exec form of stackscaler run" in p for p in other)


def test_default_arguments_are_checked_by_the_cli_parser() -> None:
    bad = _variant('CMD ["--log-format", "json"]', 'CMD ["--log-format", "yaml"]')
    assert any("stackscaler run rejects" in p for p in bad)
    text = _variant('CMD ["--log-format", "json"]', 'CMD ["--log-format", "text"]')
    assert text == ["the default arguments do not select --log-format json"]
    port = _variant("EXPOSE 8080", "EXPOSE 9090")
    assert any("is not the metrics port 8080" in p for p in port)


def test_build_tools_or_test_extra_in_the_final_stage_are_rejected() -> None:
    pip = _variant(
        "USER 10001:10001",
        "RUN pip install --no-cache-dir '.[test]'\nUSER 10001:10001",
    )
    assert any("the final stage installs or builds" in p for p in pip)
    assert any("an extra ([test] or [dev]) is installed" in p for p in pip)
    gcc = _variant("USER 10001:10001", "RUN apt-get install -y gcc\nUSER 10001:10001")
    assert any("the final stage installs or builds" in p for p in gcc)
    source = _variant("USER 10001:10001", "COPY operator /src/operator\nUSER 10001:10001")
    assert any("copies from the context" in p for p in source)


def test_missing_or_wrong_labels_are_rejected() -> None:
    no_source = _variant('      org.opencontainers.image.source="${SOURCE}" \\\n', "")
    assert no_source == ["missing labels ['org.opencontainers.image.source']"]
    mit = _variant('licenses="Apache-2.0"', 'licenses="MIT"')
    assert mit == ["the licenses label is not Apache-2.0"]
    fixed = _variant('version="${VERSION}"', 'version="0.1.0"')
    assert fixed == ["the version label does not come from an ARG of the final stage"]


def test_dockerignore_check_can_fail() -> None:
    assert not ignored("tests", ["docs", ".venv"])
    assert ignored("operator/x.py", ["operator"])
    assert ignored("a/b/__pycache__/c.pyc", ["**/__pycache__"])
