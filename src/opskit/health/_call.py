"""One call of one check: started once, waited for by every run that needs it.

Every call is represented by a ``concurrent.futures.Future`` (its "flight"),
so a run on any thread or event loop can wait for a call another run started:
a check still running is never started twice. Async checks run as tasks on
the loop of the run that started them, under their own timeout (cancelled
at it); sync checks run on the bounded pool, where a hung call keeps its
thread until it returns and every run meanwhile waits for that same call up
to the check's timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opskit._core.clock import Clock
from opskit.health._check import Check, call_sync, to_result
from opskit.health._pool import CheckPool
from opskit.health._redact import redact, safe_message
from opskit.health._status import CheckResult, Status

__all__ = ["Entry", "run_entry", "wait_flight"]


class _CheckTimeout(Exception):
    """Our own timeout, told apart from a TimeoutError the check raised itself."""


class _Raised(Exception):
    """Wraps a TimeoutError raised by an async check, so it reads as the check's error."""

    def __init__(self, original: BaseException) -> None:
        super().__init__()
        self.original = original


@dataclass(eq=False)
class Entry:
    name: str
    check: Check
    critical: bool
    groups: frozenset[str]
    timeout: float
    component_type: str | None
    component_id: str | None
    measurement: str | None
    flight: concurrent.futures.Future[Any] | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


async def wait_flight(future: concurrent.futures.Future[Any], timeout: float | None) -> Any:
    """Wait on this loop for a future any thread or loop completes, up to ``timeout``."""
    if not future.done():
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()

        def wake(_: object) -> None:
            # RuntimeError: that run's loop is closed; nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, waiter)

        future.add_done_callback(wake)
        await asyncio.wait_for(waiter, timeout)
    return future.result()


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _start(entry: Entry, pool: CheckPool, lock: threading.Lock) -> concurrent.futures.Future[Any]:
    with lock:
        flight = entry.flight
        if flight is not None and not flight.done():
            return flight  # still running from an earlier run: wait for that call
        if entry.check.is_async:
            flight = concurrent.futures.Future()
            flight.set_running_or_notify_cancel()
            loop = asyncio.get_running_loop()
            entry.task = loop.create_task(_call_async(entry.check.func, entry.timeout, flight))
        else:
            flight = pool.submit(functools.partial(call_sync, entry.check.func))
        entry.flight = flight
        return flight


async def run_entry(
    entry: Entry, pool: CheckPool, lock: threading.Lock, clock: Clock
) -> CheckResult:
    """Call ``entry``'s check (or wait for its running call); its entry in the report."""
    start = clock.monotonic()
    flight = _start(entry, pool, lock)
    try:
        result = to_result(await wait_flight(flight, entry.timeout))
    except (asyncio.TimeoutError, _CheckTimeout):
        flight.cancel()  # only succeeds while it waits for a thread: it never starts
        result = CheckResult(Status.FAIL, output=f"timed out after {entry.timeout:g} s")
    except Exception as exc:
        if isinstance(exc, _Raised):
            exc = exc.original  # type: ignore[assignment]
        result = CheckResult(Status.FAIL, output=type(exc).__name__, message=safe_message(exc))
    duration = clock.monotonic() - start
    status = result.status
    if status is Status.FAIL and not entry.critical:
        status = Status.WARN
    changes: dict[str, Any] = {"status": status, "duration": duration}
    if result.time is None:
        changes["time"] = clock.time()
    if result.observed_value is None:
        changes["observed_value"] = round(duration * 1000.0, 3)
        changes["observed_unit"] = "ms"
    if result.measurement is None and entry.measurement is not None:
        changes["measurement"] = entry.measurement
    if entry.component_type is not None and result.component_type is None:
        changes["component_type"] = entry.component_type
    if entry.component_id is not None and result.component_id is None:
        changes["component_id"] = entry.component_id
    if result.output is not None:
        changes["output"] = redact(result.output)
    if result.message is not None:
        changes["message"] = redact(result.message)
    return result.with_(**changes)


async def _call_async(
    func: Callable[[], Any], timeout: float, flight: concurrent.futures.Future[Any]
) -> None:
    try:
        value = await asyncio.wait_for(_invoke(func), timeout)
    except asyncio.TimeoutError:
        flight.set_exception(_CheckTimeout())
    except asyncio.CancelledError:
        flight.set_exception(_CheckTimeout())
        raise
    except BaseException as exc:
        flight.set_exception(exc)
    else:
        flight.set_result(value)


async def _invoke(func: Callable[[], Any]) -> Any:
    try:
        value = func()
        if hasattr(value, "__await__"):
            value = await value
        return value
    except asyncio.TimeoutError as exc:
        raise _Raised(exc) from exc
