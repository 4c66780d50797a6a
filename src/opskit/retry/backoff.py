"""Backoff schedules with jitter, as in AWS's "Exponential Backoff and Jitter".

A schedule gives the wait before retry number ``n`` (1 for the first retry):

- ``constant(s)``: ``s``;
- ``linear(initial, increment, maximum)``: ``min(maximum, initial + increment*(n-1))``;
- ``exponential(initial, maximum, multiplier)``: ``min(maximum, initial * multiplier**(n-1))``;

then jitter: ``"none"`` (the schedule), ``"full"`` (``uniform(0, d)``), ``"equal"``
(``d/2 + uniform(0, d/2)``) or ``"decorrelated"`` (``min(maximum,
uniform(initial, previous*3))``, ``previous`` being the last wait, ``initial``
before the first). ``rng=random.Random(seed)`` makes waits reproducible.

Every schedule is also a tenacity ``wait`` (callable on a ``RetryCallState``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["JITTERS", "Backoff", "Jitter", "constant", "exponential", "linear"]

Jitter = Literal["none", "full", "equal", "decorrelated"]
JITTERS: tuple[str, ...] = ("none", "full", "equal", "decorrelated")


@dataclass(frozen=True)
class Backoff:
    """A wait schedule. Build it with :func:`constant`, :func:`linear` or :func:`exponential`."""

    kind: Literal["constant", "linear", "exponential"]
    initial: float
    maximum: float
    step: float  # linear increment, or exponential multiplier
    jitter: Jitter
    rng: random.Random | None = field(default=None, compare=False, repr=False)

    def base(self, retry_number: int) -> float:
        """The un-jittered wait before retry ``retry_number`` (1-based)."""
        n = max(retry_number, 1)
        if self.kind == "constant":
            d = self.initial
        elif self.kind == "linear":
            d = self.initial + self.step * (n - 1)
        else:
            try:
                d = self.initial * self.step ** (n - 1)
            except OverflowError:
                d = math.inf
        return min(d, self.maximum)

    def delay(self, retry_number: int, previous: float = 0.0) -> float:
        """The wait before retry ``retry_number``; ``previous`` is the last wait (decorrelated)."""
        uniform = (self.rng or random).uniform
        if self.jitter == "decorrelated":
            prev = max(previous, self.initial)
            return float(min(self.maximum, uniform(self.initial, prev * 3)))
        d = self.base(retry_number)
        if self.jitter == "none":
            return d
        if self.jitter == "full":
            return float(uniform(0.0, d))
        return float(d / 2 + uniform(0.0, d / 2))

    def __call__(self, retry_state: Any) -> float:
        """tenacity ``wait`` protocol: attempt 1 failed -> retry number 1."""
        return self.delay(retry_state.attempt_number, retry_state.upcoming_sleep)


def _check(name: str, value: float, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number of seconds, not {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, not {value!r}")
    return float(value)


def _jitter(jitter: str) -> Jitter:
    if jitter not in JITTERS:
        raise ValueError(f"jitter must be one of {', '.join(map(repr, JITTERS))}, not {jitter!r}")
    return jitter  # type: ignore[return-value]


def constant(
    seconds: float, *, jitter: Jitter = "none", rng: random.Random | None = None
) -> Backoff:
    """The same wait before every retry."""
    s = _check("seconds", seconds)
    return Backoff("constant", s, s, 0.0, _jitter(jitter), rng)


def linear(
    initial: float = 0.1,
    increment: float = 0.1,
    maximum: float = 10.0,
    *,
    jitter: Jitter = "none",
    rng: random.Random | None = None,
) -> Backoff:
    """``initial``, then ``increment`` more before each further retry, up to ``maximum``."""
    i, inc, m = (
        _check("initial", initial),
        _check("increment", increment),
        _check("maximum", maximum),
    )
    if m < i:
        raise ValueError(f"maximum must be >= initial, not {maximum!r} < {initial!r}")
    return Backoff("linear", i, m, inc, _jitter(jitter), rng)


def exponential(
    initial: float = 0.1,
    maximum: float = 10.0,
    multiplier: float = 2.0,
    *,
    jitter: Jitter = "full",
    rng: random.Random | None = None,
) -> Backoff:
    """``initial * multiplier**(n-1)`` before retry ``n``, up to ``maximum``, with jitter."""
    i, m = _check("initial", initial, positive=True), _check("maximum", maximum, positive=True)
    mult = _check("multiplier", multiplier)
    if mult < 1:
        raise ValueError(f"multiplier must be >= 1, not {multiplier!r}")
    if m < i:
        raise ValueError(f"maximum must be >= initial, not {maximum!r} < {initial!r}")
    return Backoff("exponential", i, m, mult, _jitter(jitter), rng)
