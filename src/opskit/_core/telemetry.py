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

import contextlib
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "Metric",
    "Publication",
    "get_logger",
    "publish",
    "telemetry_errors",
    "telemetry_failed",
]

MetricKind = Literal["counter", "gauge"]


_TELEMETRY_ERRORS = "opskit_telemetry_errors_total"
_telemetry_errors: dict[str, int] = {"log": 0, "metrics": 0}
_warned = False


def telemetry_failed(kind: str, exc: BaseException) -> None:
    """Count a failed log or metrics call and warn once on stderr; never raises.

    A reliability primitive must not fail a call because its logging or its
    metrics failed (a closed stream, a raising processor, a broken sink). The
    failure is counted in ``opskit_telemetry_errors_total{kind}`` and reported
    once per process on stderr, with the error's type only: its message may
    hold anything the sink saw.
    """
    global _warned
    _telemetry_errors[kind] = _telemetry_errors.get(kind, 0) + 1
    if _warned:
        return
    _warned = True
    with contextlib.suppress(Exception):  # stderr itself may be what is broken
        sys.stderr.write(
            f"opskit: a {kind} call failed ({type(exc).__name__}) and was ignored; "
            f"opskit counts such failures in {_TELEMETRY_ERRORS} and warns only once\n"
        )


def telemetry_errors() -> dict[str, int]:
    """How many log and metrics calls have failed in this process, by kind."""
    return dict(_telemetry_errors)


class _SafeEmitter:
    """One log method of a bound logger; a failure inside it is counted, not raised."""

    __slots__ = ("method", "name", "values")

    def __init__(self, name: str, values: dict[str, Any], method: str) -> None:
        self.name = name
        self.values = values
        self.method = method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            bound = structlog.get_logger(self.name).bind(logger=self.name, **self.values)
            return getattr(bound, self.method)(*args, **kwargs)
        except Exception as exc:
            telemetry_failed("log", exc)
            return None


class _Logger:
    """A structlog logger named ``opskit.<module>`` that follows the configuration.

    Modules create their logger at import time; the service configures
    structlog later. So the bound logger is assembled when an event is logged
    (log calls are never on a hot path), not when the module is imported, and
    ``structlog.configure()`` / ``configure_logging()`` always take effect.

    Every log call is error-proof: whatever the configured processors, logger
    factory or stream raise is counted by :func:`telemetry_failed` and the
    call returns ``None``, so logging never changes the outcome of a call.
    """

    __slots__ = ("name", "values")

    def __init__(self, name: str, values: dict[str, Any] | None = None) -> None:
        self.name = name
        self.values = values or {}

    def bind(self, **values: Any) -> _Logger:
        return _Logger(self.name, {**self.values, **values})

    def __getattr__(self, method: str) -> Any:
        if method.startswith("__"):
            raise AttributeError(method)
        return _SafeEmitter(self.name, self.values, method)

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
        # name -> (kind, help, label names, {label values: value}). Instances that share a
        # name (the same breaker or limiter made twice, a framework that copies middleware
        # per route) give the same label set more than once: Prometheus rejects a scrape
        # with duplicate series, so counters are summed and gauges keep the largest value.
        merged: dict[str, tuple[str, str, tuple[str, ...], dict[tuple[str, ...], float]]] = {}
        for source in sources:
            try:
                samples = list(source())
            except Exception as exc:  # one broken source must not break the scrape
                telemetry_failed("metrics", exc)
                continue
            for m in samples:
                entry = merged.get(m.name)
                if entry is None:
                    entry = (m.kind, m.help, tuple(m.labels), {})
                    merged[m.name] = entry
                kind, _, names, values = entry
                key = tuple(str(m.labels.get(n, "")) for n in names)
                old = values.get(key)
                if old is None:
                    values[key] = m.value
                elif kind == "counter":
                    values[key] = old + m.value
                else:
                    values[key] = max(old, m.value)
        for name, (kind, help_, names, values) in merged.items():
            fam: CounterMetricFamily | GaugeMetricFamily
            if kind == "counter":
                base = name[: -len("_total")] if name.endswith("_total") else name
                fam = CounterMetricFamily(base, help_, labels=list(names))
            else:
                fam = GaugeMetricFamily(name, help_, labels=list(names))
            for key, value in values.items():
                fam.add_metric(list(key), value)
            yield fam
        errors = CounterMetricFamily(
            _TELEMETRY_ERRORS[: -len("_total")],
            "Log and metrics calls inside opskit that failed and were ignored.",
            labels=["kind"],
        )
        for kind, count in sorted(_telemetry_errors.items()):
            errors.add_metric([kind], count)
        yield errors


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
