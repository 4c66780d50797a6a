"""Async-only behaviour: cancellation of the caller's task."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from opskit.breaker import CircuitBreaker, State
from opskit.http import AsyncResilientTransport, Hedge
from opskit.testing import ManualClock


async def _until(predicate: Any) -> None:
    """Yield to the loop until ``predicate()`` holds (polling a real server, not timing)."""
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


async def test_cancelling_the_caller_cancels_attempts_and_hedges(
    upstream: Any, key: str, registry: CollectorRegistry, drained: Any
) -> None:
    t = AsyncResilientTransport(name="cancel", hedge=Hedge(after=0.05, max_extra=2),
                                registry=registry)  # fmt: skip
    async with httpx.AsyncClient(transport=t) as client:
        task = asyncio.ensure_future(client.get(f"{upstream.url}/hang/{key}?fail=9&seconds=30"))
        await _until(lambda: upstream.app.counts[key] == 3)  # the attempt and two hedges
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Each connection was closed: the server saw its three clients go away.
        await _until(lambda: upstream.app.disconnected[key] == 3)
        drained(t)
        assert (
            registry.get_sample_value(
                "opskit_http_attempts_total", {"client": "cancel", "outcome": "cancelled"}
            )
            == 3
        )


async def test_a_cancelled_half_open_probe_releases_its_permit(
    upstream: Any, key: str, registry: CollectorRegistry
) -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("probe", consecutive_failures=1, open_for=10, clock=clock,
                             registry=CollectorRegistry())  # fmt: skip
    t = AsyncResilientTransport(breaker=breaker, registry=registry)
    async with httpx.AsyncClient(transport=t) as client:
        r = await client.get(f"{upstream.url}/flaky/{key}?fail=1&status=500")
        assert r.status_code == 500 and breaker.state is State.OPEN
        clock.advance(11)
        probe = asyncio.ensure_future(client.get(f"{upstream.url}/hang/{key}-h?fail=9"))
        await _until(lambda: upstream.app.counts[f"{key}-h"] == 1)
        assert breaker.state is State.HALF_OPEN
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        # Neither a success nor a failure: still half-open, and the permit is free again.
        assert breaker.state is State.HALF_OPEN
        r = await client.get(f"{upstream.url}/ok/{key}")
        assert r.status_code == 200 and breaker.state is State.CLOSED


async def test_a_rejected_attempt_costs_no_io(registry: CollectorRegistry) -> None:
    sent: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    breaker = CircuitBreaker("shut", registry=CollectorRegistry())
    breaker.force_open()
    t = AsyncResilientTransport(httpx.MockTransport(handler), breaker=breaker, registry=registry)
    async with httpx.AsyncClient(transport=t) as client:
        with pytest.raises(Exception, match="is open"):
            await client.get("http://upstream.test/")
    assert sent == []
