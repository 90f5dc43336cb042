"""The Prometheus text format 0.0.4, written directly by collectors that can.

prometheus_client's ``generate_latest`` builds a sample object per series and
formats each one label by label; with thousands of per-resource series that
is most of a scrape's CPU. A :class:`TextCollector` writes its own families as
text (:meth:`TextCollector.render`) from label text it escaped once, and still
yields ordinary metric families from ``collect()`` for everything else that
reads a registry (``get_sample_value``, ``generate_latest``, tests).

:class:`ExpositionRegistry` is a ``CollectorRegistry`` that knows its
collectors in registration order: :meth:`ExpositionRegistry.exposition` asks
text collectors for their text and ``generate_latest`` for all the others, so
each family appears exactly once. :func:`exposition` does that for any
registry (a plain ``CollectorRegistry`` gets ``generate_latest``).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


def escape_label_value(value: str) -> str:
    """A label value for inside double quotes: backslash, newline and double quote escaped."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(doc: str) -> str:
    """A HELP text: backslash and newline escaped (double quotes stay as they are)."""
    return doc.replace("\\", "\\\\").replace("\n", "\\n")


def label_text(labels: Iterable[tuple[str, str]]) -> str:
    """``a="1",b="2"``: the labels sorted by name (as generate_latest writes them), values
    escaped. Label names are the code's own and are not escaped."""
    return ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sorted(labels))


def format_value(value: float) -> str:
    """A sample value as Prometheus (and generate_latest) writes it: ``+Inf``, ``-Inf``,
    ``NaN``, otherwise Python's repr, with Go's exponent for large positive values
    (``1.8e+09`` rather than ``1800000000.0``)."""
    text = repr(float(value))
    dot = text.find(".")
    if dot > 6 and value > 0:  # Go switches to an exponent sooner than Python does
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return _SPECIAL.get(text, text)


_SPECIAL = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}


def family_header(name: str, doc: str, type_: str) -> str:
    """The HELP and TYPE lines of a family (``name`` as exposed, with ``_total`` for counters)."""
    return f"# HELP {name} {escape_help(doc)}\n# TYPE {name} {type_}\n"


class TextCollector(ABC):
    """A collector that can also write its families in the text format itself.

    :meth:`render` must produce the same samples as ``generate_latest`` would
    from :meth:`collect`.
    """

    @abstractmethod
    def collect(self) -> Iterable[Metric]: ...

    @abstractmethod
    def render(self) -> str:
        """Every family of :meth:`collect` in the Prometheus text format 0.0.4."""


class _Collectors:
    """Several collectors as one, for ``generate_latest``."""

    def __init__(self, collectors: list[Collector]) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


class ExpositionRegistry(CollectorRegistry):
    """A ``CollectorRegistry`` whose :meth:`exposition` lets text collectors write their own
    families (see the module's docstring). ``target_info`` is not supported."""

    def __init__(self, auto_describe: bool = False) -> None:
        self._order: dict[Collector, None] = {}
        self._order_lock = threading.Lock()
        super().__init__(auto_describe=auto_describe)

    def register(self, collector: Collector) -> None:
        super().register(collector)
        with self._order_lock:
            self._order[collector] = None

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        with self._order_lock:
            self._order.pop(collector, None)

    def set_target_info(self, labels: dict[str, str] | None) -> None:
        if labels:
            raise ValueError("ExpositionRegistry does not support target_info")
        super().set_target_info(labels)

    def exposition(self) -> bytes:
        """The whole registry in the text format 0.0.4, each family once, in registration
        order."""
        with self._order_lock:
            collectors = list(self._order)
        parts: list[bytes] = []
        others: list[Collector] = []
        for collector in collectors:
            if isinstance(collector, TextCollector):
                if others:
                    parts.append(generate_latest(_Collectors(others)))
                    others = []
                parts.append(collector.render().encode())
            else:
                others.append(collector)
        if others:
            parts.append(generate_latest(_Collectors(others)))
        return b"".join(parts)


def exposition(registry: CollectorRegistry) -> bytes:
    """``registry`` in the text format: fast for an :class:`ExpositionRegistry`, else
    ``generate_latest``."""
    if isinstance(registry, ExpositionRegistry):
        return registry.exposition()
    return generate_latest(registry)
