from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from opskit import OpskitError
from opskit.ratelimit import (
    ConcurrencyLimiter,
    MemoryStore,
    Rate,
    RateLimiter,
    RateLimitError,
    RateLimitExceeded,
)
from opskit.testing import ManualClock


def limiter(rates: Any, clock: ManualClock, algorithm: str = "gcra", **kw: Any) -> RateLimiter:
    return RateLimiter("t", rates, algorithm=algorithm, clock=clock,
                       registry=CollectorRegistry(), **kw)  # fmt: skip


@pytest.mark.parametrize(
    ("text", "limit", "per"),
    [("100/15minutes", 100, 900.0), ("10/second", 10, 1.0), ("5 per 15 minutes", 5, 900.0),
     ("1000/day", 1000, 86400.0), ("3/2h", 3, 7200.0), (" 7 / s ", 7, 1.0)],
)  # fmt: skip
def test_rate_parsing(text: str, limit: int, per: float) -> None:
    assert Rate.parse(text) == Rate(limit, per)
    assert Rate(limit, per).interval == per / limit


@pytest.mark.parametrize("bad", ["", "100", "100/fortnight", "x/second", "0/second", "-1/s",
                                 "10/0seconds"])  # fmt: skip
def test_malformed_rates_name_the_string(bad: str) -> None:
    with pytest.raises(ValueError, match=r"rate|limit|period"):
        RateLimiter("t", [bad], registry=CollectorRegistry())


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="algorithm"):
        RateLimiter("t", "1/s", algorithm="leaky", registry=CollectorRegistry())
    with pytest.raises(ValueError, match="at least one"):
        RateLimiter("t", [], registry=CollectorRegistry())
    with pytest.raises(ValueError, match="period"):
        Rate(1, per=0)
    r = RateLimiter("t", ["5/minute", "100/hour"], registry=CollectorRegistry())
    with pytest.raises(ValueError, match="can never pass"):
        r.hit("k", cost=6)
    with pytest.raises(ValueError, match="cost"):
        r.hit("k", cost=0)


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window", "fixed_window"])
def test_burst_then_limited_with_retry_after(algorithm: str) -> None:
    clock = ManualClock(1000.0)
    r = limiter("5/10s", clock, algorithm)
    decisions = [r.hit("k") for _ in range(5)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
    denied = r.hit("k")
    assert not denied.allowed and denied.remaining == 0 and denied.retry_after > 0
    clock.advance(denied.retry_after)
    assert r.hit("k").allowed  # exactly when it said
    assert r.hit("other").allowed  # keys are independent


def test_gcra_steady_rate() -> None:
    clock = ManualClock(0.0)
    r = limiter("10/10s", clock)
    for _ in range(10):
        assert r.hit("k").allowed
    assert r.hit("k").retry_after == pytest.approx(1.0)
    clock.advance(1.0)
    assert r.hit("k").allowed
    assert not r.hit("k").allowed


def test_all_rates_must_allow_and_a_denied_hit_consumes_nothing() -> None:
    clock = ManualClock(0.0)
    r = limiter(["3/second", "5/minute"], clock)
    assert [r.hit("k").allowed for _ in range(4)] == [True, True, True, False]
    clock.advance(1)
    assert [r.hit("k").allowed for _ in range(3)] == [True, True, False]  # the minute rate
    d = r.hit("k")
    assert d.rate == Rate(5, 60.0) and d.limit == 5
    clock.advance(1)
    # The denied hits consumed nothing from the per-second rate either.
    assert r.peek("k").rate == Rate(5, 60.0)


def test_cost() -> None:
    clock = ManualClock(0.0)
    r = limiter("10/minute", clock, "fixed_window")
    assert r.hit("k", cost=7).remaining == 3
    assert not r.hit("k", cost=4).allowed
    assert r.hit("k", cost=3).allowed


def test_peek_and_reset() -> None:
    clock = ManualClock(0.0)
    for alg in ("gcra", "sliding_window", "fixed_window"):
        r = limiter("2/minute", clock, alg)
        assert r.peek("k").remaining == 1
        r.hit("k")
        r.hit("k")
        assert not r.peek("k").allowed
        assert not r.peek("k").allowed  # peeking counts nothing
        r.reset("k")
        assert r.hit("k").allowed


def test_acquire_waits_through_the_clock_and_times_out() -> None:
    clock = ManualClock(0.0)
    r = limiter("2/10s", clock)
    for _ in range(3):
        r.acquire("k")
    assert clock.sleeps == [pytest.approx(5.0)]
    with pytest.raises(RateLimitExceeded) as info:
        r.acquire("k", timeout=1.0)
    assert info.value.retry_after == pytest.approx(5.0)
    assert clock.sleeps == [pytest.approx(5.0)]  # did not wait for a wait it could not afford


async def test_async_api() -> None:
    clock = ManualClock(0.0)
    r = limiter("2/10s", clock)
    assert (await r.ahit("k")).allowed
    assert (await r.apeek("k")).remaining == 0
    await r.aacquire("k")
    await r.aacquire("k")
    assert clock.sleeps and clock.sleeps[0] == pytest.approx(5.0)
    await r.areset("k")
    assert (await r.ahit("k")).allowed


async def test_limit_decorator_sync_and_async() -> None:
    clock = ManualClock(0.0)
    r = limiter("1/minute", clock)

    @r.limit(key=lambda user_id: f"user:{user_id}")
    def export(user_id: int) -> str:
        return f"export {user_id}"

    @r.limit(key="global")
    async def job() -> str:
        return "ran"

    assert export(1) == "export 1"
    assert export(2) == "export 2"
    with pytest.raises(RateLimitExceeded) as info:
        export(1)
    err = info.value
    assert isinstance(err, RateLimitError) and isinstance(err, OpskitError)
    assert err.retry_after == pytest.approx(60.0)
    assert "user:1" not in str(err)  # keys are never in messages
    assert await job() == "ran"
    with pytest.raises(RateLimitExceeded):
        await job()


def test_metrics() -> None:
    reg = CollectorRegistry()
    r = RateLimiter("api", "1/minute", registry=reg, clock=ManualClock())
    r.hit("a")
    r.hit("a")
    assert reg.get_sample_value("opskit_ratelimit_decisions_total",
                                {"name": "api", "decision": "allowed"}) == 1  # fmt: skip
    assert reg.get_sample_value("opskit_ratelimit_decisions_total",
                                {"name": "api", "decision": "limited"}) == 1  # fmt: skip
    assert reg.get_sample_value("opskit_ratelimit_store_errors_total", {"name": "api"}) == 0
    r.close()
    assert "api" in repr(r)


def test_memory_store_sweeps_stale_keys() -> None:
    clock = ManualClock(0.0)
    store = MemoryStore()
    r = limiter("5/second", clock, store=store)
    for i in range(5000):
        r.hit(f"ip:{i}")
    clock.advance(10)
    for i in range(5000):
        r.hit(f"later:{i}")  # new keys trigger sweeps: the 5000 stale ones go
    assert len(store) <= 5000
    generic = RateLimiter("g", ["5/second", "50/minute"], algorithm="sliding_window",
                          store=store, clock=clock, registry=CollectorRegistry())  # fmt: skip
    for i in range(3000):
        generic.hit(f"x:{i}")
    assert len(store.table("g", "generic/sliding_window")) == 3000
    clock.advance(130)
    for i in range(3000):
        generic.hit(f"y:{i}")
    assert len(store.table("g", "generic/sliding_window")) < 6000  # the stale "x:" keys were swept


# -- reference models (hypothesis) ------------------------------------------------------


def reference(algorithm: str, limit: int, per: float, events: list[tuple[float, int]]
              ) -> list[bool]:  # fmt: skip
    """The algorithms written as plainly as possible: admitted (time, cost) history."""
    out: list[bool] = []
    admitted: list[tuple[float, int]] = []
    tat = -math.inf
    for now, cost in events:
        if algorithm == "gcra":
            t = per / limit
            new_tat = max(tat, now) + cost * t
            ok = new_tat - now <= per + 1e-9
            if ok:
                tat = new_tat
        elif algorithm == "fixed_window":
            w = math.floor(now / per)
            used = sum(c for ts, c in admitted if math.floor(ts / per) == w)
            ok = used + cost <= limit
        else:
            w = math.floor(now / per)
            curr = sum(c for ts, c in admitted if math.floor(ts / per) == w)
            prev = sum(c for ts, c in admitted if math.floor(ts / per) == w - 1)
            est = prev * (1 - (now - w * per) / per) + curr
            ok = est + cost <= limit + 1e-9
        if ok:
            admitted.append((now, cost))
        out.append(ok)
    return out


events_strategy = st.lists(
    st.tuples(st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0, 2.5, 7.0]), st.integers(1, 3)),
    min_size=1, max_size=60,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    algorithm=st.sampled_from(["gcra", "sliding_window", "fixed_window"]),
    limit=st.integers(3, 8),
    per=st.sampled_from([1.0, 5.0, 10.0]),
    steps=events_strategy,
)
def test_memory_matches_the_reference_and_never_over_admits(
    algorithm: str, limit: int, per: float, steps: list[tuple[float, int]]
) -> None:
    clock = ManualClock(1000.0)
    r = limiter(f"{limit}/{int(per)}s", clock, algorithm)
    events = []
    got = []
    for dt, cost in steps:
        clock.advance(dt)
        events.append((clock.monotonic(), cost))
        got.append(r.hit("k", cost=cost).allowed)
    assert got == reference(algorithm, limit, per, events)
    # The bound every algorithm promises: in any window of `per` seconds at most
    # `limit` (fixed window: per calendar window; GCRA: limit + elapsed/T).
    admitted = [(t, c) for (t, c), ok in zip(events, got, strict=True) if ok]
    for t0, _ in admitted:
        inside = sum(c for t, c in admitted if t0 <= t < t0 + per)
        bound = 2 * limit if algorithm == "fixed_window" else limit + math.ceil(limit)
        assert inside <= bound


