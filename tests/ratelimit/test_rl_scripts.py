"""Every Redis script decides as the reference arithmetic does, for any stored state
and any time: the script runs on the real server with the time handed in instead
of read from ``TIME`` (the rest of its source unchanged)."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from opskit._core.redis import LUA_NOW
from opskit.ratelimit import Rate
from opskit.ratelimit._algo import decide, ttl
from opskit.ratelimit._redis import _gcra_rates_decision, _plan, _rates_decision

RATES = [Rate(1, 1.0), Rate(3, 0.5), Rate(5, 60.0), Rate(7, 3600.0), Rate(10, 86400.0)]
ALGORITHMS = ["gcra", "fixed_window", "sliding_window"]


@st.composite
def cases(draw: Any) -> tuple[str, list[Rate], list[tuple[float, ...] | None], float, int]:
    algorithm = draw(st.sampled_from(ALGORITHMS))
    rates = draw(st.lists(st.sampled_from(RATES), min_size=1, max_size=3, unique=True))
    # Whole microseconds, never within 3 µs of a window's edge (every period here is a
    # multiple of half a second).
    micros = draw(st.integers(3, 499_996) | st.integers(500_003, 999_996))
    now = (draw(st.integers(1_700_000_000, 1_800_000_000)) * 1_000_000 + micros) / 1e6
    cost = draw(st.integers(1, min(r.limit for r in rates)))
    states: list[tuple[float, ...] | None] = []
    for rate in rates:
        if algorithm == "gcra":  # the arrival time, anywhere from a period ago to ahead
            ahead = draw(st.floats(-rate.per, rate.per * 1.5, allow_nan=False))
            states.append((now + ahead,))
            continue
        window = math.floor(now / rate.per) - draw(st.integers(0, 2))
        counts = [draw(st.integers(0, rate.limit))]
        if algorithm == "sliding_window":
            counts.append(draw(st.integers(0, rate.limit)))
        states.append((window, *counts))
    if draw(st.booleans()):  # a key that holds nothing yet
        states = [None] * len(rates)
    return algorithm, rates, states, now, cost


def flat(states: list[tuple[float, ...] | None]) -> tuple[float, ...]:
    return tuple(v for s in states if s is not None for v in s)


@settings(max_examples=300, deadline=None)
@given(case=cases())
def test_scripts_decide_as_the_reference(redis_server: Any, case: Any) -> None:
    algorithm, rates, states, now, cost = case
    # GCRA's reference runs on times relative to the whole second (the same instants,
    # exact): at epoch scale its own sums round to 2e-7 s, and its remaining count
    # with them. Windows are numbered from the epoch, so theirs runs on epoch time.
    base = math.floor(now) if algorithm == "gcra" else 0
    ref_states = [None if s is None else (s[0] - base, *s[1:]) for s in states]
    ref, new_states = decide(algorithm, rates, ref_states, now - base, cost)
    new_states = [(s[0] + base, *s[1:]) for s in new_states] if ref.allowed else new_states
    # The scripts may decide at the whole microsecond below ``now``: keep away from
    # the instants where that changes the outcome.
    for t in (now - base - 2e-6, now - base + 2e-6):
        near, _ = decide(algorithm, rates, ref_states, t, cost)
        assume((near.allowed, near.remaining) == (ref.allowed, ref.remaining))
        assume(all(math.floor((t + base) / r.per) == math.floor(now / r.per) for r in rates))

    script, decode, _ = _plan(algorithm, tuple(rates), ttl(algorithm, rates))
    assert script.source.count(LUA_NOW) == 1
    source = script.source.replace(LUA_NOW, "\nlocal now = tonumber(ARGV[3])\n")
    client = redis_server.client()
    try:
        if states[0] is None:
            client.delete("k")
        else:
            client.set("k", struct.pack(f"<{len(flat(states))}d", *flat(states)))
        before = client.get("k")
        d = decode(client.eval(source, 1, "k", str(cost), "1", repr(now)), cost)
        after = client.get("k")
    finally:
        client.close()

    assert (d.allowed, d.remaining) == (ref.allowed, ref.remaining)
    if algorithm != "gcra":  # GCRA's figures come from whole microseconds
        assert d.rate == ref.rate
    assert math.isclose(d.reset_after, ref.reset_after, abs_tol=2e-3)  # ms-packed replies
    assert math.isclose(d.retry_after, ref.retry_after, abs_tol=2e-3)
    if ref.allowed:  # the state kept is the reference's (exactly, but for GCRA's rounding)
        stored = struct.unpack(f"<{len(flat(new_states))}d", after)
        if algorithm == "gcra":
            assert stored == pytest.approx(flat(new_states), abs=1e-6, rel=0)
        else:
            assert stored == flat(new_states)
    else:  # a denied hit consumes nothing
        assert after == before


@settings(max_examples=500, deadline=None)
@given(
    rates=st.lists(st.sampled_from(RATES), min_size=2, max_size=3, unique=True),
    data=st.data(),
)
def test_gcra_rates_reader_picks_as_the_general_one(rates: list[Rate], data: Any) -> None:
    # The n-rate GCRA reader's allowed path skips a decision per rate; it must give the
    # general reader's decision (most_restrictive's pick, ties included) for any reply.
    cost = data.draw(st.integers(1, min(r.limit for r in rates)))
    offsets = [
        data.draw(st.sampled_from([0, int((r.per - cost * r.per / r.limit) * 1e6)])
                  | st.integers(0, int(r.per * 1e6)) | st.integers(-(10**8), -1))
        for r in rates
    ]  # fmt: skip
    reply = " ".join(map(str, offsets))
    fast = _gcra_rates_decision(rates, [(r.per, r.per / r.limit) for r in rates],
                                reply.encode(), cost)  # fmt: skip
    assert fast == _rates_decision("gcra", rates, reply, cost)


def test_gcra_rates_reader_counts_through_float_noise() -> None:
    # 7/hour, 3 spent: (3600 - 3 * 3600/7) / (3600/7) is 3.999999999999999 in floats.
    rates = [Rate(7, 3600.0), Rate(10, 86400.0)]
    d = _gcra_rates_decision(rates, [(r.per, r.per / r.limit) for r in rates], b"0 0", 3)
    assert (d.allowed, d.remaining, d.rate) == (True, 4, rates[0])
    assert d == _rates_decision("gcra", rates, b"0 0", 3)
