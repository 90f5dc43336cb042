"""Text that is safe to show: one line, no invisible characters, bounded length.

Names and messages that reach logs, Kubernetes Events and condition messages
come from users (a target name, a URL) or from remote services (an AWS error
message, a Prometheus answer). A newline in them forges a log record; a
right-to-left override (U+202E) makes a line read differently from what it
holds; a zero-width or tag character hides text. :func:`safe_text` turns
every such character into a visible escape, so the reader sees what is there.

Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["TRUNCATION_MARK", "UNSAFE", "UNSAFE_RANGES", "safe_text"]

UNSAFE_RANGES: Final[tuple[tuple[int, int], ...]] = (
    (0x0000, 0x001F),  # C0 controls: \n \r \t ESC ...
    (0x007F, 0x009F),  # DEL and the C1 controls (NEL U+0085 is a line break)
    (0x00AD, 0x00AD),  # soft hyphen (invisible)
    (0x0600, 0x0605),  # Arabic number signs (format)
    (0x061C, 0x061C),  # ARABIC LETTER MARK (bidi)
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),  # MONGOLIAN VOWEL SEPARATOR (zero width)
    (0x200B, 0x200F),  # zero width space, ZWNJ, ZWJ, LRM, RLM
    (0x2028, 0x202E),  # LINE and PARAGRAPH SEPARATOR; LRE RLE PDF LRO RLO
    (0x2060, 0x2064),  # word joiner, invisible operators
    (0x2066, 0x206F),  # LRI RLI FSI PDI; deprecated format characters
    (0xD800, 0xDFFF),  # lone surrogates (not encodable as UTF-8)
    (0xFEFF, 0xFEFF),  # zero width no-break space (BOM)
    (0xFFF9, 0xFFFB),  # interlinear annotation
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),  # Egyptian hieroglyph format controls
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical symbol format controls
    (0xE0001, 0xE0001),  # LANGUAGE TAG
    (0xE0020, 0xE007F),  # tag characters (invisible ASCII look-alikes)
)
"""Inclusive code point ranges :func:`safe_text` escapes: every character of the
Unicode general categories Cc (control), Cf (format: bidi controls, zero-width
and tag characters), Cs (surrogate), Zl and Zp (line and paragraph separator),
as of Unicode 15.1. A test checks this against the running ``unicodedata``."""

UNSAFE: Final[re.Pattern[str]] = re.compile(
    "["
    + "".join(
        re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"
        for lo, hi in UNSAFE_RANGES
    )
    + "]"
)
"""Matches one character of :data:`UNSAFE_RANGES`."""

TRUNCATION_MARK: Final = "…"
"""Ends a text :func:`safe_text` shortened (U+2026, one character)."""

_SHORT: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    short = _SHORT.get(ch)
    if short is not None:
        return short
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _escape_match(m: re.Match[str]) -> str:
    return _escape(m.group())


def safe_text(s: str, limit: int | None = None) -> str:
    """``s`` with every unsafe character escaped, at most ``limit`` characters long.

    Unsafe characters (:data:`UNSAFE_RANGES`: controls, bidi and other format
    characters, line separators, surrogates) become Python-style escapes that
    anyone can read: a newline ``\\n``, a carriage return ``\\r``, a tab ``\\t``,
    ESC ``\\x1b``, DEL ``\\x7f``, U+202E ``\\u202e``, a tag character
    ``\\U000e0041``. Everything else is kept as it is, other scripts and emoji
    included (a zero width joiner inside an emoji sequence is escaped too). So
    the result is one line and shows every character it holds.

    With ``limit``, a longer result is cut to ``limit`` characters (code points,
    as the API server counts ``maxLength``) ending with :data:`TRUNCATION_MARK`;
    an escape is never cut in half. ``limit`` must not be negative.

    For display, not for round trips: a backslash is kept as is, so a literal
    backslash-n and an escaped newline look alike.

    Fast: text that is already printable is returned as is after one C-level
    scan (``str.isprintable``), with no copy.

    >>> safe_text("web\\n2026-11-26T12:00:00Z ERROR forged")
    'web\\\\n2026-11-26T12:00:00Z ERROR forged'
    >>> safe_text("a\\u202eb")
    'a\\\\u202eb'
    >>> safe_text("abcdef", limit=4)
    'abc…'
    """
    if limit is not None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if len(s) > limit:
            # escaping never shortens: only the first limit + 1 characters can matter
            return _truncate(s[: limit + 1], limit)
    if s.isprintable():  # no control, format, separator (but the space) or surrogate
        return s
    out = UNSAFE.sub(_escape_match, s)
    if limit is not None and len(out) > limit:
        return _truncate(s, limit)
    return out


def _truncate(s: str, limit: int) -> str:
    """``s`` escaped and cut to ``limit`` characters, the mark included (callers know
    that the escaped ``s`` is longer than ``limit``)."""
    if limit < len(TRUNCATION_MARK):
        return TRUNCATION_MARK[:limit]
    budget = limit - len(TRUNCATION_MARK)
    pieces: list[str] = []
    pos = 0
    for m in UNSAFE.finditer(s):
        plain = s[pos : m.start()]
        if len(plain) >= budget:
            pieces.append(plain[:budget])
            return "".join(pieces) + TRUNCATION_MARK
        pieces.append(plain)
        budget -= len(plain)
        esc = _escape(m.group())
        if len(esc) > budget:
            return "".join(pieces) + TRUNCATION_MARK
        pieces.append(esc)
        budget -= len(esc)
        pos = m.end()
    pieces.append(s[pos : pos + budget])
    return "".join(pieces) + TRUNCATION_MARK
