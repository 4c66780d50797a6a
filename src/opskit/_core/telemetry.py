"""Logging and metrics plumbing shared by every primitive.

Loggers are structlog loggers named ``opskit.<module>``. Metrics are plain
integers a primitive keeps itself; :func:`publish` exposes them to Prometheus
through one custom collector per ``CollectorRegistry``, read at scrape time.
Several instances may publish the same metric names (different ``name`` label
values): their samples are merged into one family, so there is never a
"Duplicated timeseries" error, and :meth:`Publication.remove` takes an
instance's samples away again.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["Metric", "Publication", "get_logger", "publish"]

MetricKind = Literal["counter", "gauge"]


class _Logger:
    """A structlog logger named ``opskit.<module>`` that follows the configuration.

    Modules create their logger at import time; the service configures
    structlog later. So the bound logger is assembled when an event is logged
    (log calls are never on a hot path), not when the module is imported, and
    ``structlog.configure()`` / ``configure_logging()`` always take effect.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def bind(self, **values: Any) -> Any:
        return structlog.get_logger(self.name).bind(logger=self.name, **values)

    def __getattr__(self, method: str) -> Any:
        return getattr(self.bind(), method)

    def __repr__(self) -> str:
        return f"<opskit logger {self.name}>"


def get_logger(module: str) -> Any:
    """The structlog logger for ``opskit.<module>``; events are ``<module>.<event>``."""
    return _Logger(f"opskit.{module}")


@dataclass(frozen=True)
class Metric:
    """One sample: ``name`` is the full exposed name (counters end in ``_total``)."""

    name: str
    kind: MetricKind
    help: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


Source = Callable[[], Iterable[Metric]]


class _OpskitCollector(Collector):
    """Merges the samples of every published source into one family per name."""

    def __init__(self) -> None:
        self._sources: dict[int, Source] = {}
        self._lock = threading.Lock()
        self._next = 0

    def add(self, source: Source) -> int:
        with self._lock:
            self._next += 1
            self._sources[self._next] = source
            return self._next

    def discard(self, token: int) -> None:
        with self._lock:
            self._sources.pop(token, None)

    def describe(self) -> list[Any]:
        # Names are dynamic; describing none keeps the registry's duplicate check
        # away from this collector (several instances share names on purpose).
        return []

    def collect(self) -> Iterator[Any]:
        with self._lock:
            sources = list(self._sources.values())
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for source in sources:
            for m in source():
                fam = families.get(m.name)
                labels = dict(m.labels)
                if fam is None:
                    if m.kind == "counter":
                        base = m.name[: -len("_total")] if m.name.endswith("_total") else m.name
                        fam = CounterMetricFamily(base, m.help, labels=list(labels))
                    else:
                        fam = GaugeMetricFamily(m.name, m.help, labels=list(labels))
                    families[m.name] = fam
                fam.add_metric(list(labels.values()), m.value)
        yield from families.values()


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, _OpskitCollector] = (
    weakref.WeakKeyDictionary()
)
_collectors_lock = threading.Lock()


class Publication:
    """Handle returned by :func:`publish`; :meth:`remove` unpublishes (idempotent)."""

    __slots__ = ("__weakref__", "_collector", "_token")

    def __init__(self, collector: _OpskitCollector, token: int) -> None:
        self._collector: _OpskitCollector | None = collector
        self._token = token

    def remove(self) -> None:
        if self._collector is not None:
            self._collector.discard(self._token)
            self._collector = None

    @property
    def active(self) -> bool:
        return self._collector is not None


def publish(source: Source, registry: CollectorRegistry | None = None) -> Publication:
    """Expose ``source()``'s samples on ``registry`` (default: the global one) at scrape time.

    ``source`` is called on every scrape and must be cheap and non-blocking: it
    reads plain integers the primitive keeps. Label values must be bounded
    (instance name, outcome, scheme), never a key, tenant, IP or user.
    """
    reg = REGISTRY if registry is None else registry
    with _collectors_lock:
        collector = _collectors.get(reg)
        if collector is None:
            collector = _OpskitCollector()
            reg.register(collector)
            _collectors[reg] = collector
    return Publication(collector, collector.add(source))
