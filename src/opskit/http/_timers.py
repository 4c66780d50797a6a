"""Timers for the async transport: many timers of one delay served by one loop timer.

Every attempt arms an attempt timeout and every hedged request a hedge delay,
almost always cancelled a few milliseconds later when the answer comes in. An
asyncio ``TimerHandle`` each costs an object, a heap push (Python-level
comparisons), a cancellation and the heap's clean-up. Timers of one delay come
due in the order they were armed, so a :class:`Wheel` keeps them in a queue
and arms one loop timer for the earliest; a cancelled timer is a cleared slot,
dropped when the loop timer next runs. A timer that would come due before the
last one queued (a shorter delay, e.g. an attempt cut short by the total
timeout) is an ordinary ``loop.call_at`` handle, so any order stays exact.

A wheel belongs to one event loop and is touched only from that loop's thread.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

__all__ = ["Wheel", "Cancellable"]

#: Timers due within the clock's resolution run now, as asyncio's own do.
_RESOLUTION = time.get_clock_info("monotonic").resolution


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class _Timer:
    """One queued timer: ``callback`` is ``None`` once it ran or was cancelled."""

    __slots__ = ("callback", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback: Callable[[], object] | None = callback

    def cancel(self) -> None:
        self.callback = None


class Wheel:
    """Timers on ``loop``, served by one loop timer while they come due in order."""

    __slots__ = ("_handle", "_queue", "_running", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._queue: deque[_Timer] = deque()
        self._handle: asyncio.TimerHandle | None = None
        self._running = False  # in _run: it arms the loop timer when it ends

    def call_at(self, when: float, callback: Callable[[], object]) -> Cancellable:
        """Call ``callback()`` at ``when`` (the loop's time) unless cancelled first."""
        queue = self._queue
        if queue and when < queue[-1].when:
            return self.loop.call_at(when, callback)  # out of order: a timer of its own
        timer = _Timer(when, callback)
        queue.append(timer)
        if self._handle is None and not self._running:
            self._handle = self.loop.call_at(when, self._run)
        return timer

    def __len__(self) -> int:
        """Timers queued (cancelled ones included until the loop timer next runs)."""
        return len(self._queue)

    def _run(self) -> None:
        self._handle = None
        self._running = True
        try:
            self._drain()
        finally:
            self._running = False

    def _drain(self) -> None:
        queue = self._queue
        due = self.loop.time() + _RESOLUTION
        while queue:
            timer = queue[0]
            callback = timer.callback
            if callback is None:
                queue.popleft()
            elif timer.when <= due:
                queue.popleft()
                timer.callback = None
                try:
                    callback()
                except Exception as exc:  # as the loop does for a failing callback
                    self.loop.call_exception_handler(
                        {"message": "Exception in a timer callback", "exception": exc}
                    )
            else:
                self._handle = self.loop.call_at(timer.when, self._run)
                return
