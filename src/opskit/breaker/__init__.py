"""Circuit breaker: stop calling a failing dependency, probe it, recover.

::

    from opskit.breaker import CircuitBreaker, TimeWindow

    payments = CircuitBreaker("payments", failure_rate=0.5, minimum_calls=20,
                              window=TimeWindow(60), open_for=30.0)

    @payments
    def charge(...): ...
"""

from __future__ import annotations

from opskit.breaker._breaker import CircuitBreaker, Snapshot
from opskit.breaker._errors import BreakerError, CircuitOpenError
from opskit.breaker._redis import RedisBreakerStore
from opskit.breaker._state import State
from opskit.breaker._window import CountWindow, TimeWindow

__all__ = [
    "CircuitBreaker",
    "State",
    "CountWindow",
    "TimeWindow",
    "Snapshot",
    "BreakerError",
    "CircuitOpenError",
    "RedisBreakerStore",
]
