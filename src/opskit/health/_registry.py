"""The registry: checks, concurrent runs under timeouts, cache, single flight.

A run calls every check of its group at once (``_call.run_entry``: each under
its own timeout, never started twice). Reports are cached per group on the
clock; concurrent runs of a group share one in-flight run, represented by a
``concurrent.futures.Future`` that runs on any thread or loop can wait for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from opskit._core.clock import Clock, resolve_clock
from opskit._core.telemetry import Metric, get_logger, publish
from opskit.health._call import Entry, run_entry, wait_flight
from opskit.health._check import as_check
from opskit.health._pool import CheckPool
from opskit.health._refresh import Refresher
from opskit.health._report import HealthReport
from opskit.health._status import Status

__all__ = ["HealthRegistry"]

_log = get_logger("health")
ALL = "all"
MIN_WORKERS = 8
F = TypeVar("F", bound=Callable[..., Any])


def _positive(name: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def _label(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not value or ":" in value or not value.isprintable():
        raise ValueError(f"{kind} {value!r} must be a non-empty printable string without ':'")
    return value


class HealthRegistry:
    """Named checks, run concurrently with timeouts, aggregated into reports.

    ``cache_ttl`` seconds (on ``clock``) a group's report is served again;
    ``default_timeout`` for checks added without ``timeout=``; ``max_workers``
    threads at most run synchronous checks (by default one per sync check,
    and at least 8). Metrics go to ``registry``.
    """

    def __init__(
        self,
        service: str | None = None,
        version: str | None = None,
        release_id: str | None = None,
        *,
        cache_ttl: float = 2.0,
        default_timeout: float = 1.0,
        max_workers: int | None = None,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if (
            isinstance(cache_ttl, bool)
            or not isinstance(cache_ttl, (int, float))
            or not math.isfinite(cache_ttl)
            or cache_ttl < 0
        ):
            raise ValueError(f"cache_ttl must be seconds >= 0, not {cache_ttl!r}")
        if max_workers is not None and (
            isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1
        ):
            raise ValueError(f"max_workers must be a whole number >= 1, not {max_workers!r}")
        self.service = service
        self.version = version
        self.release_id = release_id
        self.cache_ttl = float(cache_ttl)
        self.default_timeout = _positive("default_timeout", default_timeout)
        self._auto_workers = max_workers is None
        self._clock = resolve_clock(clock)
        self._entries: dict[str, Entry] = {}
        self._groups: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, HealthReport]] = {}
        self._flights: dict[str, concurrent.futures.Future[HealthReport]] = {}
        self._leaders: set[asyncio.Task[None]] = set()
        self._pool = CheckPool(MIN_WORKERS if max_workers is None else max_workers)
        self._draining = False
        self._last: dict[str, Status] = {}
        self._check_status: dict[str, float] = {}
        self._check_duration: dict[str, float] = {}
        self._group_status: dict[str, float] = {}
        self._refresher = Refresher(self)
        self._publication = publish(self._metrics, registry)

    # -- configuration ---------------------------------------------------------

    def add(
        self,
        name: str,
        check: Any,
        *,
        critical: bool = True,
        groups: Iterable[str] = (),
        timeout: float | None = None,
        component_type: str | None = None,
        component_id: str | None = None,
        measurement: str | None = None,
    ) -> None:
        """Register ``check`` (a ``checks.*`` object or any sync or async callable)."""
        _label("check name", name)
        if isinstance(groups, str):
            groups = {groups}
        group_set = frozenset(_label("group", g) for g in groups)
        if ALL in group_set:
            raise ValueError(f"group {ALL!r} is reserved for the run of every check")
        the_check = as_check(check)
        measure = measurement or the_check.measurement
        if measure is not None:
            _label("measurement", measure)
        entry = Entry(
            name=name,
            check=the_check,
            critical=bool(critical),
            groups=group_set,
            timeout=self.default_timeout if timeout is None else _positive("timeout", timeout),
            component_type=component_type or the_check.component_type,
            component_id=component_id,
            measurement=measure,
        )
        with self._lock:
            if name in self._entries:
                raise ValueError(f"a check named {name!r} is already registered")
            self._entries[name] = entry
            self._groups = self._groups | group_set
            self._cache.clear()
            if self._auto_workers:  # every sync check can run at once, and never fewer than 8
                sync = sum(not e.check.is_async for e in self._entries.values())
                self._pool.max_workers = max(MIN_WORKERS, sync)

    def check(self, name: str, **options: Any) -> Callable[[F], F]:
        """Decorator form of :meth:`add`; the function is returned unchanged."""

        def register(func: F) -> F:
            self.add(name, func, **options)
            return func

        return register

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def groups_of(self, name: str) -> frozenset[str]:
        return self._entries[name].groups

    @property
    def groups(self) -> frozenset[str]:
        """Every group some check declares."""
        return self._groups

    def _key(self, group: str | None) -> str:
        if group is None or group == ALL:
            return ALL
        declared = self.groups
        if not declared:
            return ALL  # no check declares a group: every group is every check
        if group not in declared:
            raise ValueError(
                f"no check declares the group {group!r} (declared: {', '.join(sorted(declared))})"
            )
        return group

    def _select(self, key: str) -> list[Entry]:
        entries = list(self._entries.values())
        return entries if key == ALL else [e for e in entries if key in e.groups]

    def invalidate(self) -> None:
        """Forget cached reports: the next run of each group runs its checks."""
        with self._lock:
            self._cache.clear()

    # -- draining ---------------------------------------------------------------

    def set_draining(self) -> None:
        """Shutdown began: from now on the readiness endpoint answers 503."""
        if not self._draining:
            self._draining = True
            self._safe_log("info", "health.draining", service=self.service)

    @property
    def draining(self) -> bool:
        return self._draining

    # -- runs ----------------------------------------------------------------------

    def cached(self, group: str | None = None) -> HealthReport | None:
        """The report :meth:`run` would serve now without running a check, else None."""
        key = ALL if group is None else self._key(group)
        if self._refresher.active:
            return self._refresher.latest(key)
        hit = self._cache.get(key)
        if hit is not None and self._clock.monotonic() < hit[0]:
            return hit[1]
        return None

    async def run(self, group: str | None = None) -> HealthReport:
        """Run ``group``'s checks (every check for None), or serve the cached report."""
        key = self._key(group)
        if self._refresher.active:
            return self._refresher.latest(key)
        now = self._clock.monotonic()
        hit = self._cache.get(key)  # a hit takes no lock: one dict read
        if hit is not None and now < hit[0]:
            return hit[1]
        joined = self._join(key, now)
        if isinstance(joined, HealthReport):
            return joined
        flight, lead = joined
        if lead:
            # The run is its own task: a requester that goes away does not cancel it.
            task = asyncio.get_running_loop().create_task(self._lead(key, flight))
            self._leaders.add(task)
            task.add_done_callback(self._leaders.discard)
        return await wait_flight(flight, None)  # type: ignore[no-any-return]

    def run_sync(self, group: str | None = None) -> HealthReport:
        """:meth:`run` from synchronous code (not from a running event loop's thread)."""
        key = self._key(group)
        if self._refresher.active:
            return self._refresher.latest(key)
        now = self._clock.monotonic()
        hit = self._cache.get(key)  # a hit takes no lock: one dict read
        if hit is not None and now < hit[0]:
            return hit[1]
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:  # waiting here would block the loop the checks may need
            raise RuntimeError("run_sync() was called on a running event loop; await run()")
        joined = self._join(key, now)
        if isinstance(joined, HealthReport):
            return joined
        flight, lead = joined
        if lead:
            asyncio.run(self._lead(key, flight))
        return flight.result()

    def _join(
        self, key: str, now: float
    ) -> HealthReport | tuple[concurrent.futures.Future[HealthReport], bool]:
        """Under the lock: the fresh cached report, or the key's flight and whether
        this caller leads it (a run may have finished since the lock-free read)."""
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now < hit[0]:
                return hit[1]
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = concurrent.futures.Future()
            flight.set_running_or_notify_cancel()
            return flight, True

    async def _lead(self, key: str, flight: concurrent.futures.Future[HealthReport]) -> None:
        try:
            report = await self._execute(key)
        except BaseException as exc:
            with self._lock:
                self._flights.pop(key, None)
            flight.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        with self._lock:
            if self.cache_ttl > 0:
                self._cache[key] = (self._clock.monotonic() + self.cache_ttl, report)
            self._flights.pop(key, None)
        flight.set_result(report)

    async def _execute(self, key: str) -> HealthReport:
        """Run the checks of ``key`` (a group, or ``"all"``) now, bypassing the cache."""
        entries = self._select(key)
        results = await asyncio.gather(
            *(run_entry(e, self._pool, self._lock, self._clock) for e in entries)
        )
        report = HealthReport(
            {e.name: r for e, r in zip(entries, results, strict=True)},
            group=None if key == ALL else key,
            time=self._clock.time(),
            service=self.service,
            version=self.version,
            release_id=self.release_id,
        )
        self._record(key, report)
        return report

    # -- telemetry ------------------------------------------------------------------

    def _record(self, key: str, report: HealthReport) -> None:
        """Update metrics from ``report``; log each check that stops (or starts) passing."""
        events: list[tuple[str, str, dict[str, Any]]] = []
        with self._lock:
            for name, result in report.checks.items():
                self._check_status[name] = result.status.gauge
                self._check_duration[name] = result.duration or 0.0
                before = self._last.get(name)
                if result.status is not Status.PASS and before in (None, Status.PASS):
                    events.append(("warning", "health.check_failed",
                                   {"check": name, "status": result.status.value,
                                    "output": result.output}))  # fmt: skip
                elif result.status is Status.PASS and before not in (None, Status.PASS):
                    events.append(("info", "health.check_recovered", {"check": name}))
                self._last[name] = result.status
            self._group_status[key] = report.status.gauge
        for level, event, fields in events:
            self._safe_log(level, event, service=self.service, **fields)

    def _safe_log(self, level: str, event: str, **fields: Any) -> None:
        with contextlib.suppress(Exception):  # telemetry never changes an outcome
            getattr(_log, level)(event, **fields)

    def _metrics(self) -> Iterator[Metric]:
        for name, value in list(self._check_status.items()):
            yield Metric("opskit_health_check_status", "gauge",
                         "Last result of a health check (1 pass, 0.5 warn, 0 fail)",
                         value, {"check": name})  # fmt: skip
        for name, value in list(self._check_duration.items()):
            yield Metric("opskit_health_check_duration_seconds", "gauge",
                         "Duration of a health check's last run", value,
                         {"check": name})  # fmt: skip
        for group, value in list(self._group_status.items()):
            yield Metric("opskit_health_status", "gauge",
                         "Last aggregated status of a group (1 pass, 0.5 warn, 0 fail)",
                         value, {"group": group})  # fmt: skip

    # -- background refresh -------------------------------------------------------------

    def start_refresh(self, interval: float = 5.0) -> None:
        """Run every check now and each ``interval`` seconds; requests read the latest.

        On a running event loop it is a task of that loop, else a daemon thread.
        """
        self._refresher.start(_positive("interval", interval))

    async def stop_refresh(self) -> None:
        """Stop the background refresh; runs go back to the cache."""
        await self._refresher.stop()

    def stop_refresh_sync(self) -> None:
        """:meth:`stop_refresh` for a refresh running on a thread."""
        self._refresher.stop_sync()

    @property
    def refreshing(self) -> bool:
        return self._refresher.active

    def close(self) -> None:
        """Stop publishing metrics and let the idle check threads exit."""
        self._refresher.stop_sync()
        self._publication.remove()
        self._pool.close()

    @property
    def max_workers(self) -> int:
        """The bound on the threads that run synchronous checks."""
        return self._pool.max_workers

    @property
    def thread_count(self) -> int:
        """Threads the synchronous checks' pool holds (at most ``max_workers``)."""
        return self._pool.thread_count

    def __repr__(self) -> str:
        return f"<HealthRegistry {self.service!r} checks={len(self._entries)}>"
