"""Script runs atomically on real Redis, survives restarts and SCRIPT FLUSH, and runs on Cluster."""

from __future__ import annotations

import time

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
import structlog

from _redis import RedisServer
from opskit._core.redis import (
    LUA_NOW,
    OutageTracker,
    Script,
    is_async_client,
    tagged_key,
    validate_on_error,
)

INCR_BOTH = Script(
    """
local a = redis.call('INCRBY', KEYS[1], ARGV[1])
local b = redis.call('INCRBY', KEYS[2], ARGV[1])
return {a, b}
"""
)
NOW = Script(LUA_NOW + "\nredis.call('SET', KEYS[1], tostring(now))\nreturn tostring(now)")


def keys(name: str) -> list[str]:
    return [tagged_key("opskit:t:", name, "a"), tagged_key("opskit:t:", name, "b")]


def test_tagged_keys_share_one_slot_and_escape_braces() -> None:
    assert tagged_key("p:", "user:42", "tat") == "p:{user:42}:tat"
    assert tagged_key("p:", "a}b{c") == "p:{a%7Db%7Bc}"
    # Escaping is injective: distinct names stay distinct.
    assert tagged_key("p:", "%7B") != tagged_key("p:", "{")
    from redis.crc import key_slot

    for name in ("x", "a}b", "{evil}", "t%7Bx"):
        ks = keys(name)
        assert len({key_slot(k.encode()) for k in ks}) == 1


def test_run_sync_uses_evalsha_and_is_atomic(redis_client: redis.Redis) -> None:
    assert INCR_BOTH.run(redis_client, keys("o"), [2]) == [2, 2]
    assert redis_client.script_exists(INCR_BOTH.sha) == [True]
    assert INCR_BOTH.run(redis_client, keys("o"), [3]) == [5, 5]


def test_script_reloads_after_script_flush(redis_client: redis.Redis) -> None:
    INCR_BOTH.run(redis_client, keys("f"), [1])
    redis_client.script_flush()
    assert redis_client.script_exists(INCR_BOTH.sha) == [False]
    assert INCR_BOTH.run(redis_client, keys("f"), [1]) == [2, 2]
    assert redis_client.script_exists(INCR_BOTH.sha) == [True]


def test_script_reloads_after_server_restart(restartable_redis: RedisServer) -> None:
    client = restartable_redis.client(socket_timeout=2, socket_connect_timeout=2)
    client.flushdb()
    assert INCR_BOTH.run(client, keys("r"), [1]) == [1, 1]
    restartable_redis.kill()
    with pytest.raises(redis.ConnectionError):
        INCR_BOTH.run(client, keys("r"), [1])
    restartable_redis.start()
    # The restarted server has no script cache: NOSCRIPT is handled, not raised.
    assert INCR_BOTH.run(client, keys("r"), [1]) == [1, 1]
    client.close()


async def test_run_async_and_reload(aredis_client: redis.asyncio.Redis) -> None:
    assert is_async_client(aredis_client)
    assert await INCR_BOTH.arun(aredis_client, keys("as"), [4]) == [4, 4]
    await aredis_client.script_flush()
    assert await INCR_BOTH.arun(aredis_client, keys("as"), [1]) == [5, 5]


def test_server_time_is_read_inside_the_script(redis_client: redis.Redis) -> None:
    assert not is_async_client(redis_client)
    now = float(NOW.run(redis_client, keys("time")[:1]))
    assert abs(now - time.time()) < 5  # same machine: the server's clock, with microseconds
    assert redis_client.get(keys("time")[0]) is not None


def test_script_on_cluster_across_all_nodes(cluster_client: redis.cluster.RedisCluster) -> None:
    names = [f"obj{i}" for i in range(30)]
    nodes = {cluster_client.get_node_from_key(keys(n)[0]).name for n in names}
    assert len(nodes) == 3  # the objects are spread over every master
    for n in names:
        assert INCR_BOTH.run(cluster_client, keys(n), [1]) == [1, 1]
    # SCRIPT FLUSH on every node, then it still runs (NOSCRIPT reload on the owning node).
    for node in cluster_client.get_primaries():
        cluster_client.get_redis_connection(node).script_flush()
    for n in names:
        assert INCR_BOTH.run(cluster_client, keys(n), [1]) == [2, 2]
    float(NOW.run(cluster_client, keys("t")[:1]))


async def test_script_on_async_cluster(
    acluster_client: redis.asyncio.cluster.RedisCluster,
) -> None:
    assert is_async_client(acluster_client)
    for i in range(10):
        assert await INCR_BOTH.arun(acluster_client, keys(f"a{i}"), [1]) == [1, 1]


def test_cross_slot_keys_are_refused_by_the_cluster(
    cluster_client: redis.cluster.RedisCluster,
) -> None:
    with pytest.raises(redis.exceptions.RedisClusterException):
        INCR_BOTH.run(cluster_client, ["nota", "notb"], [1])


def test_validate_on_error() -> None:
    for v in ("allow", "deny", "local", "raise"):
        assert validate_on_error(v) == v
    with pytest.raises(ValueError, match="on_error must be one of"):
        validate_on_error("ignore")


def test_outage_tracker_logs_once_per_incident() -> None:
    t = OutageTracker("ratelimit", "ratelimit.RedisStore")
    with structlog.testing.capture_logs() as logs:
        t.ok()
        for _ in range(5):
            t.failed(ConnectionError("down"), "local")
        t.ok()
        t.ok()
        t.failed(ConnectionError("down"), "local")
    events = [e["event"] for e in logs]
    assert events == [
        "ratelimit.store_unavailable",
        "ratelimit.store_recovered",
        "ratelimit.store_unavailable",
    ]
    assert t.errors == 6 and t.incidents == 2 and t.active
    assert logs[0]["error"] == "ConnectionError" and logs[0]["policy"] == "local"
