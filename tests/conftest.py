"""Shared fixtures: real Redis (standalone and cluster), clean keyspaces, clocks.

Fixtures:
- ``redis_server``: session-wide real server (``REDIS_URL`` overrides it); has
  ``stop()``, ``kill()``, ``start()``, ``restart()`` for outage tests, and is
  brought back up after any test that left it down.
- ``redis_client`` / ``aredis_client``: sync / asyncio clients on a flushed db.
- ``redis_cluster``: a session-wide 3-master cluster; ``cluster_client`` /
  ``acluster_client`` give flushed ``RedisCluster`` clients.
- ``manual_clock``: a ``ManualClock``.

Without redis-server these skip with one reason, unless OPSKIT_REQUIRE_REDIS=1,
where they fail.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from _redis import (
    MISSING_REASON,
    REDIS_SERVER,
    REQUIRE,
    ExternalRedis,
    RedisClusterProcs,
    RedisServer,
)
from opskit.testing import ManualClock


def _unavailable() -> None:
    if REQUIRE:
        pytest.fail(f"OPSKIT_REQUIRE_REDIS=1 but {MISSING_REASON}", pytrace=False)
    pytest.skip(MISSING_REASON)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    url = os.environ.get("REDIS_URL")
    if url:
        server: Any = ExternalRedis(url)
    else:
        if REDIS_SERVER is None:
            _unavailable()
        server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_up(redis_server: Any) -> Iterator[Any]:
    """The session server, guaranteed running before and after the test."""
    if isinstance(redis_server, RedisServer):
        redis_server.start()
    yield redis_server
    if isinstance(redis_server, RedisServer) and not redis_server.running:
        redis_server.start()


@pytest.fixture
def restartable_redis(redis_up: Any) -> RedisServer:
    """The session server, for tests that stop and restart it (not with REDIS_URL)."""
    if not isinstance(redis_up, RedisServer):
        pytest.skip("REDIS_URL points at a server these tests may not stop")
    return redis_up


@pytest.fixture
def redis_client(redis_up: Any) -> Iterator[redis.Redis]:
    client = redis_up.client()
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
async def aredis_client(redis_up: Any) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_up.url, retry=AsyncRetry(NoBackoff(), 0))
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcs]:
    if REDIS_SERVER is None:
        _unavailable()
    procs = RedisClusterProcs()
    try:
        yield procs.start()
    finally:
        procs.close()


@pytest.fixture
def cluster_client(redis_cluster: RedisClusterProcs) -> Iterator[redis.cluster.RedisCluster]:
    host, port = redis_cluster.startup_nodes[0]
    client = redis.cluster.RedisCluster(host=host, port=port)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
async def acluster_client(
    redis_cluster: RedisClusterProcs,
) -> AsyncIterator[redis.asyncio.cluster.RedisCluster]:
    host, port = redis_cluster.startup_nodes[0]
    client = redis.asyncio.cluster.RedisCluster(host=host, port=port)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock()
