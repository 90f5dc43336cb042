"""Every CRD pattern means the same to the offline validator (Python ``re`` through
schema.python_regex) as to the API server (Go regexp, RE2): checked against RE2 itself
(google-re2, which cel-python brings), on hostile strings and on generated ones."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from stackscaler.model.crds import KINDS, resource_schema
from stackscaler.model.schema import iter_schemas, python_pattern, python_regex
from stackscaler.text import UNSAFE_RANGES


def _patterns() -> Iterator[str]:
    seen: set[str] = set()
    for kind in KINDS:
        for _, node in iter_schemas(resource_schema(kind)):
            p = node.get("pattern")
            if p is not None and p not in seen:
                seen.add(p)
                yield p


PATTERNS = list(_patterns())
HOSTILE = [
    "",
    "web",
    "shop-web",
    "web\n",  # Python's `$` matches before a final newline, RE2's does not
    "web\r",
    "\nweb",
    "web\n2026-11-26T12:00:00.000Z ERROR forged",
    "web\u202e",
    "a b",
    " a",
    ":a",
    "a:b",
    "db--x",
    "db-",
    "s" * 41,
    "jobs.fifo",
    "https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
    "http://p:9090/\u00a0x",
    "arn:aws:iam::123456789012:role/web",
    "arn:aws-us-gov:iam::123456789012:role/team/app/web",
    "arn:aws:iam::123456789012:role/web\n",
    "Größe",
    "١٢٣",  # Arabic-Indic digits: \d is ASCII in RE2
    # every invisible character (but surrogates: JSON text cannot carry them)
    *(chr(lo) for lo, _ in UNSAFE_RANGES if lo != 0xD800),
    *(f"x{chr(hi)}y" for lo, hi in UNSAFE_RANGES if lo != 0xD800),
]


def test_the_crds_have_patterns() -> None:
    assert len(PATTERNS) >= 10


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pattern_is_valid_re2(pattern: str) -> None:
    re2.compile(pattern)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_python_and_re2_agree_on_hostile_strings(pattern: str) -> None:
    ours, theirs = python_regex(pattern), re2.compile(pattern)
    for text in HOSTILE:
        assert (ours.search(text) is not None) == (theirs.search(text) is not None), (
            f"{pattern!r} on {text!r}"
        )


_ALPHABET = st.sampled_from(
    [
        *"aZ09-_.:/ @+=,~",
        *("\n", "\r", "\t", "\x00", "\x7f", "\x85", "\u00a0", "\u202e", "\u2066", "\u200b"),
        *("\ufeff", "\U000e0041", "é", "名", "٣"),
    ]
)


@settings(max_examples=300, deadline=None)
@given(text=st.lists(_ALPHABET, max_size=12).map("".join), index=st.integers(0, 10_000))
def test_python_and_re2_agree_on_generated_strings(text: str, index: int) -> None:
    pattern = PATTERNS[index % len(PATTERNS)]
    ours = python_regex(pattern).search(text) is not None
    assert ours == (re2.search(pattern, text) is not None), f"{pattern!r} on {text!r}"


@pytest.mark.parametrize(
    ("re2_syntax", "python"),
    [
        (r"^[a-z]+$", r"^[a-z]+\Z"),
        (r"^[$]x\z", r"^[$]x\Z"),
        (r"[^\x{202e}\x00-\x1f]", r"[^\U0000202e\x00-\x1f]"),
        (r"[]$]$", r"[]$]\Z"),
        (r"[^]$]", r"[^]$]"),
        (r"a\$", r"a\$"),
    ],
)
def test_python_pattern_translation(re2_syntax: str, python: str) -> None:
    assert python_pattern(re2_syntax) == python
