"""The tenancy part of the demo: a tenant from the path, carried into a thread and keys.

``GET /tenancy/t/acme/whoami`` resolves ``acme`` from the path prefix (which
moves to ``root_path``), looks it up in a small in-memory table and answers
what the request sees: the tenant and its plan, a tenant-aware key, the
headers for an outgoing call, and the tenant seen from a worker thread.
``/tenancy/whoami`` (no tenant) answers 401, ``/tenancy/t/nobody/whoami`` 404
and a malformed id 400, as problem+json.
"""

from __future__ import annotations

import asyncio
import json

from prometheus_client import CollectorRegistry

from opskit._core.asgi import Receive, Scope, Send, send_problem, send_response
from opskit.demo._app import Part
from opskit.tenancy import (
    Tenant,
    TenantThreadPoolExecutor,
    current_tenant,
    get_tenant,
    key_for,
    resolvers,
    to_headers,
)
from opskit.tenancy.asgi import TenantMiddleware

PREFIX = "/tenancy"

TENANTS = {
    "acme": Tenant("acme", plan="pro", schema="tenant_acme"),
    "globex": Tenant("globex", plan="free", schema="tenant_globex"),
}


def _thread_sees() -> str | None:
    t = current_tenant()
    return None if t is None else t.id


def demo_part(registry: CollectorRegistry | None = None) -> Part:
    pool = TenantThreadPoolExecutor(max_workers=2, thread_name_prefix="opskit-demo-tenancy")

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path in (PREFIX, PREFIX + "/"):
            doc = {
                "what": "a tenant per request, resolved from the path prefix /tenancy/t/{tenant}",
                "tenants": sorted(TENANTS),
                "try": [f"{PREFIX}/t/acme/whoami", f"{PREFIX}/t/nobody/whoami",
                        f"{PREFIX}/whoami"],
            }  # fmt: skip
            await send_response(send, 200, json.dumps(doc).encode(),
                                content_type="application/json")  # fmt: skip
            return
        if path != "/whoami":
            await send_problem(send, 404, detail=f"nothing at {path}")
            return
        tenant = get_tenant()
        loop = asyncio.get_running_loop()
        seen: dict[str, object] = {
            "tenant": tenant.id,
            "plan": tenant.plan,
            "root_path": scope.get("root_path", ""),
            "rate_limit_key": key_for("rl", "login"),
            "outgoing_headers": to_headers(),
            "worker_thread_sees": await loop.run_in_executor(pool, _thread_sees),
        }
        await send_response(send, 200, json.dumps(seen).encode(), content_type="application/json")

    app = TenantMiddleware(
        inner,
        resolver=resolvers.path_prefix(PREFIX + "/t/{tenant}", strip=True),
        lookup=TENANTS.get,
        exempt=[PREFIX, PREFIX + "/"],
        registry=registry,
    )
    return Part(
        PREFIX,
        "tenancy: a tenant per request from the path, carried into a thread, keys and headers",
        app,
        [
            ("GET", PREFIX, 200),
            ("GET", f"{PREFIX}/t/acme/whoami", 200),
            ("GET", f"{PREFIX}/t/globex/whoami", 200),
            ("GET", f"{PREFIX}/t/nobody/whoami", 404),
            ("GET", f"{PREFIX}/t/-bad-/whoami", 400),
            ("GET", f"{PREFIX}/whoami", 401),
        ],
    )
