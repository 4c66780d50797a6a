"""The opskit configuration every framework app of the matrix shares (docs/frameworks.md).

The glue per framework lives in the sibling modules; what is limited, filtered
and verified is decided here, once.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry
from structlog.contextvars import get_contextvars

from opskit.health import HealthRegistry, checks
from opskit.ratelimit import Rule, by_ip
from opskit.tenancy import get_tenant, resolvers
from opskit.webhooks import GitHub

# --8<-- [start:setup]
# The load balancer in front of the app: X-Forwarded-For is believed from it alone.
TRUSTED_PROXIES = ["127.0.0.1/32"]

RATE_LIMITS = [
    # Login protection: after 3 failed attempts an hour from one client IP, even the right
    # password gets 429.
    Rule("/login", methods=["POST"], rates="3/hour", key=by_ip, count="failures", name="login"),
    Rule("/api/*", rates="3/hour", key=by_ip, name="api"),
]
DENIED_NETWORKS = ["192.0.2.0/24"]
ADMIN_NETWORKS = {"/admin/*": ["10.0.0.0/8"]}


def webhook_routes(registry: CollectorRegistry | None = None) -> dict[str, GitHub]:
    return {"/webhooks/github": GitHub.from_env("GITHUB_WEBHOOK_SECRET", registry=registry)}


# --8<-- [end:setup]


# --8<-- [start:tenancy-setup]
TENANT = resolvers.header("X-Tenant-ID")  # or resolvers.subdomain(...), resolvers.path_prefix(...)
log = logging.getLogger("orders")  # its handlers carry TenantLogFilter: %(tenant_id)s


def health_registry(db_host: str, db_port: int) -> HealthRegistry:
    health = HealthRegistry(service="orders-api")
    health.add("db", checks.tcp(db_host, db_port), groups={"readiness"})
    return health


def whoami_body() -> dict[str, Any]:
    """What the views answer: the tenant as the view, and as structlog, see it."""
    log.info("whoami served")
    return {"tenant": get_tenant().id, "log_tenant_id": get_contextvars().get("tenant_id")}


# --8<-- [end:tenancy-setup]
