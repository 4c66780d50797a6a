from __future__ import annotations

from opskit import OpskitError


class BreakerError(OpskitError):
    """Base of the circuit breaker's errors."""


class CircuitOpenError(BreakerError):
    """The breaker rejected the call without calling the function.

    ``retry_after`` is the number of seconds until a probe may be admitted
    (``None`` when the breaker was forced open and only ``reset()`` reopens it).
    The message names the breaker and nothing else.
    """

    def __init__(self, name: str, retry_after: float | None) -> None:
        super().__init__(f"circuit breaker {name!r} is open")
        self.name = name
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[type[CircuitOpenError], tuple[str, float | None]]:
        return (type(self), (self.name, self.retry_after))
