"""RedisStore on real Redis and Redis Cluster: exactness, one round trip, outages."""

from __future__ import annotations

import multiprocessing as mp
import struct
import threading
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.cluster
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from _redis import RedisServer, free_port
from opskit.ratelimit import (
    ConcurrencyLimiter,
    Rate,
    RateLimiter,
    RateLimitExceeded,
    RedisStore,
)
from opskit.ratelimit._algo import decide_one
from opskit.ratelimit._redis import _packing

LONG = "1000000s"  # a period so long that the server clock barely moves within a test


def limiter(client: Any, rates: Any, algorithm: str = "gcra", **store_kw: Any) -> RateLimiter:
    return RateLimiter("t", rates, algorithm=algorithm, registry=CollectorRegistry(),
                       store=RedisStore(client, **store_kw))  # fmt: skip


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window", "fixed_window"])
def test_redis_decisions(redis_client: redis.Redis, algorithm: str) -> None:
    r = limiter(redis_client, f"5/{LONG}", algorithm)
    ds = [r.hit("k") for _ in range(6)]
    assert [d.allowed for d in ds] == [True] * 5 + [False]
    assert [d.remaining for d in ds[:5]] == [4, 3, 2, 1, 0]
    assert ds[5].retry_after > 0
    assert not r.peek("k").allowed
    r.reset("k")
    assert r.hit("k").allowed


@settings(max_examples=60, deadline=None)
@given(
    algorithm=st.sampled_from(["gcra", "sliding_window", "fixed_window"]),
    limit=st.integers(2, 9),
    costs=st.lists(st.integers(1, 3), min_size=1, max_size=25),
    one_rate=st.booleans(),  # one rate: the tuned scripts; two: the n-rate one
)
def test_redis_never_admits_more_than_the_limit(
    redis_server: Any, algorithm: str, limit: int, costs: list[int], one_rate: bool
) -> None:
    client = redis_server.client()
    client.flushdb()
    rates = [f"{limit}/{LONG}"] if one_rate else [f"{limit}/{LONG}", f"{limit + 5}/{LONG}"]
    r = limiter(client, rates, algorithm)
    used = 0
    for cost in costs:
        if cost > limit:
            continue
        d = r.hit("prop", cost=cost)
        # Time barely moves against the period: a hit passes exactly when it fits.
        assert d.allowed == (used + cost <= limit)
        if d.allowed:
            used += cost
    client.close()


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window", "fixed_window"])
def test_one_round_trip_per_decision_whatever_the_rates(
    redis_client: redis.Redis, algorithm: str
) -> None:
    r = limiter(redis_client, ["100/second", "1000/minute", "10000/hour"], algorithm)
    r.hit("warm")
    redis_client.config_resetstat()
    for _ in range(50):
        r.hit("k")
    stats = redis_client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 50
    # Everything else ran inside the script (commandstats counts those too): the
    # state of all three rates is one key, read and written once.
    assert stats["cmdstat_get"]["calls"] == stats["cmdstat_set"]["calls"] == 50
    inside = {"cmdstat_time", "cmdstat_get", "cmdstat_set"}
    assert set(stats) - {"cmdstat_evalsha", "cmdstat_info", "cmdstat_config|resetstat"} <= inside


class GenericRedisStore(RedisStore):
    """A RedisStore the limiter does not recognise, so it takes the generic path."""


@pytest.mark.parametrize("rates", [[f"5/{LONG}"], [f"5/{LONG}", f"7/{LONG}"]])
@pytest.mark.parametrize("algorithm", ["gcra", "fixed_window", "sliding_window"])
def test_redis_figures_match_memory(
    redis_client: redis.Redis, algorithm: str, rates: list[str]
) -> None:
    fast = limiter(redis_client, rates, algorithm)
    generic = RateLimiter("g", rates, algorithm=algorithm, registry=CollectorRegistry(),
                          store=GenericRedisStore(redis_client))  # fmt: skip
    memory = RateLimiter("m", rates, algorithm=algorithm, registry=CollectorRegistry())
    for cost in (1, 2, 1, 3, 1, 1):
        got = [fast.peek("k"), generic.peek("k"), memory.peek("k")]
        got += [fast.hit("k", cost), generic.hit("k", cost), memory.hit("k", cost)]
        for a, b in ((got[0], got[2]), (got[1], got[2]), (got[3], got[5]), (got[4], got[5])):
            assert (a.allowed, a.remaining, a.limit) == (b.allowed, b.remaining, b.limit)
            if algorithm == "gcra":  # windows are aligned to each store's own clock
                # the server clock moves a little between the calls
                assert a.reset_after == pytest.approx(b.reset_after, abs=2.0)
                assert a.retry_after == pytest.approx(b.retry_after, abs=2.0)


