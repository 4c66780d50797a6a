"""Fleet-wide breaker state on real Redis, Redis Cluster, and across real processes."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import threading
from typing import Any

import pytest
import redis
import structlog
from prometheus_client import CollectorRegistry

from _redis import RedisServer
from opskit.breaker import (
    CircuitBreaker,
    CircuitOpenError,
    CountWindow,
    RedisBreakerStore,
    State,
    TimeWindow,
)
from opskit.testing import ManualClock


def boom() -> None:
    raise ConnectionError("down")


def ok() -> str:
    return "ok"


def breaker(client: Any, clock: ManualClock, name: str = "pay", **kw: Any) -> CircuitBreaker:
    store_kw = {k: kw.pop(k) for k in ("on_error", "sync_interval") if k in kw}
    store_kw.setdefault("sync_interval", 0.5)
    kw.setdefault("minimum_calls", 4)
    kw.setdefault("window", CountWindow(10))
    kw.setdefault("open_for", 30.0)
    return CircuitBreaker(name, clock=clock, registry=CollectorRegistry(),
                          store=RedisBreakerStore(client, **store_kw), **kw)  # fmt: skip


def fail(b: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(ConnectionError):
            b.call(boom)


def expire_open_state(client: Any, name: str = "pay") -> None:
    """The shared open period is over (as if its time had passed on the Redis server)."""
    client.hset(f"opskit:breaker:{{{name}}}:state", "until", "0")


def test_outcomes_from_two_processes_open_the_shared_breaker(redis_client: redis.Redis) -> None:
    c1, c2 = ManualClock(), ManualClock()
    b1, b2 = breaker(redis_client, c1), breaker(redis_client, c2)
    fail(b1, 2)
    fail(b2, 2)  # neither reached minimum_calls alone
    assert b1.state is State.CLOSED and b2.state is State.CLOSED
    c1.advance(0.5)
    b1.call(ok)  # b1 flushes 2 failures ...
    c2.advance(0.5)
    with pytest.raises(CircuitOpenError) as info:
        b2.call(ok)  # ... b2 flushes 2 more: 4 of 5 failed fleet-wide, it opens for everyone
    assert info.value.retry_after == pytest.approx(30, abs=1)
    c1.advance(0.5)
    assert b1.state is State.OPEN
    assert redis_client.hget("opskit:breaker:{pay}:state", "state") == b"open"


def test_the_closed_path_does_no_round_trip_per_call(redis_client: redis.Redis) -> None:
    clock = ManualClock()
    b = breaker(redis_client, clock, sync_interval=0.5)
    wrapped = b(ok)
    wrapped()
    redis_client.config_resetstat()
    for _ in range(1000):
        wrapped()
    clock.advance(0.5)
    for _ in range(1000):
        b.call(ok)
    stats = redis_client.info("commandstats")
    scripts = sum(v["calls"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))
    assert scripts == 1  # one flush for 2000 calls


def test_half_open_permits_are_granted_by_redis(redis_client: redis.Redis) -> None:
    c1, c2 = ManualClock(), ManualClock()
    b1 = breaker(redis_client, c1, sync_interval=0)
    b2 = breaker(redis_client, c2, sync_interval=0)
    fail(b1, 4)
    assert b2.state is State.OPEN
    expire_open_state(redis_client)
    c1.advance(30)
    c2.advance(30)
    permit = b1._admit()  # b1's probe is running
    with pytest.raises(CircuitOpenError):
        b2.call(ok)  # the fleet has one permit and b1 holds it
    b1._finish(permit, 0, 0.0)  # the probe succeeded
    assert redis_client.hget("opskit:breaker:{pay}:state", "state") == b"closed"
    assert b2.call(ok) == "ok"
    assert b2.state is State.CLOSED


def test_a_failed_probe_reopens_the_fleet_with_backoff(redis_client: redis.Redis) -> None:
    clock = ManualClock()
    b = breaker(redis_client, clock, sync_interval=0, open_for=lambda n: 10.0 * n)
    fail(b, 4)
    expire_open_state(redis_client)
    clock.advance(10)
    fail(b, 1)
    with pytest.raises(CircuitOpenError) as info:
        b.call(ok)
    assert info.value.retry_after == pytest.approx(20, abs=1)  # the second opening
    assert redis_client.hget("opskit:breaker:{pay}:state", "opened") == b"2"


def test_probe_timeout_reclaims_a_fleet_permit(redis_client: redis.Redis) -> None:
    clock = ManualClock()
    b = breaker(redis_client, clock, sync_interval=0, probe_timeout=0.001)
    fail(b, 4)
    expire_open_state(redis_client)
    clock.advance(30)
    b._admit()  # a probe that never reports
    redis_client.zadd("opskit:breaker:{pay}:permits", {"ghost": 0}, xx=False)
    # Its lease (and the ghost's) ran out on the server: the next probe is admitted.
    redis_client.zremrangebyscore("opskit:breaker:{pay}:permits", "-inf", "+inf")
    assert b.call(ok) == "ok"


def test_force_open_and_reset_are_fleet_wide(redis_client: redis.Redis) -> None:
    c1, c2 = ManualClock(), ManualClock()
    b1 = breaker(redis_client, c1, sync_interval=0)
    b2 = breaker(redis_client, c2, sync_interval=0)
    b1.force_open()
    with pytest.raises(CircuitOpenError) as info:
        b2.call(ok)
    assert info.value.retry_after is None
    b2.reset()
    assert b1.call(ok) == "ok"
    assert b1.state is State.CLOSED


def test_time_window_on_redis(redis_client: redis.Redis) -> None:
    clock = ManualClock()
    b = breaker(redis_client, clock, sync_interval=0, window=TimeWindow(60), minimum_calls=3)
    fail(b, 2)
    b.call(ok)
    with pytest.raises(CircuitOpenError):
        b.call(ok)  # 2 of 3 in the shared time window
    fields = redis_client.hgetall("opskit:breaker:{pay}:window")
    assert fields == {}  # cleared when it opened


def test_redis_killed_keeps_it_working_locally_then_it_rejoins(
    restartable_redis: RedisServer,
) -> None:
    client = restartable_redis.client(socket_timeout=1, socket_connect_timeout=1)
    client.flushdb()
    clock = ManualClock()
    b = breaker(client, clock, sync_interval=0.5)
    b.call(ok)
    restartable_redis.kill()
    clock.advance(0.5)
    with structlog.testing.capture_logs() as logs:
        b.call(ok)  # the flush fails: local mode, nothing raised
        fail(b, 2)  # ... and the local breaker still opens (2 of 4 >= 0.5)
    assert b.state is State.OPEN
    with pytest.raises(CircuitOpenError):
        b.call(ok)
    assert [e["event"] for e in logs].count("breaker.store_unavailable") == 1
    restartable_redis.start()
    clock.advance(30)
    with structlog.testing.capture_logs() as logs:
        assert b.call(ok) == "ok"  # rejoins: the (restarted, empty) shared state is closed
    assert "breaker.store_recovered" in [e["event"] for e in logs]
    assert b.state is State.CLOSED
    client.close()


@pytest.mark.parametrize("policy", ["raise", "deny", "allow"])
def test_outage_policies(restartable_redis: RedisServer, policy: str) -> None:
    client = restartable_redis.client(socket_timeout=1, socket_connect_timeout=1)
    client.flushdb()
    clock = ManualClock()
    b = breaker(client, clock, sync_interval=0.5, on_error=policy)
    b.call(ok)
    restartable_redis.kill()
    clock.advance(1)
    if policy == "raise":
        with pytest.raises(redis.ConnectionError):
            b.call(ok)
    elif policy == "deny":  # fail closed: nothing passes while the shared state is unknown
        with pytest.raises(CircuitOpenError) as info:
            b.call(ok)
        assert info.value.retry_after == 0.5
        with pytest.raises(CircuitOpenError):
            b.call(ok)
    else:  # fail open: everything passes, nothing is enforced
        for _ in range(10):
            with pytest.raises(ConnectionError):
                b.call(boom)
        assert b.call(ok) == "ok"
    restartable_redis.start()
    clock.advance(1)
    assert b.call(ok) == "ok"  # recovered by itself
    assert b.state is State.CLOSED
    client.close()


def test_on_the_cluster(cluster_client: Any) -> None:
    c1, c2 = ManualClock(), ManualClock()
    names = [f"dep{i}" for i in range(6)]  # spread over the three masters
    for name in names:
        b1 = breaker(cluster_client, c1, name=name, sync_interval=0)
        b2 = breaker(cluster_client, c2, name=name, sync_interval=0)
        fail(b1, 4)
        with pytest.raises(CircuitOpenError):
            b2.call(ok)
        expire_open_state(cluster_client, name)
        c1.advance(30)
        c2.advance(30)
        assert b2.call(ok) == "ok"
        assert b1.call(ok) == "ok"
        assert b1.state is State.CLOSED


async def test_with_an_asyncio_client(aredis_client: Any) -> None:
    c1, c2 = ManualClock(), ManualClock()
    b1 = breaker(aredis_client, c1, sync_interval=0)
    b2 = breaker(aredis_client, c2, sync_interval=0)

    async def aboom() -> None:
        raise ConnectionError

    async def aok() -> str:
        return "ok"

    for _ in range(4):
        with pytest.raises(ConnectionError):
            await b1.call_async(aboom)
    with pytest.raises(CircuitOpenError):
        await b2.call_async(aok)
    await aredis_client.hset("opskit:breaker:{pay}:state", "until", "0")
    c1.advance(30)
    c2.advance(30)
    assert await b2.call_async(aok) == "ok"
    assert await aredis_client.hget("opskit:breaker:{pay}:state", "state") == b"closed"


# -- 4 processes x 16 threads arrive in half-open together -------------------------------


def _process(url: str, half_open_calls: int, barrier: Any, entered: Any, attempts: Any,
             release: Any) -> None:  # fmt: skip
    client = redis.Redis.from_url(url)
    b = CircuitBreaker("fleet", minimum_calls=4, window=CountWindow(10), open_for=30,
                       half_open_calls=half_open_calls, registry=CollectorRegistry(),
                       store=RedisBreakerStore(client, sync_interval=0))  # fmt: skip

    def probe() -> None:
        with entered.get_lock():
            entered.value += 1
        release.wait(20)

    def worker() -> None:
        barrier.wait()
        with contextlib.suppress(CircuitOpenError):
            b.call(probe)
        with attempts.get_lock():
            attempts.value += 1

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)


@pytest.mark.parametrize("half_open_calls", [1, 3])
def test_exactly_the_permits_across_four_processes(
    redis_client: redis.Redis, redis_server: Any, half_open_calls: int
) -> None:
    ctx = mp.get_context("spawn")
    for _round in range(2):
        redis_client.flushdb()
        redis_client.hset("opskit:breaker:{fleet}:state",
                          mapping={"state": "open", "until": "0", "opened": "1"})  # fmt: skip
        barrier = ctx.Barrier(64)
        entered = ctx.Value("i", 0)
        attempts = ctx.Value("i", 0)
        release = ctx.Event()
        procs = [ctx.Process(target=_process, args=(redis_server.url, half_open_calls, barrier,
                                                    entered, attempts, release))
                 for _ in range(4)]  # fmt: skip
        for p in procs:
            p.start()
        waiter = threading.Event()
        for _ in range(6000):  # until all 64 callers were admitted or rejected (bounded)
            if attempts.value + entered.value >= 64:
                break
            waiter.wait(0.005)
        release.set()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]
        assert entered.value == half_open_calls
        assert attempts.value == 64
        state = redis_client.hget("opskit:breaker:{fleet}:state", "state")
        assert state == b"closed"