class GenericStore(MemoryStore):
    """A MemoryStore the limiter does not recognise, so it takes the generic path."""


@settings(max_examples=150, deadline=None)
@given(
    algorithm=st.sampled_from(["gcra", "fixed_window", "sliding_window"]),
    limit=st.integers(1, 8),
    per=st.sampled_from([1.0, 3.0, 10.0]),
    steps=events_strategy,
)
def test_fast_paths_decide_exactly_as_the_generic_path(
    algorithm: str, limit: int, per: float, steps: list[tuple[float, int]]
) -> None:
    clock = ManualClock(1000.0)
    fast = limiter(f"{limit}/{int(per)}s", clock, algorithm)
    slow = limiter(f"{limit}/{int(per)}s", clock, algorithm, store=GenericStore())
    assert "hit" in vars(fast) and "hit" not in vars(slow)  # fast path vs generic
    # _plain_hit: the same decisions as plain tuples (what the ASGI middleware reads).
    plain = limiter(f"{limit}/{int(per)}s", clock, algorithm)._plain_hit()
    assert slow._plain_hit() == slow.hit
    for dt, cost in steps:
        clock.advance(dt)
        cost = min(cost, limit)
        for a, b in ((fast.peek("k"), slow.peek("k")), (fast.hit("k", cost), slow.hit("k", cost))):
            assert a == pytest.approx(b, abs=1e-9), (a, b)
            assert isinstance(a.remaining, int) and a.remaining >= 0
        tup = plain("k", cost)
        assert type(tup) is tuple and tup == pytest.approx(tuple(b), abs=1e-9), (tup, b)


