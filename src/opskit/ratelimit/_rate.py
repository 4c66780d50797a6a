from __future__ import annotations

import math
import re
from dataclasses import dataclass

_UNITS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
_RATE = re.compile(r"\s*(\d+)\s*(?:/|per)\s*(\d+)?\s*([a-z]+)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Rate:
    """``limit`` requests per ``per`` seconds.

    ``Rate(100, per=900)`` or ``Rate.parse("100/15minutes")``.
    """

    limit: int
    per: float

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"a rate's limit must be an int >= 1, not {self.limit!r}")
        if (
            isinstance(self.per, bool)
            or not isinstance(self.per, (int, float))
            or not math.isfinite(self.per)
            or self.per <= 0
        ):
            raise ValueError(f"a rate's period must be seconds > 0, not {self.per!r}")

    @classmethod
    def parse(cls, text: str | Rate) -> Rate:
        """``"100/15minutes"``, ``"10/second"``, ``"5 per 15 minutes"``, ``"1000/day"``."""
        if isinstance(text, Rate):
            return text
        if not isinstance(text, str):
            raise ValueError(f"a rate is a string like '100/15minutes' or a Rate, not {text!r}")
        m = _RATE.fullmatch(text)
        unit = _UNITS.get(m.group(3).lower()) if m else None
        if m is None or unit is None:
            raise ValueError(f"malformed rate {text!r}: expected like '100/15minutes'")
        count = int(m.group(2)) if m.group(2) else 1
        if count < 1:
            raise ValueError(f"malformed rate {text!r}: the period must be > 0")
        return cls(int(m.group(1)), float(count * unit))

    @property
    def interval(self) -> float:
        """Seconds between requests at the steady rate (GCRA's emission interval)."""
        return self.per / self.limit

    def __str__(self) -> str:
        per = int(self.per) if self.per == int(self.per) else self.per
        return f"{self.limit}/{per}s"
