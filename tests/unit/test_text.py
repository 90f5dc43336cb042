"""safe_text: one line, every invisible or control character made visible, bounded."""

from __future__ import annotations

import unicodedata

import pytest

from stackscaler.text import TRUNCATION_MARK, UNSAFE, UNSAFE_RANGES, safe_text

UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("web", "web"),
        ("", ""),
        ("a b", "a b"),
        (
            "web\n2026-11-26T12:00:00.000Z ERROR   forged",
            "web\\n2026-11-26T12:00:00.000Z ERROR   forged",
        ),
        ("a\rb\tc", "a\\rb\\tc"),
        ("\x00\x1b[31mred\x7f", "\\x00\\x1b[31mred\\x7f"),
        ("next\x85line", "next\\x85line"),  # NEL, a C1 line break
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),  # RIGHT-TO-LEFT OVERRIDE
        ("\u2066x\u2069\u200e\u200f\u061c", "\\u2066x\\u2069\\u200e\\u200f\\u061c"),
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("tag\U000e0041", "tag\\U000e0041"),  # invisible TAG LATIN CAPITAL LETTER A
        ("\ud800", "\\ud800"),  # a lone surrogate cannot be written as UTF-8
        ("Ünïcødé 名前 🙂 ok", "Ünïcødé 名前 🙂 ok"),  # other scripts stay readable
        ("back\\slash", "back\\slash"),  # kept as is
    ],
)
def test_unsafe_characters_become_visible_escapes(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown


def test_printable_text_is_returned_as_is() -> None:
    text = "scaled web from 3 to 9 (cpu 91% > 60%)"
    assert safe_text(text) is text


def test_the_result_is_always_one_printable_line() -> None:
    every = "".join(chr(c) for c in range(0x3000) if not 0xD800 <= c <= 0xDFFF)
    out = safe_text(every + "".join(chr(c) for lo, hi in UNSAFE_RANGES for c in range(lo, hi + 1)))
    assert out.splitlines() == [out]
    assert UNSAFE.search(out) is None
    out.encode("utf-8")  # no surrogate left


def test_every_control_format_and_separator_character_is_unsafe() -> None:
    """UNSAFE_RANGES is written out for speed; it covers what unicodedata calls a
    control, format, surrogate, line or paragraph separator."""
    missing = [
        f"U+{c:04X} {unicodedata.category(chr(c))}"
        for c in range(0x110000)
        if unicodedata.category(chr(c)) in UNSAFE_CATEGORIES and not UNSAFE.match(chr(c))
    ]
    assert missing == []
    # and nothing printable is escaped by mistake
    wrongly = [
        f"U+{c:04X}"
        for lo, hi in UNSAFE_RANGES
        for c in range(lo, hi + 1)
        if unicodedata.category(chr(c)) not in UNSAFE_CATEGORIES | {"Cn"}
    ]
    assert wrongly == []


@pytest.mark.parametrize(
    ("raw", "limit", "shown"),
    [
        ("abcdef", 6, "abcdef"),
        ("abcdef", 5, "abcd" + TRUNCATION_MARK),
        ("abcdef", 1, TRUNCATION_MARK),
        ("abcdef", 0, ""),
        ("ab\ncd", 5, "ab\\n" + TRUNCATION_MARK),  # the escape fits: 2 + 2 + 1
        ("ab\ncd", 4, "ab" + TRUNCATION_MARK),  # an escape is never cut in half
        ("a\u202e", 3, "a" + TRUNCATION_MARK),
        ("a\u202e", 7, "a\\u202e"),
        ("\n" * 1000, 7, "\\n\\n\\n" + TRUNCATION_MARK),
    ],
)
def test_limit_bounds_the_result_with_a_mark(raw: str, limit: int, shown: str) -> None:
    out = safe_text(raw, limit)
    assert out == shown
    assert len(out) <= limit


def test_limit_on_a_huge_text_only_reads_what_it_keeps() -> None:
    huge = "x\n" * 5_000_000
    assert safe_text(huge, 10) == "x\\nx\\nx\\n" + TRUNCATION_MARK


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        safe_text("a", -1)
