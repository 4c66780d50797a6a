"""One call's retry state, for drivers that run their own attempt loop.

:meth:`Retry.begin` returns a :class:`RetryRun`. The driver makes an attempt,
judges its outcome itself (it may know more than the policy's ``on``, as an
HTTP transport knows status codes and methods), and asks the run what comes
next. The run applies the policy: attempts (capped by ``testing(attempts=)``),
backoff and Retry-After, the deadline, the budget. It counts the call once in
the policy's ``opskit_retry_*`` metrics and logs ``retry.scheduled`` /
``retry.exhausted`` as the policy's own drivers do. No I/O, no sleeping,
except in :meth:`RetryRun.sleep` / :meth:`RetryRun.asleep`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opskit._core.telemetry import get_logger
from opskit.retry._testing import MODE

if TYPE_CHECKING:
    from opskit.retry._policy import Retry

_log = get_logger("retry")

#: How a run may end, the policy's ``opskit_retry_calls_total`` outcomes.
REASONS = ("exhausted", "deadline_exceeded", "budget_exhausted")


class RetryRun:
    """The retry state of one call: attempt number, last wait, start time.

    ``attempt`` is the number of the attempt being made (1 for the first).
    After a retryable failure call :meth:`next_wait`: it returns the seconds to
    wait before the next attempt (and counts the retry), or ``None`` when the
    policy gives up, with the reason in :attr:`reason`. End every run with
    exactly one of :meth:`succeeded`, :meth:`failed` or a ``None`` from
    :meth:`next_wait`; later calls change nothing.
    """

    __slots__ = ("_done", "_policy", "attempt", "previous", "reason", "started")

    def __init__(self, policy: Retry) -> None:
        self._policy = policy
        self.started = policy.clock.monotonic()
        self.attempt = 1
        self.previous = 0.0
        self.reason: str | None = None
        self._done = False
        if policy.budget is not None:
            policy.budget.deposit()

    @property
    def elapsed(self) -> float:
        """Seconds since the run began, on the policy's clock."""
        return self._policy.clock.monotonic() - self.started

    def next_wait(
        self,
        *,
        retry_after: float | None = None,
        limit: float | None = None,
        error: BaseException | str | None = None,
        quiet: bool = False,
    ) -> float | None:
        """The wait before the next attempt, or ``None`` when the policy gives up.

        ``retry_after``: seconds the server asked for (Retry-After); the wait
        becomes ``max(backoff, min(retry_after, max_retry_after))``. ``limit``:
        seconds the caller has left (its own deadline); a wait longer than that
        gives up as ``deadline_exceeded``. ``error``: the failed attempt's
        error (or its name) for the log line; never its message unless the
        policy's ``log_error_messages`` says so. ``quiet``: no ``retry.scheduled``
        line, for a caller that logs its own line per retry (``retry.exhausted``
        is still logged).
        """
        if self._done:
            return None
        p = self._policy
        wait = p.next_wait(self.attempt, self.previous, retry_after)
        reason = None
        if self.attempt >= p.max_attempts:
            reason = "exhausted"
        elif (p.deadline is not None and self.elapsed + wait > p.deadline) or (
            limit is not None and wait > limit
        ):
            reason = "deadline_exceeded"
        elif p.budget is not None and not p.budget.try_withdraw():
            reason = "budget_exhausted"
        fields: dict[str, Any] = {"name": p.name, "attempt": self.attempt}
        if isinstance(error, BaseException):
            fields["error"] = type(error).__name__
            if p.log_error_messages:
                fields["message"] = str(error)
        else:
            fields["error"] = error
        if reason is not None:
            self._done = True
            self.reason = reason
            p._outcomes[reason] += 1
            _log.warning(
                "retry.exhausted",
                attempts=fields.pop("attempt"),
                elapsed=round(self.elapsed, 6),
                reason=reason,
                **fields,
            )
            return None
        p._retries += 1
        if not quiet:
            _log.info("retry.scheduled", wait=round(wait, 6), **fields)
        self.attempt += 1
        self.previous = wait
        return wait

    def succeeded(self) -> None:
        """The call ended well: counted ``first_try`` or ``recovered``."""
        if not self._done:
            self._done = True
            if self.attempt == 1:
                self._policy._first_try += 1
            else:
                self._policy._outcomes["recovered"] += 1

    def failed(self) -> None:
        """The call ended with an outcome not retried: counted ``failed``."""
        if not self._done:
            self._done = True
            self._policy._outcomes["failed"] += 1

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` through the policy's clock (skipped under ``testing()``)."""
        if not MODE.enabled:
            self._policy.clock.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        """Await ``seconds`` through the policy's clock (skipped under ``testing()``)."""
        if not MODE.enabled:
            await self._policy.clock.asleep(seconds)

    def __repr__(self) -> str:
        return f"RetryRun({self._policy.name!r}, attempt={self.attempt}, reason={self.reason!r})"
