"""Every module's demo part. Each module issue adds its own here."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from opskit.demo._app import Part
from opskit.demo._breaker import demo_part as breaker_part
from opskit.demo._health import demo_parts as health_parts
from opskit.demo._http import demo_part as http_part
from opskit.demo._pii import demo_part as pii_part
from opskit.demo._ratelimit import demo_part as ratelimit_part
from opskit.demo._retry import demo_part as retry_part
from opskit.demo._tenancy import demo_part as tenancy_part
from opskit.demo._webhooks import demo_part as webhooks_part


def default_parts(registry: CollectorRegistry | None = None) -> list[Part]:
    parts: list[Part] = []
    parts.append(breaker_part(registry))
    parts.append(retry_part(registry))
    parts.append(ratelimit_part(registry))
    parts.append(webhooks_part(registry))
    parts.append(pii_part(registry))
    parts.append(tenancy_part(registry))
    parts.extend(health_parts(registry))
    parts.append(http_part(registry))
    return parts
