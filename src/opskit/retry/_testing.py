from __future__ import annotations

from types import TracebackType


class _Mode:
    __slots__ = ("attempts", "enabled")

    def __init__(self) -> None:
        self.enabled = False
        self.attempts: int | None = None


MODE = _Mode()


class testing:
    """Make every opskit retry policy skip its waits (for your test suite).

    ``testing()`` switches it on; ``testing(False)`` off; ``with testing(): ...``
    switches it on for the block and restores what was there before.
    ``attempts=`` also caps every policy's attempts (``attempts=1``: no retries).
    """

    __slots__ = ("_previous",)

    def __init__(self, enabled: bool = True, *, attempts: int | None = None) -> None:
        if attempts is not None and attempts < 1:
            raise ValueError(f"attempts must be >= 1, not {attempts!r}")
        self._previous = (MODE.enabled, MODE.attempts)
        MODE.enabled = enabled
        MODE.attempts = attempts if enabled else None

    def __enter__(self) -> testing:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        MODE.enabled, MODE.attempts = self._previous

    @staticmethod
    def active() -> bool:
        return MODE.enabled
