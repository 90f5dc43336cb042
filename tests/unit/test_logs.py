"""Log injection: whatever a user puts in a name or a remote service in a message,
one record stays one record and every character in it is visible."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from stackscaler.observability import configure_logging

# What a hostile target name carried in the finding: a newline, a forged record,
# and a right-to-left override that makes the rest of the line read backwards.
FORGED = "web\n2026-11-26T12:00:00.000Z ERROR   stackscaler.reconcile: \u202edeleted everything"
HIDDEN = "\u2066\u200b\ufeff\U000e0041\x1b[2K\r\x85\u2028\u2029"
# the start of every text record: a timestamp and a level
RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL)")
# printable and single-line (the same set safe_text escapes, spelt by category here)
INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)


def _log_everything(log: logging.Logger) -> None:
    """A message, an extra and an exception message all carrying the hostile name."""
    log.warning("target %s not found", FORGED, extra={"resource": f"shop/{FORGED}"})
    try:
        raise RuntimeError(f"AutoScalingGroup {FORGED!s} {HIDDEN}")
    except RuntimeError:
        log.exception("tick failed for %s", FORGED, extra={"target": HIDDEN})


@pytest.mark.usefixtures("restore_logging")
def test_text_log_a_hostile_name_cannot_forge_a_record() -> None:
    out = io.StringIO()
    configure_logging("text", "info", stream=out)
    _log_everything(logging.getLogger(f"stackscaler.{FORGED}"))
    lines = out.getvalue().splitlines()  # splits on \r, \x85, \u2028 ... too
    records = [line for line in lines if RECORD.match(line)]
    assert [r.split()[1] for r in records] == ["WARNING", "ERROR"]  # only the two real ones
    for line in lines:
        assert not INVISIBLE.search(line), repr(line)
    warning = records[0]
    assert "target web\\n2026-11-26T12:00:00.000Z ERROR   stackscaler.reconcile: " in warning
    assert "\\u202edeleted everything" in warning
    assert "resource=shop/web\\n2026" in warning
    assert warning.split()[2].startswith("stackscaler.web\\n2026")  # the logger name too


@pytest.mark.usefixtures("restore_logging")
def test_text_log_traceback_lines_are_marked_as_continuation() -> None:
    out = io.StringIO()
    configure_logging("text", "info", stream=out)
    log = logging.getLogger("stackscaler.test")
    try:
        raise RuntimeError(f"first line\n2026-11-26T12:00:00.000Z ERROR   x: forged\n{HIDDEN}")
    except RuntimeError:
        log.exception("tick failed", extra={"target": HIDDEN})
    log.info("next record")
    lines = out.getvalue().split("\n")[:-1]
    assert RECORD.match(lines[0]) and lines[0].endswith("\\u2029]")
    assert RECORD.match(lines[-1]) and lines[-1].endswith("next record")
    traceback = lines[1:-1]
    assert traceback[0] == "  | Traceback (most recent call last):"
    assert all(line.startswith("  | ") for line in traceback), traceback
    assert "  | RuntimeError: first line" in traceback
    assert "  | 2026-11-26T12:00:00.000Z ERROR   x: forged" in traceback
    assert traceback[-1] == "  | \\u2066\\u200b\\ufeff\\U000e0041\\x1b[2K\\r\\x85\\u2028\\u2029"


@pytest.mark.usefixtures("restore_logging")
def test_text_log_stack_info_is_marked_too() -> None:
    out = io.StringIO()
    configure_logging("text", "info", stream=out)
    logging.getLogger("stackscaler.test").info("with stack", stack_info=True)
    first, *rest = out.getvalue().rstrip("\n").split("\n")
    assert first.endswith("with stack")
    assert rest and all(line.startswith("  | ") for line in rest)


@pytest.mark.usefixtures("restore_logging")
def test_json_log_escapes_bidi_and_invisible_characters_losslessly() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    _log_everything(logging.getLogger(f"stackscaler.{FORGED}"))
    text = out.getvalue()
    lines = text.split("\n")[:-1]
    assert len(lines) == 2  # one object per record
    for line in lines:
        assert not INVISIBLE.search(line), repr(line)
        assert line.isascii() or line.isprintable()
    assert "\\u202e" in lines[0] and "\\u2028" in lines[1] and "\\udb40\\udc41" in lines[1]
    warning, error = (json.loads(line) for line in lines)
    # JSON escapes are lossless: a reader gets the exact values back
    assert warning["message"] == f"target {FORGED} not found"
    assert warning["resource"] == f"shop/{FORGED}"
    assert warning["logger"] == f"stackscaler.{FORGED}"
    assert error["target"] == HIDDEN
    assert f"RuntimeError: AutoScalingGroup {FORGED} {HIDDEN}" in error["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_json_log_keeps_other_scripts_readable() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    logging.getLogger("stackscaler.test").info("Größe 名前 🙂")
    assert "Größe 名前 🙂" in out.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_a_lone_surrogate_does_not_lose_the_record() -> None:
    for fmt in ("json", "text"):
        raw = io.BytesIO()
        stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)
        handler = configure_logging(fmt, "info", stream=stream)  # type: ignore[arg-type]
        # Handed to the installed handler itself: through the root logger pytest's own
        # capture would hold the record too, and pytest-xdist cannot send a lone surrogate.
        record = logging.LogRecord(
            "stackscaler.test", logging.INFO, __file__, 1, "bad \udcff byte", None, None
        )
        handler.handle(record)
        assert b"bad \\udcff byte" in raw.getvalue(), fmt
