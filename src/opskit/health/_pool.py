"""A bounded pool of daemon threads for synchronous checks.

``concurrent.futures.ThreadPoolExecutor`` joins its threads at interpreter
exit, so one hung check would keep the process from exiting; these threads are
daemons. At most ``max_workers`` threads ever exist; they start on demand and
each call runs in the submitter's ``contextvars`` context.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["CheckPool"]

_ids = itertools.count(1)
_Item = tuple["concurrent.futures.Future[Any]", contextvars.Context, Callable[[], Any]]


class CheckPool:
    def __init__(self, max_workers: int, name: str = "opskit-health") -> None:
        self.max_workers = max_workers
        self._name = f"{name}-{next(_ids)}"
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False

    @property
    def thread_count(self) -> int:
        return sum(t.is_alive() for t in self._threads)

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run ``fn()`` on a pool thread in a copy of the caller's context."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the health check pool is closed")
            self._queue.put((future, contextvars.copy_context(), fn))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads) + 1}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, context, fn = item
            if future.set_running_or_notify_cancel():
                try:
                    result = context.run(fn)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                del future, context, fn, item
            self._idle.release()

    def close(self) -> None:
        """Let idle threads exit; a thread still in a hung check ends when it returns."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)
