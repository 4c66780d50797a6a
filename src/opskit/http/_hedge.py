from __future__ import annotations

import math
from typing import Any

__all__ = ["Hedge"]


class Hedge:
    """Hedging: after ``after`` seconds without a usable response, start another attempt.

    One more each ``after`` seconds, up to ``max_extra`` (an attempt that fails
    early starts the next at once, as Polly's hedging does). Only requests that
    may be retried are hedged (a method in ``retry_methods``, or an
    ``Idempotency-Key``). The first usable response wins; the other attempts
    are cancelled (async) or closed as soon as they return (sync).
    """

    __slots__ = ("after", "max_extra")

    def __init__(self, after: float = 0.3, max_extra: int = 1) -> None:
        if (
            isinstance(after, bool)
            or not isinstance(after, (int, float))
            or not math.isfinite(after)
            or after <= 0
        ):
            raise ValueError(f"after must be seconds > 0, not {after!r}")
        if isinstance(max_extra, bool) or not isinstance(max_extra, int) or max_extra < 1:
            raise ValueError(f"max_extra must be an int >= 1, not {max_extra!r}")
        self.after = float(after)
        self.max_extra = max_extra

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, Hedge)
            and other.after == self.after
            and other.max_extra == self.max_extra
        )

    def __hash__(self) -> int:
        return hash((self.after, self.max_extra))

    def __repr__(self) -> str:
        return f"Hedge(after={self.after:g}, max_extra={self.max_extra})"