def test_same_name_different_algorithms_keep_apart() -> None:
    clock, store = ManualClock(0.0), MemoryStore()
    for rates in ("2/minute", ["2/minute", "10/hour"]):
        lims = [RateLimiter("same", rates, algorithm=a, store=store, clock=clock,
                            registry=CollectorRegistry())
                for a in ("gcra", "fixed_window", "sliding_window")]  # fmt: skip
        for r in lims:
            assert [r.hit("k").allowed for _ in range(3)] == [True, True, False]


def test_fast_path_releases_the_lock_on_a_bad_key() -> None:
    for alg in ("gcra", "fixed_window", "sliding_window"):
        r = limiter("5/second", ManualClock(0.0), alg)
        with pytest.raises(TypeError):
            r.hit(["not", "hashable"])  # type: ignore[arg-type]
        assert r.hit("k").allowed  # would hang if the lock had been kept


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window"])
def test_window_tables_are_emptied_when_their_window_ends(algorithm: str) -> None:
    clock = ManualClock(0.0)
    store = MemoryStore()
    r = limiter("5/minute", clock, algorithm, store=store)
    for i in range(1000):
        r.hit(f"ip:{i}")
    assert len(store) == 1000
    clock.advance(120)  # two windows on: nothing is carried over, not even as "previous"
    assert r.hit("ip:0").remaining == 4
    assert len(store) == 1
    r.hit("ip:0")
    clock.advance(60)
    # the previous window still weighs in a sliding window (2 hits at full weight)
    assert r.hit("ip:0").remaining == (2 if algorithm == "sliding_window" else 4)
    r.reset("ip:0")
    assert r.hit("ip:0").remaining == 4  # reset clears both windows


