"""The demo's http part behind a real uvicorn: it calls itself over loopback."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry

from _servers import run_asgi
from opskit.demo import build_app
from opskit.demo._http import demo_part


def test_demo_part_calls_the_flaky_upstream_through_the_transport() -> None:
    registry = CollectorRegistry()
    app = build_app([demo_part(registry)], registry)
    with run_asgi(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/http").json()["transport"].startswith("AsyncResilientTransport")
        ok = client.get("/http/call?fail=2")
        assert ok.status_code == 200 and ok.json()["attempts_seen_by_upstream"] == 3
        gave_up = client.get("/http/call?fail=9")
        assert gave_up.status_code == 503 and gave_up.json()["attempts_seen_by_upstream"] == 4
        post = client.get("/http/post?fail=1")
        assert post.status_code == 503 and post.json()["attempts_seen_by_upstream"] == 1
        keyed = client.get("/http/post?fail=1&key=order-1")
        assert keyed.status_code == 200 and keyed.json()["attempts_seen_by_upstream"] == 2
        metrics = client.get("/metrics").text
        assert 'opskit_http_requests_total{client="demo-upstream",outcome="retried"} 3.0' in metrics
