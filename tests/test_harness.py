"""The real-Redis harness itself: stop/restart and the cluster work."""

from __future__ import annotations

import pytest
import redis
import redis.cluster

from _redis import RedisServer


def test_server_answers_and_keeps_nothing_on_disk(redis_client: redis.Redis) -> None:
    assert redis_client.ping() is True
    cfg = redis_client.config_get("save")
    assert cfg["save"] == ""
    assert redis_client.config_get("appendonly")["appendonly"] == "no"


def test_each_test_starts_with_an_empty_keyspace_a(redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0
    redis_client.set("leftover", "1")


def test_each_test_starts_with_an_empty_keyspace_b(redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0
    redis_client.set("leftover", "1")


def test_stop_then_restart_on_the_same_port(restartable_redis: RedisServer) -> None:
    client = restartable_redis.client(socket_timeout=1, socket_connect_timeout=1)
    client.set("k", "v")
    port = restartable_redis.port
    restartable_redis.kill()
    with pytest.raises(redis.ConnectionError):
        client.get("k")
    restartable_redis.start()
    assert restartable_redis.port == port
    # Nothing persisted: the restarted server is empty, and the same client reconnects.
    assert client.get("k") is None
    assert client.ping() is True
    client.close()


def test_cluster_has_three_masters_covering_all_slots(
    cluster_client: redis.cluster.RedisCluster,
) -> None:
    primaries = cluster_client.get_primaries()
    assert len(primaries) == 3
    info = cluster_client.cluster_info(target_nodes=redis.cluster.RedisCluster.RANDOM)
    assert info["cluster_state"] == "ok"
    assert int(info["cluster_slots_assigned"]) == 16384
    # Keys land on different nodes, and a cross-slot multi-key command is refused.
    nodes = {cluster_client.get_node_from_key(f"k{i}").name for i in range(50)}
    assert len(nodes) == 3
    with pytest.raises(redis.exceptions.RedisClusterException):
        cluster_client.execute_command("MSET", "a", "1", "b", "2")
