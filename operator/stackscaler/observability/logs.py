"""Logging set-up: one JSON object per line, or readable text.

JSON lines carry ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message``,
every extra field passed with ``extra={...}`` (``resource``, ``kind``, ...)
and ``exception`` (the formatted traceback) when there is one.

Names and messages come from users and remote services, so neither format lets
them forge a record or hide text (log injection). JSON escapes newlines and
controls, and here also bidi, zero-width and other invisible characters
(``\u202e``), losslessly: a reader decodes the exact value. Text passes the
logger name, the message and the extras through :func:`stackscaler.text.safe_text`,
so a record's first line is one line; the traceback that may follow keeps its
lines, each escaped the same way and prefixed with ``"  | "``, so no line of it
can read as a record of its own (records start with a timestamp).
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from stackscaler.text import UNSAFE, safe_text

LogFormat = Literal["json", "text"]

# attributes every LogRecord has: anything else on a record came from ``extra``
_STANDARD_ATTRS = frozenset(logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def _rfc3339(created: float) -> str:
    return (
        datetime.fromtimestamp(created, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}


def _jsonable(value: Any) -> Any:
    """``value`` as something json.dumps writes as strict JSON (no NaN, no objects)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return str(value)


def _json_escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON spells characters beyond the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record; the standard keys win over extras of the same name."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            out.setdefault(key, _jsonable(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # Other scripts stay readable (ensure_ascii=False); the invisible characters
        # json.dumps leaves raw (bidi, zero-width, DEL, C1, U+2028, surrogates) can only
        # be inside strings there, where a \\uXXXX escape means the same character.
        line = json.dumps(out, ensure_ascii=False, allow_nan=False)
        return line if line.isprintable() else UNSAFE.sub(_json_escape, line)


CONTINUATION = "  | "
"""Prefix of each traceback (and stack) line under a text record."""


class TextFormatter(logging.Formatter):
    """``2026-11-26T12:00:00.000Z INFO    logger: message [kind=WebTier resource=ns/name]``.

    The first line is always one line: the logger name, the message and the extras
    are passed through :func:`~stackscaler.text.safe_text`. A traceback or stack
    follows on lines prefixed with :data:`CONTINUATION`, each escaped the same way.
    """

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _rfc3339(record.created)

    def format(self, record: logging.LogRecord) -> str:
        head = (
            f"{self.formatTime(record)} {safe_text(record.levelname):<7} "
            f"{safe_text(record.name)}: {safe_text(record.getMessage())}"
        )
        extras = _extras(record)
        if extras:
            fields = " ".join(
                f"{safe_text(k)}={safe_text(str(v))}" for k, v in sorted(extras.items())
            )
            head = f"{head} [{fields}]"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        tail = [record.exc_text] if record.exc_text else []
        if record.stack_info:
            tail.append(self.formatStack(record.stack_info))
        if not tail:
            return head
        lines = "\n".join(tail).split("\n")
        return head + "".join(f"\n{CONTINUATION}{safe_text(line)}" for line in lines)


class _Handler(logging.StreamHandler[TextIO]):
    """The handler configure_logging installs (recognised, so it is replaced, not added)."""


def configure_logging(
    fmt: LogFormat, level: str, *, stream: TextIO | None = None
) -> logging.Handler:
    """Log to ``stream`` (stderr) in ``fmt`` at ``level`` (a name such as ``info``).

    Idempotent: the handler a previous call installed on the root logger is
    replaced, never duplicated; other handlers are left alone.
    """
    if fmt not in ("json", "text"):
        raise ValueError(f"log format must be json or text, got {fmt!r}")
    levels = logging.getLevelNamesMapping()
    numeric = levels.get(level.strip().upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(sorted(levels))}")
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    return handler
