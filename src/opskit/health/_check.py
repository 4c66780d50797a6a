"""What a registered check is, and how its return value becomes a result."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opskit.health._status import CheckResult, Status

__all__ = ["Check", "as_check", "is_async_callable", "to_result"]


@dataclass(frozen=True)
class Check:
    """A check the registry can run: ``func()`` returns a :class:`CheckResult`,
    ``bool``, :class:`Status` or ``None`` (pass), or raises (fail).

    ``is_async``: ``func`` is awaited on the caller's event loop; otherwise it
    runs on the registry's bounded thread pool. ``component_type`` and
    ``measurement`` are defaults that ``HealthRegistry.add`` may override.
    """

    func: Callable[[], Any]
    is_async: bool
    component_type: str | None = None
    measurement: str | None = None


def is_async_callable(obj: Any) -> bool:
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(obj, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def as_check(obj: Any) -> Check:
    """``obj`` if it is a :class:`Check`, else a check around the callable ``obj``."""
    if isinstance(obj, Check):
        return obj
    if not callable(obj):
        raise TypeError(
            f"a health check is a callable or a checks.* object, not {type(obj).__name__}"
        )
    return Check(obj, is_async_callable(obj))


def to_result(value: Any) -> CheckResult:
    """A check's return value as a result: ``None``/``True`` pass, ``False`` fail."""
    if isinstance(value, CheckResult):
        return value
    if value is None or value is True:
        return CheckResult(Status.PASS)
    if value is False:
        return CheckResult(Status.FAIL, output="check returned False")
    if isinstance(value, Status):
        return CheckResult(value)
    return CheckResult(Status.FAIL, output=f"check returned an unexpected {type(value).__name__}")


def call_sync(func: Callable[[], Any]) -> Any:
    """Call a synchronous check on a pool thread; a returned awaitable is run to its end."""
    value = func()
    if inspect.isawaitable(value):
        return asyncio.run(_await(value))
    return value


async def _await(value: Any) -> Any:
    return await value
