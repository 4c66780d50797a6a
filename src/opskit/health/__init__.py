"""Health checks run concurrently under timeouts, aggregated into health+json reports.

::

    from opskit.health import HealthRegistry, Status, CheckResult, HealthReport, checks

    health = HealthRegistry(service="billing-api", version="1.4.2")
    health.add("redis", checks.redis_ping(client), groups={"readiness"})
    health.add("stripe", checks.http("https://status.example/health"), critical=False)
    report = await health.run(group="readiness")     # health.run_sync(...) from sync code
    report.status, report.http_status, report.to_health_json()

Endpoints: :mod:`opskit.health.asgi` and :mod:`opskit.health.wsgi` (``HealthEndpoints``).
"""

from __future__ import annotations

from opskit.health import checks
from opskit.health._check import Check
from opskit.health._registry import HealthRegistry
from opskit.health._report import CONTENT_TYPE, HealthReport
from opskit.health._status import CheckResult, Status

__all__ = [
    "HealthRegistry",
    "Status",
    "CheckResult",
    "HealthReport",
    "Check",
    "checks",
    "CONTENT_TYPE",
]
