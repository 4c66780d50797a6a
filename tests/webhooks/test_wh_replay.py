"""Replay protection on memory and real Redis, and the Redis outage policy."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from opskit.testing import ManualClock
from opskit.webhooks import (
    GitHub,
    MemoryReplayStore,
    RedisReplayStore,
    ReplayDetected,
    SignatureMismatch,
    StandardWebhooks,
    Stripe,
    TimestampOutOfTolerance,
    Twilio,
)
from opskit.webhooks._errors import ReplayStoreUnavailable
from webhooks._wh import SW_SECRET

T0 = 1_700_000_000


def test_memory_replay_by_id_within_the_window() -> None:
    clock = ManualClock(wall_start=T0)
    store = MemoryReplayStore(clock=clock)
    sw = StandardWebhooks(secrets=[SW_SECRET], replay_store=store, clock=clock, metrics=False)
    headers = sw.sign("msg_1", T0, b"{}")
    assert sw.verify(b"{}", headers).id == "msg_1"
    with pytest.raises(ReplayDetected) as info:
        sw.verify(b"{}", headers)
    assert (info.value.reason, info.value.status, info.value.id) == (
        "replay_detected",
        401,
        "msg_1",
    )
    # Another id with the same body is a different message.
    assert sw.verify(b"{}", sw.sign("msg_2", T0, b"{}")).id == "msg_2"
    # Once the timestamp window is over the id is forgotten, and the window rejects it.
    clock.advance(302)
    assert len(store) == 0 or store.add("probe", 1)
    with pytest.raises(TimestampOutOfTolerance):
        sw.verify(b"{}", headers)


def test_memory_replay_without_id_uses_a_digest_of_signed_content() -> None:
    clock = ManualClock(wall_start=T0)
    store = MemoryReplayStore(clock=clock)
    stripe = Stripe(secrets=["whsec_a"], replay_store=store, clock=clock, metrics=False)
    headers = stripe.sign(b'{"id":"evt_1"}')
    stripe.verify(b'{"id":"evt_1"}', headers)
    with pytest.raises(ReplayDetected):
        stripe.verify(b'{"id":"evt_1"}', headers)
    # Re-sent later (a Stripe retry has a new timestamp): a new message.
    clock.advance(5)
    assert stripe.verify(b'{"id":"evt_1"}', stripe.sign(b'{"id":"evt_1"}'))
    # Dropping or adding signature entries does not dodge the store.
    dual = Stripe(secrets=["whsec_b", "whsec_a"], metrics=False, clock=clock).sign(
        b"x", all_secrets=True
    )
    stripe.verify(b"x", dual)
    only_a = dual["Stripe-Signature"].split(",")
    with pytest.raises(ReplayDetected):
        stripe.verify(b"x", {"Stripe-Signature": f"{only_a[0]},{only_a[2]}"})


def test_unsigned_delivery_ids_cannot_dodge_the_store() -> None:
    store = MemoryReplayStore(clock=ManualClock())
    gh = GitHub(secrets=["s"], replay_store=store, metrics=False)
    gh.verify(b"payload", gh.sign(b"payload", delivery="d-1"))
    with pytest.raises(ReplayDetected):
        gh.verify(b"payload", gh.sign(b"payload", delivery="d-2"))
    tw = Twilio(auth_tokens=["t"], replay_store=store, metrics=False)
    headers = tw.sign("https://a.test/x", b"A=1")
    tw.verify(b"A=1", headers, url="https://a.test/x")
    with pytest.raises(ReplayDetected):
        tw.verify(b"A=1", headers, url="https://a.test:443/x")


def test_failed_messages_are_not_recorded() -> None:
    store = MemoryReplayStore(clock=ManualClock())
    gh = GitHub(secrets=["s"], replay_store=store, metrics=False)
    with pytest.raises(SignatureMismatch):
        gh.verify(b"payload", {"X-Hub-Signature-256": "sha256=00"})
    assert len(store) == 0


def test_memory_store_bounded() -> None:
    clock = ManualClock()
    store = MemoryReplayStore(max_entries=10, clock=clock)
    for i in range(50):
        assert store.add(f"k{i}", 60)
    assert len(store) <= 10
    assert not store.add("k49", 60)
    clock.advance(61)
    assert store.add("k49", 60)
    with pytest.raises(ValueError, match="max_entries"):
        MemoryReplayStore(max_entries=0)


# ------------------------------------------------------------------ real Redis


def test_redis_replay_shared_across_instances(redis_client: redis.Redis) -> None:
    clock = ManualClock(wall_start=T0)
    a = StandardWebhooks(
        secrets=[SW_SECRET], replay_store=RedisReplayStore(redis_client), clock=clock, metrics=False
    )
    b = StandardWebhooks(
        secrets=[SW_SECRET], replay_store=RedisReplayStore(redis_client), clock=clock, metrics=False
    )
    headers = a.sign("msg_r", T0, b"{}")
    assert a.verify(b"{}", headers).id == "msg_r"
    with pytest.raises(ReplayDetected):
        b.verify(b"{}", headers)
    keys = redis_client.keys("opskit:webhooks:seen:*")
    assert keys == [b"opskit:webhooks:seen:{standard_webhooks:id:msg_r}"]
    ttl = redis_client.pttl(keys[0])
    assert 300_000 < ttl <= 301_000  # the rest of the window, plus one second


async def test_redis_replay_async_client(aredis_client: redis.asyncio.Redis) -> None:
    store = RedisReplayStore(aredis_client, prefix="t:")
    gh = GitHub(secrets=["s"], replay_store=store, metrics=False)
    headers = gh.sign(b"body", delivery="d")
    assert (await gh.averify(b"body", headers)).id == "d"
    with pytest.raises(ReplayDetected):
        await gh.averify(b"body", headers)
    with pytest.raises(TypeError, match="averify"):
        gh.verify(b"body2", gh.sign(b"body2"))


def test_redis_replay_on_cluster(cluster_client: Any) -> None:
    store = RedisReplayStore(cluster_client)
    gh = GitHub(secrets=["s"], replay_store=store, metrics=False)
    for i in range(5):
        body = f"event {i}".encode()
        gh.verify(body, gh.sign(body))
        with pytest.raises(ReplayDetected):
            gh.verify(body, gh.sign(body))


@pytest.mark.parametrize("policy", ["local", "allow", "deny", "raise"])
def test_redis_outage_policy(restartable_redis: Any, policy: str) -> None:
    client = restartable_redis.client(
        socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    client.flushdb()
    store = RedisReplayStore(client, on_error=policy)  # type: ignore[arg-type]
    gh = GitHub(secrets=["s"], replay_store=store, metrics=False)
    gh.verify(b"before", gh.sign(b"before"))
    restartable_redis.stop()
    headers = gh.sign(b"during")
    if policy == "local":
        assert gh.verify(b"during", headers)
        with pytest.raises(ReplayDetected):  # the in-process fallback still remembers
            gh.verify(b"during", headers)
    elif policy == "allow":
        assert gh.verify(b"during", headers)
        assert gh.verify(b"during", headers)
    elif policy == "deny":
        with pytest.raises(ReplayStoreUnavailable) as info:
            gh.verify(b"during", headers)
        assert info.value.status == 503 and info.value.scheme == "github"
    else:
        with pytest.raises(redis.RedisError):
            gh.verify(b"during", headers)
    assert store.errors >= 1
    restartable_redis.start()
    # Recovers by itself: the next check goes to Redis again.
    assert gh.verify(b"after", gh.sign(b"after"))
    with pytest.raises(ReplayDetected):
        gh.verify(b"after", gh.sign(b"after"))
    assert client.exists(store._key(gh._replay_key(gh.verify(b"x", gh.sign(b"x")))))
    client.close()


def test_redis_store_rejects_bad_policy(redis_client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="on_error"):
        RedisReplayStore(redis_client, on_error="maybe")  # type: ignore[arg-type]
    assert "on_error='local'" in repr(RedisReplayStore(redis_client))


async def test_async_redis_outage_falls_back_and_recovers(restartable_redis: Any) -> None:
    from redis.asyncio.retry import Retry as AsyncRetry

    client = redis.asyncio.Redis.from_url(
        restartable_redis.url,
        socket_timeout=1,
        socket_connect_timeout=1,
        retry=AsyncRetry(NoBackoff(), 0),
    )
    await client.flushdb()
    store = RedisReplayStore(client, on_error="local")
    sw = StandardWebhooks(secrets=[SW_SECRET], replay_store=store, metrics=False)
    restartable_redis.stop()
    try:
        headers = sw.sign("msg_outage", None, b"{}")
        assert (await sw.averify(b"{}", headers)).id == "msg_outage"
        with pytest.raises(ReplayDetected):
            await sw.averify(b"{}", headers)
        assert store.errors == 2
    finally:
        restartable_redis.start()
    headers = sw.sign("msg_back", None, b"{}")
    assert (await sw.averify(b"{}", headers)).id == "msg_back"
    assert await client.exists("opskit:webhooks:seen:{standard_webhooks:id:msg_back}")
    await client.aclose()
