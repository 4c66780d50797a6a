"""The demo's retry part keeps one policy, so its metrics stay on /metrics."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry

from opskit.demo._retry import demo_part


async def test_retry_metrics_survive_the_requests_and_waits_are_per_request() -> None:
    registry = CollectorRegistry()
    part = demo_part(registry)
    transport = httpx.ASGITransport(app=part.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        ok = await client.get("/retry/flaky?fail=2")
        gave_up = await client.get("/retry/flaky?fail=9")
        first_try = await client.get("/retry/flaky?fail=0")
    assert ok.status_code == 200 and len(ok.json()["waits"]) == 2
    assert gave_up.status_code == 503 and len(gave_up.json()["waits"]) == 3
    assert first_try.json()["waits"] == []  # no wait of an earlier request leaks in
    calls = {
        s.labels["outcome"]: s.value
        for m in registry.collect()
        if m.name == "opskit_retry_calls"
        for s in m.samples
        if s.name == "opskit_retry_calls_total" and s.labels.get("name") == "demo-upstream"
    }
    assert sum(calls.values()) == 3
    assert registry.get_sample_value("opskit_retry_retries_total", {"name": "demo-upstream"}) == 5
