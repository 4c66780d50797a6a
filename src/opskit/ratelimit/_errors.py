from __future__ import annotations

from typing import Any

from opskit import OpskitError


class RateLimitError(OpskitError):
    """Base of the rate limiter's errors."""


class RateLimitExceeded(RateLimitError):
    """A hit was not allowed. ``retry_after`` is the seconds until it would be.

    The message names the limiter only: never the key (an IP, a user, an API key).
    """

    def __init__(self, name: str, retry_after: float, decision: Any = None) -> None:
        super().__init__(f"rate limit {name!r} exceeded; retry after {retry_after:.3f}s")
        self.name = name
        self.retry_after = retry_after
        self.decision = decision

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.retry_after))