def test_gcra_keeps_the_arrival_time_at_full_precision(redis_client: redis.Redis) -> None:
    r = limiter(redis_client, "1000000/second")  # one microsecond per hit
    r.hit("k", cost=3)
    (key,) = redis_client.keys("*")
    (stored,) = struct.unpack("<d", redis_client.get(key))
    # Lua's tostring() keeps 14 digits: 4 decimals at today's epoch, and +3 us is lost.
    assert stored != round(stored, 4)
    assert stored == pytest.approx(server_time(redis_client) + 3e-6, abs=1.0)


def server_time(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


@pytest.mark.parametrize(
    ("algorithm", "stored", "state"),
    [
        ("fixed_window", ("w", 3), (3,)),  # this window's count
        ("fixed_window", ("p", 3), (0,)),  # a count left from the window before: expired
        ("fixed_window", "w:3", (0,)),  # not the script's layout: empty
        ("sliding_window", ("w", 4, 1), (4, 1)),  # previous and current counts
        ("sliding_window", ("w", 4, 4), (4, 4)),  # full: denied
        ("sliding_window", ("p", 2, 4), (4, 0)),  # the window before: its count moves back
        ("sliding_window", ("o", 2, 4), (0, 0)),  # older: nothing counts
        ("sliding_window", "x" * 24, (0, 0)),  # 24 bytes of no window: nothing counts
    ],
)
def test_window_scripts_read_the_windows_of_the_server_clock(
    redis_client: redis.Redis, algorithm: str, stored: Any, state: tuple[int, ...]
) -> None:
    rate = Rate.parse("5/hour")
    # One rate: the one-rate script; two: the n-rate script, the day's rate empty.
    layouts = [[rate], [rate, Rate.parse("9/day")]] if isinstance(stored, tuple) else [[rate]]
    for rates in layouts:
        redis_client.flushdb()
        r = limiter(redis_client, rates, algorithm)
        r.hit("k")  # creates the key: its name is the only one in the database
        (key,) = redis_client.keys("*")
        while True:  # again if the hour turns between the reads (once in hours of runs)
            w = int(server_time(redis_client) // 3600)
            if isinstance(stored, tuple):  # the scripts' layout: little-endian doubles
                window = {"w": w, "p": w - 1, "o": w - 2}[stored[0]]
                value: Any = struct.pack(f"<{len(stored)}d", window, *stored[1:])
                if len(rates) == 2:
                    day = w // 24
                    value += struct.pack(f"<{len(stored)}d", day, *[0] * (len(stored) - 1))
            else:
                value = stored
            redis_client.set(key, value)
            before = server_time(redis_client)
            d = r.hit("k")
            after = server_time(redis_client)
            if int(before // 3600) == w == int(after // 3600):
                break
        # The decision is the reference's at a time between the two reads of the clock.
        early = decide_one(algorithm, rate, (w, *state), before, 1)
        late = decide_one(algorithm, rate, (w, *state), after, 1)
        assert d.allowed == early[0] == late[0]
        assert d.rate == rate
        assert early[1] <= d.remaining <= late[1]  # a sliding estimate decays with time
        assert late[2] <= d.reset_after <= early[2]
        assert late[3] <= d.retry_after <= early[3]


def test_window_reply_packing() -> None:
    assert _packing(Rate.parse("100/minute")) == (60_000_001, 1)  # microseconds
    assert _packing(Rate.parse("1000000000/hour")) == (3_600_001, 1000)  # milliseconds
    assert _packing(Rate.parse("1000000000/day")) is None  # too wide


def test_fixed_window_too_wide_to_pack_runs_the_n_rate_script(redis_client: redis.Redis) -> None:
    r = limiter(redis_client, ["1000000000/day"], "fixed_window")
    assert r.hit("k", cost=3).remaining == 1_000_000_000 - 3
    (key,) = redis_client.keys("*")
    assert key.endswith(b"#f:k}") and len(redis_client.get(key)) == 16  # the n-rate layout
    assert r.peek("k").remaining == 1_000_000_000 - 4


def test_sliding_window_too_wide_to_pack_replies_its_counts(redis_client: redis.Redis) -> None:
    limit = 10**15  # counts past 14 digits: Lua's tostring() would print them as 1e+15
    r = limiter(redis_client, [f"{limit}/day"], "sliding_window")
    assert r.hit("k", cost=3).remaining == limit - 3
    (key,) = redis_client.keys("*")
    assert key.endswith(b"#s1:k}")  # the one-rate script, its reply in text
    assert r.peek("k").remaining == limit - 4
    w = int(server_time(redis_client) // 86400)
    redis_client.set(key, struct.pack("<3d", w, 0, limit - 1))
    d = r.hit("k", cost=2)
    assert not d.allowed and d.remaining == 1 and d.retry_after > 0


def test_one_rate_scripts_read_one_key_once(redis_client: redis.Redis) -> None:
    for algorithm in ("gcra", "fixed_window", "sliding_window"):
        r = limiter(redis_client, "100/second", algorithm)
        r.hit("warm")
        redis_client.config_resetstat()
        for _ in range(20):
            r.hit("k")
        stats = redis_client.info("commandstats")
        assert stats["cmdstat_evalsha"]["calls"] == 20
        assert stats["cmdstat_get"]["calls"] == 20
        assert stats["cmdstat_set"]["calls"] == 20
        inside = {"cmdstat_time", "cmdstat_get", "cmdstat_set"}
        assert (
            set(stats) - {"cmdstat_evalsha", "cmdstat_info", "cmdstat_config|resetstat"} <= inside
        )


@pytest.mark.parametrize("rates", [["3/hour"], ["3/hour", "10/day"]])
@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window", "fixed_window"])
def test_clients_that_decode_responses(redis_server: Any, algorithm: str, rates: list[str]
                                       ) -> None:  # fmt: skip
    client = redis_server.client(decode_responses=True)  # text replies arrive as str
    client.flushdb()
    r = limiter(client, rates, algorithm)
    ds = [r.hit("k") for _ in range(4)]
    assert [d.allowed for d in ds] == [True, True, True, False]
    assert [d.remaining for d in ds] == [2, 1, 0, 0]
    assert ds[3].retry_after > 0 and r.store.tracker.errors == 0
    if algorithm != "gcra":  # windows too wide to pack reply text even when allowed
        wide = limiter(client, ["1000000000000000/day"], algorithm)
        ds = [wide.hit("w") for _ in range(2)]
        assert [(d.allowed, d.remaining) for d in ds] == [(True, 10**15 - 1), (True, 10**15 - 2)]
    client.close()


def test_same_name_different_algorithms_keep_apart(redis_client: redis.Redis) -> None:
    for rates in (f"2/{LONG}", [f"2/{LONG}", f"10/{LONG}"]):
        lims = [limiter(redis_client, rates, a) for a in ("gcra", "fixed_window", "sliding_window")]
        for r in lims:
            assert [r.hit("k").allowed for _ in range(3)] == [True, True, False]
            assert r.store.tracker.errors == 0
        lims[1].reset("k")  # a reset clears the key under every algorithm of the name
        assert all(r.hit("k").allowed for r in lims)
        redis_client.flushdb()


def test_keys_with_braces_stay_in_one_slot(redis_client: redis.Redis) -> None:
    r = limiter(redis_client, "1/minute")
    assert r.hit("a}{b%").allowed
    assert not r.hit("a}{b%").allowed
    (key,) = redis_client.keys("*")
    assert key.count(b"{") == 1 and key.count(b"}") == 1


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(["t", "a{b", "x%y", "n}"]),
    key=st.one_of(
        st.text(max_size=40),
        st.text(alphabet="ab{}%é", max_size=200),
        st.text(alphabet="abé", min_size=30, max_size=140),  # around the hashing threshold
    ),
    algorithm=st.sampled_from(["gcra", "fixed_window", "sliding_window"]),
    cost=st.integers(1, 2),
)
def test_the_hot_path_uses_the_key_the_store_names(
    redis_server: Any, name: str, key: str, algorithm: str, cost: int
) -> None:
    # Most keys are built by one concatenation on the synchronous hot path; the rest,
    # and every other path, by RedisStore.key. Both must name the same Redis key.
    with redis_server.client() as client:
        client.flushdb()
        store = RedisStore(client, prefix="p:")
        r = RateLimiter(name, f"5/{LONG}", algorithm=algorithm, store=store,
                        registry=CollectorRegistry())  # fmt: skip
        assert r.hit(key, cost).allowed
        suffix = store._plan(algorithm, r.rates, r._ttl)[2]
        assert client.keys("*") == [store.key(name, key, suffix).encode()]
        assert r.peek(key).remaining == 5 - cost - 1  # the generic path reads that key


def test_long_keys_are_hashed(redis_client: redis.Redis) -> None:
    r = limiter(redis_client, "1/minute")
    r.hit("x" * 1000)
    keys = redis_client.keys("*")
    assert len(keys) == 1 and len(keys[0]) < 120
    assert b"sha256:" in keys[0]
    assert not r.hit("x" * 1000).allowed


def test_noscript_after_restart_and_outage_policies(restartable_redis: RedisServer) -> None:
    client = restartable_redis.client(socket_timeout=1, socket_connect_timeout=1)
    client.flushdb()
    local = limiter(client, "2/minute", on_error="local")
    results = {p: limiter(client, "2/minute", on_error=p) for p in ("allow", "deny", "raise")}
    assert local.hit("k").allowed
    restartable_redis.kill()
    with structlog.testing.capture_logs() as logs:
        # local: keeps limiting in-process
        assert [local.hit("k").allowed for _ in range(3)] == [True, True, False]
    assert [e["event"] for e in logs].count("ratelimit.store_unavailable") == 1
    assert results["allow"].hit("k").allowed
    assert not results["deny"].hit("k").allowed
    with pytest.raises(redis.ConnectionError):
        results["raise"].hit("k")
    assert local.store.tracker.errors == 3
    restartable_redis.start()  # empty, and without the script: NOSCRIPT is handled
    with structlog.testing.capture_logs() as logs:
        assert local.hit("k").allowed
    assert "ratelimit.store_recovered" in [e["event"] for e in logs]
    reg = CollectorRegistry()
    counted = RateLimiter("c", "1/s", store=local.store, registry=reg)
    assert reg.get_sample_value("opskit_ratelimit_store_errors_total", {"name": "c"}) == 3
    counted.close()
    client.close()


def test_two_rates_on_the_cluster(cluster_client: Any) -> None:
    r = limiter(cluster_client, [f"3/{LONG}", f"5/{LONG}"])
    one = limiter(cluster_client, f"3/{LONG}")  # the one-rate GCRA script
    for i in range(20):  # keys spread over the three masters
        assert [r.hit(f"user:{i}").allowed for _ in range(4)] == [True, True, True, False]
        assert [one.hit(f"one:{i}").allowed for _ in range(4)] == [True, True, True, False]
        assert one.peek(f"one:{i}").retry_after > 0


async def test_asyncio_client(aredis_client: Any) -> None:
    r = limiter(aredis_client, f"2/{LONG}", "sliding_window")
    assert (await r.ahit("k")).allowed
    assert (await r.apeek("k")).remaining == 0
    assert (await r.ahit("k")).allowed
    assert not (await r.ahit("k")).allowed
    await r.areset("k")
    assert (await r.ahit("k")).allowed


@pytest.mark.parametrize("rates", [[f"5/{LONG}"], [f"5/{LONG}", f"7/{LONG}"]])
@pytest.mark.parametrize("algorithm", ["gcra", "fixed_window", "sliding_window"])
async def test_asyncio_client_decides_as_the_synchronous_one(
    redis_client: redis.Redis, aredis_client: Any, algorithm: str, rates: list[str]
) -> None:
    sync = RateLimiter("s", rates, algorithm=algorithm, registry=CollectorRegistry(),
                       store=RedisStore(redis_client))  # fmt: skip
    reg = CollectorRegistry()
    r = RateLimiter("a", rates, algorithm=algorithm, registry=reg,
                    store=RedisStore(aredis_client))  # fmt: skip
    for cost in (1, 2, 1, 3, 1, 1):
        a, b = await r.ahit("k", cost), sync.hit("k", cost)
        assert (a.allowed, a.remaining, a.limit) == (b.allowed, b.remaining, b.limit)
    await aredis_client.script_flush()  # NOSCRIPT: the script is loaded again
    a, b = await r.ahit("k"), sync.hit("k")
    assert (a.allowed, a.remaining) == (b.allowed, b.remaining) == (False, 0)
    with pytest.raises(ValueError, match="can never pass"):
        await r.ahit("k", 6)
    metric = "opskit_ratelimit_decisions_total"
    counted = [reg.get_sample_value(metric, {"name": "a", "decision": d})
               for d in ("allowed", "limited")]  # fmt: skip
    assert counted == [4, 3]


@pytest.mark.parametrize("policy", ["local", "allow", "deny", "raise"])
async def test_asyncio_client_outage_policies(policy: str) -> None:
    # Nothing listens there; no retries, so each call fails at once.
    client = redis.asyncio.Redis(port=free_port(), retry=AsyncRetry(NoBackoff(), 0))
    r = limiter(client, "2/minute", on_error=policy)
    if policy == "raise":
        with pytest.raises(redis.ConnectionError):
            await r.ahit("k")
    else:
        got = [(await r.ahit("k")).allowed for _ in range(3)]
        assert (
            got == {"local": [True, True, False], "allow": [True] * 3, "deny": [False] * 3}[policy]
        )
    assert r.store.tracker.errors == (1 if policy == "raise" else 3)
    await client.aclose()


def test_concurrency_limiter_on_redis(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    a = ConcurrencyLimiter("exports", limit=2, lease=60, store=store, registry=CollectorRegistry())
    b = ConcurrencyLimiter("exports", limit=2, lease=60, store=store, registry=CollectorRegistry())
    with a.slot("acme"), b.slot("acme"), pytest.raises(RateLimitExceeded), a.slot("acme"):
        pass
    with a.slot("acme"), b.slot("acme"):
        pass
    dead = a.try_acquire("acme")  # its holder died
    assert dead is not None
    key = store.key("exports", "acme", "#slots")
    redis_client.zadd(key, {dead: 0})  # ... and its lease ran out on the server
    with a.slot("acme"), b.slot("acme"):
        pass


async def test_concurrency_limiter_async_redis(aredis_client: Any) -> None:
    c = ConcurrencyLimiter("jobs", limit=1, store=RedisStore(aredis_client),
                           registry=CollectorRegistry())  # fmt: skip
    async with c.aslot("t"):
        with pytest.raises(RateLimitExceeded):
            async with c.aslot("t"):
                pass
    async with c.aslot("t"):
        pass


# -- exactness under contention: 4 processes x 16 workers on one key ---------------------


def _worker_process(url: str, cluster: bool, rates: list[str], n: int, admitted: Any,
                    barrier: Any) -> None:  # fmt: skip
    if cluster:
        host, port = url.split(":")
        client: Any = redis.cluster.RedisCluster(host=host, port=int(port))
    else:
        client = redis.Redis.from_url(url)
    r = RateLimiter("contend", rates, store=RedisStore(client), registry=CollectorRegistry())
    barrier.wait()
    local = [0]
    lock = threading.Lock()

    def work() -> None:
        for _ in range(n):
            if r.hit("one-key").allowed:
                with lock:
                    local[0] += 1

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with admitted.get_lock():
        admitted.value += local[0]


@pytest.mark.parametrize("where", ["standalone", "cluster"])
def test_four_processes_admit_exactly_n(
    where: str, redis_server: Any, redis_cluster: Any, request: Any
) -> None:
    if where == "standalone":
        client: Any = redis.Redis.from_url(redis_server.url)
        url, cluster = redis_server.url, False
        rates = [f"50/{LONG}"]
    else:
        host, port = redis_cluster.startup_nodes[0]
        client = redis.cluster.RedisCluster(host=host, port=port)
        url, cluster = f"{host}:{port}", True
        rates = [f"80/{LONG}", f"50/{LONG}"]
    client.flushall()
    ctx = mp.get_context("spawn")
    admitted = ctx.Value("i", 0)
    barrier = ctx.Barrier(4)
    args = (url, cluster, rates, 3, admitted, barrier)
    procs = [ctx.Process(target=_worker_process, args=args) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert admitted.value == 50  # 192 attempts, a limit of 50: not 51, not 49
    client.close()


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["api", "rule0:/api/*", "odd{name}", "100%"]),
    suffix=st.sampled_from(["#g", "#f1", "#s1", ""]),
    key=st.one_of(
        st.text(max_size=40),
        st.text(min_size=30, max_size=200),
        st.sampled_from(["ip:10.0.0.1", "a{b}c", "x%y", "é" * 40]),
    ),
)
def test_the_hot_key_maker_makes_the_keys_of_key(name: str, suffix: str, key: str) -> None:
    # planned/aplanned build keys with a shortcut: the very keys RedisStore.key makes
    # (reset, peek and the hash tags of Cluster rely on them being the same).
    store = RedisStore(redis.Redis(), prefix="p:")  # no command is sent
    assert store._key_of(name, suffix)(key) == store.key(name, key, suffix)
