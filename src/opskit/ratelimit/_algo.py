"""Sans-IO rate limiting: the three algorithms over several rates, checked atomically.

State per (key, rate) is a small tuple; ``decide`` takes the current states and
the time and returns the decision and the new states (which the store keeps
only when the hit is allowed: a denied hit consumes nothing). The Lua script
in ``_redis.py`` is the same arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from opskit.ratelimit._rate import Rate

Algorithm = Literal["gcra", "sliding_window", "fixed_window"]
ALGORITHMS: tuple[str, ...] = ("gcra", "sliding_window", "fixed_window")
State = tuple[float, ...]


class Decision(NamedTuple):
    """The answer for one hit, for the most restrictive rate.

    ``remaining``: hits of cost 1 still allowed now; ``reset_after``: seconds
    until the rate's quota is whole again; ``retry_after``: seconds until this
    hit would be allowed (0 when it was).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float
    rate: Rate


# Decision's fields as a plain tuple (what ``RateLimiter._plain_hit`` answers).
DecisionTuple = tuple[bool, int, int, float, float, Rate]


def decide_one(algorithm: str, rate: Rate, state: State | None, now: float, cost: int
               ) -> tuple[bool, int, float, float, State]:  # fmt: skip
    """One rate: (allowed, remaining, reset_after, retry_after, the state to keep)."""
    L, P = rate.limit, rate.per
    if algorithm == "gcra":
        T = P / L
        tat = state[0] if state else now
        new_tat = max(tat, now) + cost * T
        used = new_tat - now
        if used <= P + 1e-9:
            return True, math.floor((P - used) / T + 1e-9), used, 0.0, (new_tat,)
        base = max(tat, now) - now
        return False, int(max(0.0, math.floor((P - base) / T + 1e-9))), base, used - P, (tat,)
    window = math.floor(now / P)
    if algorithm == "fixed_window":
        count = state[1] if state and state[0] == window else 0.0
        reset = (window + 1) * P - now
        if count + cost <= L:
            return True, int(L - count - cost), reset, 0.0, (window, count + cost)
        return False, int(max(0, L - count)), reset, reset, (window, count)
    # sliding window (two counters)
    if state and state[0] == window:
        prev, curr = state[1], state[2]
    elif state and state[0] == window - 1:
        prev, curr = state[2], 0.0
    else:
        prev, curr = 0.0, 0.0
    elapsed = now - window * P
    weight = 1.0 - elapsed / P
    estimate = prev * weight + curr
    reset = (P - elapsed) + (P if curr + cost > 0 else 0.0)
    if estimate + cost <= L + 1e-9:
        left = math.floor(L - estimate - cost + 1e-9)
        return True, max(0, left), reset, 0.0, (window, prev, curr + cost)
    room = L - cost
    if curr <= room and prev > 0:
        retry = P * (1.0 - (room - curr) / prev) - elapsed
    else:  # the next window, where this window's count becomes the previous one
        retry = (P - elapsed) + (P * (1.0 - room / curr) if curr > 0 else 0.0)
    left = int(max(0.0, math.floor(L - estimate + 1e-9)))
    return False, left, reset, max(retry, 0.0), (window, prev, curr)


def decide(algorithm: str, rates: Sequence[Rate], states: Sequence[State | None], now: float,
           cost: int) -> tuple[Decision, list[State]]:  # fmt: skip
    """Evaluate every rate; allowed only if all allow. Returns (decision, new states)."""
    if len(rates) == 1:
        rate = rates[0]
        ok, remaining, reset, retry, new = decide_one(algorithm, rate, states[0], now, cost)
        return Decision(ok, rate.limit, remaining, reset, retry, rate), [new]
    results = [decide_one(algorithm, r, s, now, cost) for r, s in zip(rates, states, strict=True)]
    decision = most_restrictive(rates, results)
    if decision.allowed:
        return decision, [r[4] for r in results]
    return decision, [s if s is not None else () for s in states]


def most_restrictive(rates: Sequence[Rate], results: Sequence[tuple[Any, ...]]) -> Decision:
    """One decision from each rate's ``(allowed, remaining, reset_after, retry_after,
    ...)``: allowed only if all allow; then the rate with the fewest remaining (the
    longest reset on a tie), else the one asking the longest wait (the fewest
    remaining on a tie), reporting the fewest remaining of all."""
    allowed = all([r[0] for r in results])
    pick, best = 0, results[0]
    if allowed:
        for k in range(1, len(results)):
            r = results[k]
            if r[1] < best[1] or (r[1] == best[1] and r[2] > best[2]):
                pick, best = k, r
        remaining = best[1]
    else:
        for k in range(1, len(results)):
            r = results[k]
            if r[3] > best[3] or (r[3] == best[3] and r[1] < best[1]):
                pick, best = k, r
        remaining = min([r[1] for r in results])
    rate = rates[pick]
    return Decision(allowed, rate.limit, remaining, best[2], best[3], rate)


def ttl(algorithm: str, rates: Sequence[Rate]) -> float:
    """How long a key's state must be kept."""
    longest = max(r.per for r in rates)
    return longest * 2 if algorithm == "sliding_window" else longest
