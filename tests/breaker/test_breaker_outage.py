"""Redis dies at the moment the breaker needs it: the local decision is kept (issue 14).

Every test kills a real redis-server (SIGKILL) and acts before the next sync is
due, so the first thing that meets the dead server is the trip's own flush, or a
half-open probe's permit. The breaker's time is a ManualClock; nothing sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from prometheus_client import CollectorRegistry
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from _redis import RedisServer
from opskit.breaker import CircuitBreaker, CircuitOpenError, RedisBreakerStore, State
from opskit.testing import ManualClock

POLICIES = ["local", "deny", "allow", "raise"]
STATE = "opskit:breaker:{pay}:state"
# What a failing call may surface: the dependency's error, or Redis's under "raise".
SURFACED = (ConnectionError, redis.ConnectionError)


def boom() -> None:
    raise ConnectionError("dependency down")


async def aboom() -> None:
    raise ConnectionError("dependency down")


def make(client: Any, clock: ManualClock, policy: str, **kw: Any) -> CircuitBreaker:
    """The issue's breaker: three failures in a row trip it, sync every 0.1 s."""
    kw.setdefault("consecutive_failures", 3)
    kw.setdefault("open_for", 30.0)
    store = RedisBreakerStore(client, sync_interval=0.1, on_error=policy)
    return CircuitBreaker("pay", clock=clock, registry=CollectorRegistry(), store=store, **kw)


@pytest.fixture
def client(restartable_redis: RedisServer) -> Iterator[redis.Redis]:
    c = restartable_redis.client(socket_timeout=1, socket_connect_timeout=1)
    c.flushdb()
    yield c
    c.close()


