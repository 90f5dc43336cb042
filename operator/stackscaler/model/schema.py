"""Builders for structural OpenAPI v3 schemas and their CEL rules.

The CRDs are written once, in :mod:`stackscaler.model.crds`, with these
builders. Every CEL rule (``x-kubernetes-validations``) is declared together
with its Python equivalent, so the API server (CEL) and ``stackscaler
validate`` / the operator (Python) enforce the same rule with the same
message. :data:`RULE_CHECKS` maps a CEL expression to its Python check.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

JSON = dict[str, Any]
Node = Mapping[str, Any]
"""A schema-validated, defaulted object node as the checks receive it."""

Check = Callable[[Node], bool]


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: CEL for the API server, ``check`` for offline use.

    ``field_path`` is relative to the node the rule sits on (``.minCapacity``),
    as in the CRD's ``x-kubernetes-validations[].fieldPath``.
    """

    cel: str
    message: str
    check: Check = field(compare=False)
    field_path: str = ""
    reason: str = "FieldValueInvalid"
    explain: Callable[[Node], str] | None = field(default=None, compare=False)
    """A richer offline message with the values. (No CEL messageExpression: the API
    server's cost estimator treats string(int) as unbounded and rejects the CRD.)"""

    def message_for(self, node: Node) -> str:
        if self.explain is not None:
            try:
                return self.explain(node)
            except (TypeError, KeyError, ValueError):
                pass
        return self.message

    def to_schema(self) -> JSON:
        out: JSON = {"rule": self.cel, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason != "FieldValueInvalid":
            out["reason"] = self.reason
        return out


RULE_CHECKS: dict[str, Rule] = {}
"""Every rule built so far, by CEL text. The validator looks rules up here."""


def _register(rules: Iterable[Rule]) -> list[JSON]:
    out = []
    for r in rules:
        known = RULE_CHECKS.get(r.cel)
        if known is not None and known != r:
            raise ValueError(f"CEL rule {r.cel!r} declared twice with different checks")
        RULE_CHECKS[r.cel] = r
        out.append(r.to_schema())
    return out


def _base(description: str, type_: str, default: Any) -> JSON:
    if not description:
        raise ValueError("every schema field needs a description")
    out: JSON = {"description": description, "type": type_}
    if default is not None:
        out["default"] = default
    return out


def obj(
    description: str,
    properties: Mapping[str, JSON],
    *,
    required: Sequence[str] = (),
    rules: Sequence[Rule] = (),
    default: JSON | None = None,
    preserve_unknown: bool = False,
) -> JSON:
    """An object with known properties; unknown fields are rejected (structural)."""
    out = _base(description, "object", default)
    if properties:
        out["properties"] = dict(properties)
    missing = [r for r in required if r not in properties]
    if missing:
        raise ValueError(f"required fields {missing} are not properties")
    if required:
        out["required"] = list(required)
    if preserve_unknown:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if rules:
        out["x-kubernetes-validations"] = _register(rules)
    return out


def integer(
    description: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    default: int | None = None,
    fmt: str | None = "int32",
) -> JSON:
    out = _base(description, "integer", default)
    if fmt:
        out["format"] = fmt
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    return out


def number(
    description: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    default: float | None = None,
) -> JSON:
    out = _base(description, "number", default)
    if minimum is not None:
        out["minimum"] = minimum
        if exclusive_minimum:
            out["exclusiveMinimum"] = True
    if maximum is not None:
        out["maximum"] = maximum
    return out


def string(
    description: str,
    *,
    enum: Sequence[str] | None = None,
    pattern: str | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    default: str | None = None,
    fmt: str | None = None,
) -> JSON:
    out = _base(description, "string", default)
    if enum is not None:
        out["enum"] = list(enum)
    if pattern is not None:
        out["pattern"] = pattern
    if min_length is not None:
        out["minLength"] = min_length
    if max_length is not None:
        out["maxLength"] = max_length
    if fmt is not None:
        out["format"] = fmt
    return out


def boolean(description: str, *, default: bool | None = None) -> JSON:
    return _base(description, "boolean", default)


def array(
    description: str,
    items: JSON,
    *,
    max_items: int,
    min_items: int | None = None,
    map_keys: Sequence[str] = (),
    rules: Sequence[Rule] = (),
) -> JSON:
    """A list; ``max_items`` is mandatory so CEL cost estimates stay bounded."""
    out = _base(description, "array", None)
    out["items"] = items
    out["maxItems"] = max_items
    if min_items is not None:
        out["minItems"] = min_items
    if map_keys:
        out["x-kubernetes-list-type"] = "map"
        out["x-kubernetes-list-map-keys"] = list(map_keys)
    else:
        out["x-kubernetes-list-type"] = "atomic"
    if rules:
        out["x-kubernetes-validations"] = _register(rules)
    return out


def rule(
    cel: str,
    message: str,
    check: Check,
    *,
    field_path: str = "",
    reason: str = "FieldValueInvalid",
    explain: Callable[[Node], str] | None = None,
) -> Rule:
    return Rule(
        cel=cel,
        message=message,
        check=check,
        field_path=field_path,
        reason=reason,
        explain=explain,
    )


def exactly_one(fields: Sequence[str], message: str, *, field_path: str = "") -> Rule:
    """CEL and Python for "exactly one of these optional fields is set"."""
    cel = " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields) + " == 1"
    names = tuple(fields)
    return rule(
        cel,
        message,
        lambda n: sum(1 for f in names if f in n) == 1,
        field_path=field_path,
        reason="FieldValueRequired",
    )


def only_when(kinds: Sequence[str], fields: Sequence[str]) -> Rule:
    """CEL and Python for "these fields may only be set when .kind is one of kinds"."""
    what = ", ".join(fields[:-1]) + " and " + fields[-1] if len(fields) > 1 else fields[0]
    kind_list = ", ".join(f"'{k}'" for k in kinds)
    absent = " && ".join(f"!has(self.{f})" for f in fields)
    cel = f"self.kind in [{kind_list}] || ({absent})"
    allowed, names = tuple(kinds), tuple(fields)
    return rule(
        cel,
        f"{what} apply only to target kind {' or '.join(kinds)}; remove them for this kind",
        lambda n: n.get("kind") in allowed or not any(f in n for f in names),
        reason="FieldValueForbidden",
    )


def python_pattern(pattern: str) -> str:
    """An OpenAPI ``pattern`` as the API server reads it (Go regexp, RE2 syntax), spelt
    for Python's :mod:`re`, so the offline validator accepts exactly what the server does.

    * ``\\x{202e}`` (RE2 only) becomes ``\\U0000202e``;
    * ``$`` outside a class becomes ``\\Z``, and ``\\z`` too: RE2's ``$`` matches at the
      end of the text only, Python's also before a final newline (``^[a-z]+$`` would
      take ``"web\\n"``);
    * :func:`python_regex` compiles with ``re.ASCII``: ``\\d``, ``\\w``, ``\\s`` are ASCII
      in RE2.

    Only what the CRDs use is supported; ``tests/unit/test_patterns.py`` checks every
    pattern against RE2 itself.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1 : i + 2]
            if nxt == "x" and pattern[i + 2 : i + 3] == "{":
                end = pattern.index("}", i)
                out.append(f"\\U{int(pattern[i + 3 : end], 16):08x}")
                i = end + 1
                continue
            out.append("\\Z" if nxt == "z" and not in_class else pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append(c)
        elif c == "[":
            in_class = True
            out.append(c)
            # a ']' right after '[' or '[^' is a literal member, not the end
            for lead in ("^", "]"):
                if pattern[i + 1 : i + 2] == lead:
                    out.append(lead)
                    i += 1
        elif c == "$":
            out.append("\\Z")
        else:
            out.append(c)
        i += 1
    return "".join(out)


@cache
def python_regex(pattern: str) -> re.Pattern[str]:
    """:func:`python_pattern` compiled (cached); use ``.search`` as OpenAPI does."""
    return re.compile(python_pattern(pattern), re.ASCII)


def iter_schemas(schema: Node, path: str = "") -> Iterable[tuple[str, Node]]:
    """Every (path, sub-schema) in a schema tree, depth first, the root included."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from iter_schemas(sub, f"{path}.{name}")
    if "items" in schema:
        yield from iter_schemas(schema["items"], f"{path}[]")
