"""Checks that need no network: ``call``, ``breaker``, ``disk_free``."""

from __future__ import annotations

import inspect
import shutil
from collections.abc import Callable
from typing import Any

from opskit.health._check import Check, is_async_callable
from opskit.health._status import CheckResult, Status

__all__ = ["breaker", "call", "disk_free"]


def call(func: Callable[[], Any], *, component_type: str | None = None) -> Check:
    """Any sync or async callable: raising fails, returning passes (or the value's status)."""
    if not callable(func):
        raise TypeError(f"checks.call() takes a callable, not {type(func).__name__}")
    return Check(func, is_async_callable(func), component_type=component_type)


_FAILING = {"open", "forced_open"}


def _state_name(state: Any) -> str:
    value = getattr(state, "value", state)
    if not isinstance(value, str):
        value = getattr(state, "name", str(state))
    return str(value).strip().lower().replace("-", "_").replace(" ", "_")


def breaker(obj: Any, *, attribute: str = "state") -> Check:
    """A circuit breaker, read through ``obj.state`` (duck-typed, any library).

    ``open`` / ``forced_open`` fail (a non-critical check reads warn);
    ``half_open`` warns; anything else passes. ``state`` may be an enum whose
    value or name is one of these, or a string (``"half-open"`` is accepted).
    """
    if not hasattr(obj, attribute):
        raise TypeError(f"checks.breaker() needs an object with .{attribute}")

    def read() -> CheckResult:
        state = getattr(obj, attribute)
        if inspect.isawaitable(state):  # pragma: no cover - a property returning a coroutine
            close = getattr(state, "close", None)
            if close is not None:
                close()
            raise TypeError(f".{attribute} returned an awaitable")
        name = _state_name(state)
        if name in _FAILING:
            return CheckResult(Status.FAIL, output=f"breaker {name}", observed_value=name)
        if name == "half_open":
            return CheckResult(Status.WARN, output="breaker half_open", observed_value=name)
        return CheckResult(Status.PASS, observed_value=name)

    return Check(read, False, component_type="component", measurement="state")


def disk_free(path: str = "/", *, warn_below: float = 0.10, fail_below: float = 0.02) -> Check:
    """Free space of the filesystem holding ``path``, as free / total of ``shutil.disk_usage``.

    Below ``fail_below`` it fails, below ``warn_below`` it warns. The entry's
    measurement is ``utilization``: the used share in percent.
    """
    for label, value in (("warn_below", warn_below), ("fail_below", fail_below)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{label} must be a fraction between 0 and 1, not {value!r}")
    if fail_below > warn_below:
        raise ValueError(f"fail_below ({fail_below}) must not exceed warn_below ({warn_below})")

    def measure() -> CheckResult:
        usage = shutil.disk_usage(path)
        free = usage.free / usage.total if usage.total else 0.0
        used = round((1.0 - free) * 100.0, 2)
        text = f"{free:.1%} free"
        if free < fail_below:
            return CheckResult(Status.FAIL, observed_value=used, observed_unit="percent",
                               output=f"{text}, below {fail_below:.1%}")  # fmt: skip
        if free < warn_below:
            return CheckResult(Status.WARN, observed_value=used, observed_unit="percent",
                               output=f"{text}, below {warn_below:.1%}")  # fmt: skip
        return CheckResult(Status.PASS, observed_value=used, observed_unit="percent")

    return Check(measure, False, component_type="system", measurement="utilization")
