"""The tenancy demo part, in process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from opskit.demo._app import build_app
from opskit.demo._tenancy import demo_part
from tenancy._tn import get


async def test_demo_part_answers_its_checks_and_carries_the_tenant() -> None:
    registry = CollectorRegistry()
    part = demo_part(registry)
    app = build_app([part], registry)
    for method, path, status in part.checks:
        assert method == "GET"
        assert (await get(app, path)).status == status, path
    seen = (await get(app, "/tenancy/t/acme/whoami")).json()
    assert seen == {
        "tenant": "acme", "plan": "pro", "root_path": "/tenancy/t/acme",
        "rate_limit_key": "tenant:acme:rl:login",
        "outgoing_headers": {"x-opskit-tenant": "acme"}, "worker_thread_sees": "acme",
    }  # fmt: skip
