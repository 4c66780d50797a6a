"""The demo's health part: a check you can make fail flips readiness and detail, not liveness."""

from __future__ import annotations

import httpx
import jsonschema
from prometheus_client import CollectorRegistry

from health._schema import HEALTH_JSON
from opskit.demo import build_app
from opskit.demo._health import demo_parts


async def test_demo_health_part() -> None:
    registry = CollectorRegistry(auto_describe=True)
    app = build_app(demo_parts(registry), registry)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        detail = await client.get("/health")
        assert detail.status_code == 200
        jsonschema.validate(detail.json(), HEALTH_JSON)
        assert set(detail.json()["checks"]) == {
            "db:responseTime", "disk:utilization", "queue-depth:depth",
        }  # fmt: skip
        assert (await client.get("/health/break")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "fail"
        out = (await client.get("/health")).json()["checks"]["db:responseTime"][0]["output"]
        assert out.startswith("ConnectionError: demo database is down")
        assert (await client.get("/livez")).status_code == 200
        metrics = (await client.get("/metrics")).text
        assert 'opskit_health_check_status{check="db"} 0.0' in metrics
        assert (await client.get("/health/mend")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.post("/readyz")).status_code == 405
