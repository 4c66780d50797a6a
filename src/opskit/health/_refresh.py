"""Background refresh: every check runs once per interval, before any request asks.

One run of every check feeds every group: a group's report is the subset of
that run's results, so each check runs once per interval however many groups
it is in. Until the first run completes, reports read ``fail`` with the
output "no check has completed yet" (a pod is not ready before its checks ran).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING, Any

from opskit.health._report import HealthReport
from opskit.health._status import Status

if TYPE_CHECKING:
    from opskit.health._registry import HealthRegistry

__all__ = ["Refresher"]

ALL = "all"


class Refresher:
    def __init__(self, registry: HealthRegistry) -> None:
        self._registry = registry
        self._reports: dict[str, HealthReport] = {}
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: set once the first refresh since start() has completed
        self.ready = threading.Event()
        self.active = False

    def latest(self, key: str) -> HealthReport:
        report = self._reports.get(key)
        if report is not None:
            return report
        reg = self._registry
        return HealthReport(
            {}, group=None if key == ALL else key, time=None, service=reg.service,
            version=reg.version, release_id=reg.release_id, status=Status.FAIL,
            output="no check has completed yet",
        )  # fmt: skip

    async def refresh_once(self) -> None:
        reg = self._registry
        full = await reg._execute(ALL)
        reports = {ALL: full}
        for group in reg.groups:
            names = [n for n in reg.names if group in reg.groups_of(n) and n in full.checks]
            part = HealthReport(
                {n: full.checks[n] for n in names}, group=group, time=full.time,
                service=reg.service, version=reg.version, release_id=reg.release_id,
            )  # fmt: skip
            reg._record(group, part)
            reports[group] = part
        self._reports = reports
        self.ready.set()

    def start(self, interval: float) -> None:
        if self.active:
            raise RuntimeError("the background refresh is already running")
        self._stop.clear()
        self.ready.clear()
        self._reports = {}
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self.active = True
        if loop is not None:
            self._task = loop.create_task(self._loop(interval))
        else:
            self._thread = threading.Thread(
                target=self._run_thread, args=(interval,), name="opskit-health-refresh",
                daemon=True,
            )  # fmt: skip
            self._thread.start()

    async def _loop(self, interval: float) -> None:
        clock = self._registry._clock
        while True:
            await self._once_logged()
            await clock.asleep(interval)

    def _run_thread(self, interval: float) -> None:
        async def one() -> None:
            await self._once_logged()

        while not self._stop.is_set():
            asyncio.run(one())
            self._stop.wait(interval)

    async def _once_logged(self) -> None:
        try:
            await self.refresh_once()
        except Exception as exc:  # a refresh never dies of one bad run
            self._registry._safe_log("error", "health.refresh_failed", error=type(exc).__name__)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.stop_sync()

    def stop_sync(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._join_timeout())
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.active = False
        self._reports = {}

    def _join_timeout(self) -> float:
        reg: Any = self._registry
        return float(reg.default_timeout) + 5.0
