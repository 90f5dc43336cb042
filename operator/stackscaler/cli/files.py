"""Reading YAML documents from files for the CLI, with located errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stackscaler import API_GROUP
from stackscaler.model.crds import KINDS


class UsageError(Exception):
    """A user's mistake on the command line or in a file: printed, exit code 1."""


@dataclass(frozen=True)
class Document:
    source: str
    index: int
    """1-based position of the document in its file."""
    body: Any

    @property
    def is_stackscaler(self) -> bool:
        if not isinstance(self.body, dict):
            return self.body is not None
        api = self.body.get("apiVersion")
        return (isinstance(api, str) and api.split("/")[0] == API_GROUP) or (
            self.body.get("kind") in KINDS
        )

    @property
    def label(self) -> str:
        where = f"{self.source}: document {self.index}"
        if isinstance(self.body, dict):
            meta = self.body.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            ns = meta.get("namespace") if isinstance(meta, dict) else None
            kind = self.body.get("kind", "?")
            ident = f"{ns}/{name}" if ns else str(name)
            return f"{where} ({kind} {ident})"
        return where


def read_documents(path: str) -> Iterator[Document]:
    """Yield every YAML document of a file (``-`` is stdin); empty documents are skipped."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    source = "<stdin>" if path == "-" else path
    try:
        for i, body in enumerate(yaml.safe_load_all(text), start=1):
            if body is not None:
                yield Document(source, i, body)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise UsageError(f"{where}: invalid YAML: {problem}") from exc
