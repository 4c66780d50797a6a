"""Retry with backoff and jitter, on tenacity, with deadlines, Retry-After and budgets.

::

    from opskit.retry import Retry, backoff

    policy = Retry("payments", on=(ConnectionError, TimeoutError), attempts=3,
                   backoff=backoff.exponential(initial=0.1, maximum=10.0, jitter="full"))

    @policy
    def charge(...): ...
"""

from __future__ import annotations

from opskit.retry import backoff
from opskit.retry._budget import RetryBudget
from opskit.retry._policy import NEVER_RETRIED, Retry, RetryExhausted
from opskit.retry._retry_after import retry_after_from
from opskit.retry._run import RetryRun
from opskit.retry._testing import testing

__all__ = [
    "Retry",
    "RetryBudget",
    "RetryExhausted",
    "RetryRun",
    "backoff",
    "retry_after_from",
    "testing",
    "NEVER_RETRIED",
]