def test_decision_counts_lose_nothing_to_threads() -> None:
    reg = CollectorRegistry()
    r = RateLimiter("busy", "3000/hour", registry=reg)
    per_thread = 2000

    def work() -> None:
        for _ in range(per_thread):
            r.hit("k")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    def sample(decision: str) -> float | None:
        return reg.get_sample_value("opskit_ratelimit_decisions_total",
                                    {"name": "busy", "decision": decision})  # fmt: skip

    assert sample("allowed") == 3000
    assert sample("limited") == 4 * per_thread - 3000
    assert sample("allowed") == 3000  # reading does not count
    assert r.counts["delayed"] == 0


# -- concurrency limiter -------------------------------------------------------------------


def test_concurrency_slots_full_release_and_lease() -> None:
    clock = ManualClock(0.0)
    c = ConcurrencyLimiter("exports", limit=2, lease=60, clock=clock, registry=CollectorRegistry())
    with c.slot("acme"), c.slot("acme"):
        with pytest.raises(RateLimitExceeded), c.slot("acme"):
            pass
        with c.slot("other"):
            pass
    with pytest.raises(ZeroDivisionError), c.slot("acme"):
        1 / 0  # noqa: B018
    with c.slot("acme"), c.slot("acme"):  # both released, also on the exception
        pass
    leaked = c.try_acquire("acme")  # a holder that died
    assert leaked is not None
    assert c.try_acquire("acme") is not None
    assert c.try_acquire("acme") is None
    clock.advance(60)
    assert c.try_acquire("acme") is not None  # reclaimed after the lease
    with pytest.raises(ValueError, match="limit"):
        ConcurrencyLimiter("x", limit=0)
    with pytest.raises(ValueError, match="lease"):
        ConcurrencyLimiter("x", limit=1, lease=0)


async def test_concurrency_slot_released_on_cancellation() -> None:
    c = ConcurrencyLimiter("exports", limit=1, registry=CollectorRegistry())
    started = asyncio.Event()

    async def hold() -> None:
        async with c.aslot("acme"):
            started.set()
            await asyncio.Event().wait()

    task = asyncio.ensure_future(hold())
    await started.wait()
    with pytest.raises(RateLimitExceeded):
        async with c.aslot("acme"):
            pass
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with c.aslot("acme"):
        pass
