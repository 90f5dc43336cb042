"""Reading an operator's log for refusals: a 403, Forbidden or AccessDenied answer."""

from __future__ import annotations

import json
import re

_STATUS_403 = re.compile(r"(?<![\d.])403(?!\d)")


def denied(line: str) -> bool:
    """Whether a log line reports a refusal. In a JSON record only the message and the
    exception count: a timestamp ending in .403 is not a refusal (a clean-clone CI run
    failed on one)."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict):
        line = f"{record.get('message', '')} {record.get('exception', '')}"
    return bool(_STATUS_403.search(line)) or "forbidden" in line.lower() or "AccessDenied" in line


def denied_lines(text: str) -> list[str]:
    """The lines of a log that report a refusal."""
    return [line for line in text.splitlines() if denied(line)]
