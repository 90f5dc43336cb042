"""The metric names a PromQL expression reads: a small lexer, enough to check a dashboard.

:func:`metric_names` walks the expression token by token, the way Prometheus' lexer
splits it, and keeps every identifier that stands where a metric name can stand:

* not followed by ``(`` (that is a function or an aggregation: ``rate(``, ``sum (``);
* not a keyword (``by``, ``without``, ``on``, ``ignoring``, ``group_left``,
  ``group_right``, ``and``, ``or``, ``unless``, ``offset``, ``bool``, ``atan2``), nor an
  aggregation operator (``sum by (x) (...)`` puts ``by`` between ``sum`` and its
  parenthesis), nor a number (``Inf``, ``NaN``);
* not inside ``{...}``: label names there are never metric names, but a
  ``__name__="x"`` matcher names metric ``x``, and so does a quoted name standing alone
  (Prometheus 3: ``{"x", job="y"}``); a regex on ``__name__`` cannot be checked and
  raises;
* not inside a string, a comment, or ``[...]`` (ranges and subquery steps);
* not in the label list after ``by``, ``without``, ``on``, ``ignoring``,
  ``group_left`` or ``group_right``.

Grafana's template variables must be substituted before (``$__rate_interval`` is not
PromQL); a ``$`` left over raises. :func:`family_of` maps a name to the family it
belongs to (``x_bucket``, ``x_sum``, ``x_count`` to the histogram ``x``; ``x_total`` to
the counter ``x``), given the families' types.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

AGGREGATIONS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    }
)
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = LABEL_LIST_KEYWORDS | {"and", "or", "unless", "offset", "bool", "atan2", "inf", "nan"}

_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+"
    r"|(?:[0-9]+(?:ms|[smhdwy]))+"  # a duration: 5m, 1h30m
    r"|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
)
_MATCH_OPERATOR = re.compile(r"\s*(=~|!~|!=|=)\s*")


class PromQLError(ValueError):
    """The expression cannot be read (unbalanced, a template variable, a regex name)."""


_GRAFANA_VARIABLE = re.compile(r"\$[A-Za-z_{]")
"""``$var`` or ``${var}`` in a string; ``$1`` (a regex group) is PromQL's own, and so is
``[[:alpha:]]`` (Grafana's ``[[var]]`` is refused outside strings)."""


def _skip_string(text: str, i: int) -> int:
    """The index after the string literal that starts at ``text[i]``."""
    quote = text[i]
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == "\\" and quote != "`":
            j += 2
            continue
        if c == quote:
            if _GRAFANA_VARIABLE.search(text, i, j):
                raise PromQLError(f"a template variable is left in {text[i : j + 1]}")
            return j + 1
        j += 1
    raise PromQLError(f"unterminated string at {i}: {text!r}")


def _string_value(literal: str) -> str:
    if literal[0] == "`":
        return literal[1:-1]
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def _skip_group(text: str, i: int, close: str) -> int:
    """The index after the ``close`` that ends the group opened at ``text[i]`` (strings
    inside are skipped, so a ``}`` in a label value does not end it)."""
    j = i + 1
    while j < len(text):
        c = text[j]
        if c in "\"'`":
            j = _skip_string(text, j)
            continue
        if c == "$":
            raise PromQLError(f"a template variable is left in {text!r}")
        if c == close:
            return j + 1
        j += 1
    raise PromQLError(f"unbalanced {text[i]!r} at {i}: {text!r}")


def _matcher_names(body: str) -> set[str]:
    """Metric names a ``{...}`` body names through ``__name__`` (usually none)."""
    names: set[str] = set()
    i = 0
    while i < len(body):
        c = body[i]
        if c in "\"'`":  # a quoted label name, or (Prometheus 3) a quoted metric name
            end = _skip_string(body, i)
            label = _string_value(body[i:end])
            op = _MATCH_OPERATOR.match(body, end)
            if op is None:
                names.add(label)  # {"my.metric", job="x"}
                i = end
                continue
        elif (m := _IDENTIFIER.match(body, i)) is not None:
            label, end = m.group(), m.end()
            op = _MATCH_OPERATOR.match(body, end)
            if op is None:
                raise PromQLError(f"label {label} without a matcher: {body!r}")
        else:
            i += 1  # commas, spaces
            continue
        i = op.end()
        if i >= len(body) or body[i] not in "\"'`":
            raise PromQLError(f"matcher {label}{op.group(1)} without a string: {body!r}")
        end = _skip_string(body, i)
        if label == "__name__":
            if op.group(1) != "=":
                raise PromQLError(f"__name__{op.group(1)}: a pattern of names cannot be checked")
            names.add(_string_value(body[i:end]))
        i = end
    return names


def selectors(expr: str) -> list[tuple[str, str]]:
    """Every vector selector of ``expr`` in order: (metric name, its text with the label
    matchers that follow it), e.g. ``("up", 'up{job="x"}')``. A selector that is only
    braces names its metric inside (``{__name__="up"}``); braces without a name (which
    Prometheus refuses without a non-empty matcher) give none."""
    found: list[tuple[str, str]] = []
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c.isspace():
            i += 1
        elif c == "#":
            end = expr.find("\n", i)
            i = n if end < 0 else end + 1
        elif c in "\"'`":
            i = _skip_string(expr, i)
        elif c == "{":  # braces standing alone: {__name__="x"}
            end = _skip_group(expr, i, "}")
            found += [(name, expr[i:end]) for name in sorted(_matcher_names(expr[i + 1 : end - 1]))]
            i = end
        elif c == "$" or expr.startswith("[[", i):
            raise PromQLError(f"a template variable is left in {expr!r}")
        elif c == "[":
            i = _skip_group(expr, i, "]")
        elif c.isdigit() or (c == "." and i + 1 < n and expr[i + 1].isdigit()):
            m = _NUMBER.match(expr, i)
            if m is None:  # pragma: no cover - the first character is a digit
                raise PromQLError(f"cannot read a number at {i}: {expr!r}")
            i = m.end()
        elif (m := _IDENTIFIER.match(expr, i)) is not None:
            word, start, i = m.group(), m.start(), m.end()
            j = i
            while j < n and expr[j].isspace():
                j += 1
            lower = word.lower()
            if lower in LABEL_LIST_KEYWORDS:
                if j < n and expr[j] == "(":
                    i = _skip_group(expr, j, ")")  # a list of label names
            elif lower in KEYWORDS or lower in AGGREGATIONS or (j < n and expr[j] == "("):
                pass  # a keyword, an aggregation, a function
            elif j < n and expr[j] == "{":
                i = _skip_group(expr, j, "}")
                _matcher_names(expr[j + 1 : i - 1])  # checks the matchers
                found.append((word, expr[start:i]))
            else:
                found.append((word, word))
        else:
            i += 1  # operators, parentheses, commas, @
    return found


def metric_names(expr: str) -> set[str]:
    """Every metric name ``expr`` selects (see the module's docstring)."""
    return {name for name, _ in selectors(expr)}


HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count", "_created")
COUNTER_SUFFIXES = ("_total", "_created")


def family_of(name: str, types: Mapping[str, str]) -> str | None:
    """The family ``name`` is a series of, from ``types`` (family name -> type, as
    prometheus_client's parser names families: counters without ``_total``); None when
    no family has it."""
    if types.get(name) in ("gauge", "untyped", "unknown", "info", "stateset", "summary"):
        return name  # a summary's quantiles are series of its own name
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and types.get(base) in ("histogram", "summary", "gaugehistogram"):
            return base
    for suffix in COUNTER_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and types.get(base) == "counter":
            return base
    return None
