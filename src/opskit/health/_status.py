"""The status of a check or a report, and one check's result.

Statuses follow the health+json draft (``pass`` / ``warn`` / ``fail``) and are
ordered by severity, so the worst of several is ``max(...)``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["CheckResult", "Status"]

_RANK = {"pass": 0, "warn": 1, "fail": 2}


class Status(str, enum.Enum):
    """``PASS`` < ``WARN`` < ``FAIL``; the value is the draft's lowercase word."""

    PASS = "pass"  # noqa: S105 - a status word, not a password
    WARN = "warn"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        return _RANK[self.value]

    @property
    def gauge(self) -> float:
        """The metric encoding: 1 pass, 0.5 warn, 0 fail."""
        return (1.0, 0.5, 0.0)[_RANK[self.value]]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return _RANK[self.value] < _RANK[other.value]

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return _RANK[self.value] <= _RANK[other.value]

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return _RANK[self.value] > _RANK[other.value]

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return _RANK[self.value] >= _RANK[other.value]

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class CheckResult:
    """What one check found.

    A check may return one (or ``True``/``False``, a :class:`Status`, or ``None``
    for pass). The registry fills in what the check left out: ``time`` (epoch
    seconds from the registry's clock, when the result was produced),
    ``duration`` (seconds) and, unless the check set an observed value, the
    response time in milliseconds.

    ``output`` is shown to anyone who may see details; ``message`` (an
    exception's own text, URLs already stripped of userinfo, query and
    fragment) only when details are shown.
    """

    status: Status
    observed_value: Any = None
    observed_unit: str | None = None
    output: str | None = None
    measurement: str | None = None
    component_type: str | None = None
    component_id: str | None = None
    time: float | None = None
    duration: float | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.status, Status):  # a plain "warn" is accepted too
            try:  # type: ignore[unreachable]
                object.__setattr__(self, "status", Status(self.status))
            except ValueError:
                raise ValueError(
                    f"CheckResult status must be pass, warn or fail, not {self.status!r}"
                ) from None

    def with_(self, **changes: Any) -> CheckResult:
        """A copy with ``changes`` (``dataclasses.replace``)."""
        return replace(self, **changes)

    @property
    def ok(self) -> bool:
        """True unless the status is ``FAIL``."""
        return self.status is not Status.FAIL