@pytest.fixture
async def aclient(restartable_redis: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    c = redis.asyncio.Redis.from_url(
        restartable_redis.url,
        retry=AsyncRetry(NoBackoff(), 0),
        socket_timeout=1,
        socket_connect_timeout=1,
    )
    await c.flushdb()
    yield c
    await c.aclose()


class Counted:
    """A dependency call that counts how often the breaker let it run."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return "ok"

    async def acall(self) -> str:
        self.calls += 1
        return "ok"


def assert_failure_surfaced(info: pytest.ExceptionInfo[BaseException], policy: str) -> None:
    """The caller sees the dependency's error, or under "raise" the Redis error
    (raised while the dependency's error was being recorded)."""
    if policy == "raise":
        assert isinstance(info.value, redis.ConnectionError)
        chain, exc = [], info.value.__context__
        while exc is not None:
            chain.append(exc)
            exc = exc.__context__
        assert any(str(e) == "dependency down" for e in chain)
    else:
        assert type(info.value) is ConnectionError
        assert str(info.value) == "dependency down"


def assert_open_after_trip(b: CircuitBreaker) -> None:
    snap = b.snapshot()
    assert snap.state is State.OPEN
    assert snap.times_opened == 1
    assert snap.consecutive_failures == 0
    assert snap.retry_after == pytest.approx(30.0)


def assert_next_call(b: CircuitBreaker, policy: str) -> None:
    """While Redis is down: "allow" passes the call, every other policy rejects it."""
    dep = Counted()
    if policy == "allow":
        assert b.call(dep) == "ok"
        assert dep.calls == 1
    else:
        with pytest.raises(CircuitOpenError) as info:
            b.call(dep)
        assert dep.calls == 0
        if policy != "deny":  # "deny" answers retry_after=sync_interval for the outage
            assert info.value.retry_after == pytest.approx(30.0)


async def assert_next_acall(b: CircuitBreaker, policy: str) -> None:
    dep = Counted()
    if policy == "allow":
        assert await b.call_async(dep.acall) == "ok"
        assert dep.calls == 1
    else:
        with pytest.raises(CircuitOpenError):
            await b.call_async(dep.acall)
        assert dep.calls == 0


def sync_driver(b: CircuitBreaker, how: str) -> Callable[[], Any]:
    return b(boom) if how == "decorator" else lambda: b.call(boom)


def async_driver(b: CircuitBreaker, how: str) -> Callable[[], Awaitable[Any]]:
    return b(aboom) if how == "decorator" else lambda: b.call_async(aboom)


# -- the trip is what finds Redis down ---------------------------------------------------


@pytest.mark.parametrize("how", ["call", "decorator"])
@pytest.mark.parametrize("policy", POLICIES)
def test_a_trip_whose_flush_finds_redis_dead_keeps_the_breaker_open(
    restartable_redis: RedisServer, client: redis.Redis, policy: str, how: str
) -> None:
    clock = ManualClock()
    b = make(client, clock, policy)
    failing = sync_driver(b, how)
    assert b.call(Counted()) == "ok"  # synced once; the next sync is due in 0.1 s
    restartable_redis.kill()
    for _ in range(2):
        with pytest.raises(ConnectionError):
            failing()  # no flush due: nothing has met the dead server yet
    with pytest.raises(SURFACED) as info:
        failing()  # the third trips it; its flush meets the dead server
    assert_failure_surfaced(info, policy)
    assert_open_after_trip(b)
    assert_next_call(b, policy)


@pytest.mark.parametrize("how", ["call_async", "decorator"])
@pytest.mark.parametrize("policy", POLICIES)
async def test_an_async_trip_whose_flush_finds_redis_dead_keeps_the_breaker_open(
    restartable_redis: RedisServer, aclient: redis.asyncio.Redis, policy: str, how: str
) -> None:
    clock = ManualClock()
    b = make(aclient, clock, policy)
    failing = async_driver(b, how)
    assert await b.call_async(Counted().acall) == "ok"
    restartable_redis.kill()
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await failing()
    with pytest.raises(SURFACED) as info:
        await failing()  # trips; flush_due makes the driver flush (amaybe_sync) at once
    assert_failure_surfaced(info, policy)
    assert_open_after_trip(b)
    await assert_next_acall(b, policy)


def test_the_kept_trip_opens_the_fleet_when_redis_comes_back_empty(
    restartable_redis: RedisServer, client: redis.Redis
) -> None:
    clock, other_clock = ManualClock(), ManualClock()
    b = make(client, clock, "local")
    b.call(Counted())
    restartable_redis.kill()
    for _ in range(3):
        with pytest.raises(ConnectionError):
            b.call(boom)
    assert b.state is State.OPEN
    restartable_redis.start()  # restarted with nothing in it (no persistence)
    clock.advance(0.1)
    dep = Counted()
    with pytest.raises(CircuitOpenError):
        b.call(dep)  # rejoins: the trip's outcomes are sent and the fleet opens on them
    assert dep.calls == 0
    assert client.hget(STATE, "state") == b"open"
    other = make(client, other_clock, "local")
    with pytest.raises(CircuitOpenError):
        other.call(dep)  # another process sees the fleet open
    assert dep.calls == 0


def test_a_kept_trip_whose_opening_is_over_is_not_replayed(
    restartable_redis: RedisServer, client: redis.Redis
) -> None:
    clock = ManualClock()
    b = make(client, clock, "local")
    b.call(Counted())
    restartable_redis.kill()
    for _ in range(3):
        with pytest.raises(ConnectionError):
            b.call(boom)
    restartable_redis.start()
    clock.advance(30.0)  # the local opening ran out while Redis was away
    dep = Counted()
    assert b.call(dep) == "ok"  # rejoins the (empty, closed) shared state
    assert dep.calls == 1
    assert client.hget(STATE, "state") in (None, b"closed")
    assert b.state is State.CLOSED


async def test_a_trip_made_while_another_tasks_sync_is_in_flight_waits_for_its_own_flush(
    restartable_redis: RedisServer, aclient: redis.asyncio.Redis
) -> None:
    clock = ManualClock()
    b = make(aclient, clock, "local")
    await b.call_async(Counted().acall)
    clock.advance(0.1)  # a sync is due

    async def kill_then_answer() -> str:
        restartable_redis.kill()  # after this task's sync came back, before any other
        return "ok"

    syncing = asyncio.ensure_future(b.call_async(kill_then_answer))
    for _ in range(100):  # until that task's flush waits for Redis's reply
        if b._store.sync_lock.locked():
            break
        await asyncio.sleep(0)
    assert b._store.sync_lock.locked()
    for _ in range(3):  # these trip it; its flush cannot start while the other is in flight
        with pytest.raises(ConnectionError):
            await b.call_async(aboom)
    # That flush carried none of the three failures; the trip's own flush, right
    # after this call, meets the dead server.
    assert await syncing == "ok"
    assert b.snapshot().state is State.OPEN
    dep = Counted()
    with pytest.raises(CircuitOpenError):
        await b.call_async(dep.acall)
    assert dep.calls == 0
    assert b.snapshot().times_opened == 1


def test_a_trip_with_redis_up_is_still_decided_by_the_fleet(client: redis.Redis) -> None:
    """Control: with Redis answering, the local trip's flush opens the shared state."""
    clock = ManualClock()
    b = make(client, clock, "local")
    b.call(Counted())
    for _ in range(3):
        with pytest.raises(ConnectionError):
            b.call(boom)
    assert client.hget(STATE, "state") == b"open"
    assert b.snapshot().state is State.OPEN


@pytest.mark.parametrize("policy", POLICIES)
def test_manual_states_are_kept_locally_when_redis_is_dead(
    restartable_redis: RedisServer, client: redis.Redis, policy: str
) -> None:
    b = make(client, ManualClock(), policy)
    b.call(Counted())
    restartable_redis.kill()
    if policy == "raise":
        with pytest.raises(redis.ConnectionError):
            b.force_open()
    else:
        b.force_open()
    assert b.snapshot().state is State.FORCED_OPEN
    if policy != "allow":  # "allow" passes every call while Redis is down
        with pytest.raises(CircuitOpenError):
            b.call(Counted())


# -- half-open: Redis dies while a probe runs ---------------------------------------------


def open_fleet_then_expire(client: redis.Redis, b: CircuitBreaker, clock: ManualClock) -> None:
    for _ in range(3):
        with pytest.raises(ConnectionError):
            b.call(boom)
    assert client.hget(STATE, "state") == b"open"
    client.hset(STATE, "until", "0")  # its open period is over on the Redis server
    clock.advance(30.0)


async def aopen_fleet_then_expire(
    client: redis.asyncio.Redis, b: CircuitBreaker, clock: ManualClock
) -> None:
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await b.call_async(aboom)
    assert await client.hget(STATE, "state") == b"open"
    await client.hset(STATE, "until", "0")
    clock.advance(30.0)


@pytest.mark.parametrize("policy", POLICIES)
def test_a_probe_that_fails_while_redis_dies_reopens_the_breaker(
    restartable_redis: RedisServer, client: redis.Redis, policy: str
) -> None:
    clock = ManualClock()
    b = make(client, clock, policy)
    open_fleet_then_expire(client, b, clock)

    def probe() -> None:
        assert b.snapshot().state is State.HALF_OPEN  # the fleet granted this probe
        restartable_redis.kill()
        raise ConnectionError("dependency down")

    with pytest.raises(SURFACED) as info:
        b.call(probe)  # releasing the fleet permit meets the dead server
    assert_failure_surfaced(info, policy)
    snap = b.snapshot()
    assert snap.state is State.OPEN  # the failed probe reopened it, not lost
    assert snap.half_open_in_flight == 0
    assert_next_call(b, policy)


@pytest.mark.parametrize("policy", ["local", "raise"])
def test_a_probe_that_succeeds_while_redis_dies_closes_the_breaker(
    restartable_redis: RedisServer, client: redis.Redis, policy: str
) -> None:
    clock = ManualClock()
    b = make(client, clock, policy)
    open_fleet_then_expire(client, b, clock)

    def probe() -> str:
        restartable_redis.kill()
        return "ok"

    if policy == "raise":
        with pytest.raises(redis.ConnectionError):
            b.call(probe)
    else:
        assert b.call(probe) == "ok"
    assert b.snapshot().state is State.CLOSED  # the local state settled the probe
    assert b.snapshot().half_open_in_flight == 0
    dep = Counted()
    assert b.call(dep) == "ok"
    assert dep.calls == 1


@pytest.mark.parametrize("policy", POLICIES)
def test_acquire_failing_while_the_fleet_probe_runs_admits_no_second_probe(
    restartable_redis: RedisServer, client: redis.Redis, policy: str
) -> None:
    clock = ManualClock()
    b = make(client, clock, policy)  # half_open_calls=1
    open_fleet_then_expire(client, b, clock)
    second = Counted()

    def probe() -> None:
        restartable_redis.kill()
        # Another caller arrives while this probe runs; its permit request meets the
        # dead server. Under "local" the local state counts this probe in flight.
        if policy == "raise":
            with pytest.raises(redis.ConnectionError):
                b.call(second)
        elif policy == "allow":
            assert b.call(second) == "ok"
        else:
            with pytest.raises(CircuitOpenError):
                b.call(second)
        raise ConnectionError("dependency down")

    with pytest.raises(SURFACED) as info:
        b.call(probe)
    assert_failure_surfaced(info, policy)
    assert second.calls == (1 if policy == "allow" else 0)
    assert b.snapshot().state is State.OPEN
    assert_next_call(b, policy)


@pytest.mark.parametrize("policy", POLICIES)
async def test_an_async_probe_that_fails_while_redis_dies_reopens_the_breaker(
    restartable_redis: RedisServer, aclient: redis.asyncio.Redis, policy: str
) -> None:
    clock = ManualClock()
    b = make(aclient, clock, policy)
    await aopen_fleet_then_expire(aclient, b, clock)
    second = Counted()

    async def probe() -> None:
        assert b.snapshot().state is State.HALF_OPEN
        restartable_redis.kill()
        if policy == "raise":
            with pytest.raises(redis.ConnectionError):
                await b.call_async(second.acall)
        elif policy == "allow":
            assert await b.call_async(second.acall) == "ok"
        else:
            with pytest.raises(CircuitOpenError):
                await b.call_async(second.acall)  # aacquire fails: no second probe
        raise ConnectionError("dependency down")

    with pytest.raises(SURFACED) as info:
        await b.call_async(probe)  # arelease meets the dead server
    assert_failure_surfaced(info, policy)
    assert second.calls == (1 if policy == "allow" else 0)
    snap = b.snapshot()
    assert snap.state is State.OPEN
    assert snap.half_open_in_flight == 0
    await assert_next_acall(b, policy)


async def test_an_async_probe_that_succeeds_while_redis_dies_closes_the_breaker(
    restartable_redis: RedisServer, aclient: redis.asyncio.Redis
) -> None:
    clock = ManualClock()
    b = make(aclient, clock, "local")
    await aopen_fleet_then_expire(aclient, b, clock)

    async def probe() -> str:
        restartable_redis.kill()
        return "ok"

    assert await b.call_async(probe) == "ok"
    assert b.snapshot().state is State.CLOSED
    dep = Counted()
    assert await b.call_async(dep.acall) == "ok"
    assert dep.calls == 1
