"""The endpoints behind real servers (uvicorn, waitress) with a real HTTP client."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import jsonschema
import pytest

from _servers import run_asgi, run_wsgi
from health._helpers import run_asgi_lifespan
from health._schema import HEALTH_JSON
from opskit.health import HealthRegistry, HealthReport, Status
from opskit.health import asgi as health_asgi
from opskit.health import wsgi as health_wsgi

pytestmark = pytest.mark.timeout(60)

SERVERS = ["uvicorn", "waitress"]


class Counter:
    def __init__(self, result: Any = True) -> None:
        self.calls = 0
        self.result = result

    def __call__(self) -> Any:
        self.calls += 1
        return self.result


def serve(kind: str, health: HealthRegistry, **options: Any) -> Any:
    if kind == "uvicorn":
        return run_asgi(health_asgi.HealthEndpoints(health, **options))
    return run_wsgi(health_wsgi.HealthEndpoints(health, **options))


@pytest.fixture
def setup(make_health: Any) -> tuple[HealthRegistry, Counter, Counter]:
    h = make_health(service="billing-api", version="1.4.2", cache_ttl=2.9)
    db, stripe = Counter(), Counter()
    h.add("db", db, groups={"readiness"}, component_type="datastore")
    h.add("stripe", stripe, critical=False)
    return h, db, stripe


@pytest.mark.parametrize("server", SERVERS)
def test_liveness_touches_no_dependency(server: str, setup: Any) -> None:
    h, db, stripe = setup
    with serve(server, h) as base:
        for _ in range(3):
            r = httpx.get(f"{base}/livez")
            assert r.status_code == 200 and r.json() == {"status": "pass"}
            assert r.headers["content-type"] == "application/health+json"
            assert r.headers["cache-control"] == "max-age=2"
    assert db.calls == stripe.calls == 0


@pytest.mark.parametrize("server", SERVERS)
def test_readiness_runs_its_group_and_detail_runs_all(server: str, setup: Any) -> None:
    h, db, stripe = setup
    with serve(server, h, show_details="always") as base:
        r = httpx.get(f"{base}/readyz")
        assert r.status_code == 200
        assert set(r.json()["checks"]) == {"db:responseTime"}
        assert (db.calls, stripe.calls) == (1, 0)
        r = httpx.get(f"{base}/health")
        doc = r.json()
        jsonschema.validate(doc, HEALTH_JSON)
        assert set(doc["checks"]) == {"db:responseTime", "stripe:responseTime"}
        assert doc["serviceId"] == "billing-api" and doc["version"] == "1.4.2"
        assert r.headers["cache-control"] == "max-age=2"
        httpx.get(f"{base}/health")  # cached
        assert (db.calls, stripe.calls) == (2, 1)


@pytest.mark.parametrize("server", SERVERS)
def test_failures_answer_503_and_details_hide_by_default(server: str, make_health: Any) -> None:
    h = make_health()

    def broken() -> None:
        raise ConnectionError("postgres://app:s3cret@db.internal/app refused")

    h.add("db", broken)
    h.add("cache", lambda: True, critical=False)
    with serve(server, h) as base:
        for path in ("/readyz", "/health"):
            r = httpx.get(base + path)
            assert r.status_code == 503 and r.json() == {"status": "fail"}
            assert "s3cret" not in r.text and "ConnectionError" not in r.text
    with serve(server, h, show_details="always") as base:
        out = httpx.get(f"{base}/health").json()["checks"]["db:responseTime"][0]["output"]
        assert out == "ConnectionError: postgres://db.internal/app refused"


@pytest.mark.parametrize("server", SERVERS)
def test_details_policy_callable_sees_the_request(server: str, setup: Any) -> None:
    h, _, _ = setup

    if server == "uvicorn":

        def allowed(scope: Any) -> bool:
            return (b"authorization", b"Bearer ops") in scope["headers"]
    else:

        def allowed(environ: Any) -> bool:
            return bool(environ.get("HTTP_AUTHORIZATION") == "Bearer ops")

    with serve(server, h, show_details=allowed) as base:
        anon = httpx.get(f"{base}/health")
        ops = httpx.get(f"{base}/health", headers={"Authorization": "Bearer ops"})
    assert anon.json() == {"status": "pass"}
    assert set(ops.json()["checks"]) == {"db:responseTime", "stripe:responseTime"}


@pytest.mark.parametrize("server", SERVERS)
def test_a_broken_details_policy_shows_nothing(server: str, setup: Any) -> None:
    h, _, _ = setup

    def broken(request: Any) -> bool:
        raise RuntimeError("bug")

    with serve(server, h, show_details=broken) as base:
        r = httpx.get(f"{base}/health")
    assert r.status_code == 200 and r.json() == {"status": "pass"}


@pytest.mark.parametrize("server", SERVERS)
def test_head_and_other_methods(server: str, setup: Any) -> None:
    h, _, _ = setup
    with serve(server, h) as base:
        get = httpx.get(f"{base}/health")
        head = httpx.head(f"{base}/health")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == get.headers["content-length"]
        assert head.headers["cache-control"] == "max-age=2"
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            r = httpx.request(method, f"{base}/readyz")
            assert r.status_code == 405, method
            assert r.headers["allow"] == "GET, HEAD"
            assert r.headers["cache-control"] == "max-age=2"
        assert httpx.get(f"{base}/elsewhere").status_code == 404


@pytest.mark.parametrize("server", SERVERS)
def test_draining_flips_readiness_only(server: str, setup: Any) -> None:
    h, db, _ = setup
    with serve(server, h, show_details="always") as base:
        assert httpx.get(f"{base}/readyz").status_code == 200
        calls = db.calls
        h.set_draining()
        r = httpx.get(f"{base}/readyz")
        assert r.status_code == 503 and r.json()["status"] == "fail"
        assert r.json()["output"] == "draining"
        assert db.calls == calls  # a draining readiness probe runs no check
        assert httpx.get(f"{base}/livez").status_code == 200
        assert httpx.get(f"{base}/health").status_code == 200
    assert h.draining


@pytest.mark.parametrize("server", SERVERS)
def test_render_replaces_the_detail_body_only(server: str, make_health: Any) -> None:
    h = make_health()
    h.add("stripe", lambda: False, critical=False)

    def legacy(report: HealthReport) -> dict[str, str]:
        return {"status": "healthy" if report.status is Status.PASS else "degraded"}

    with serve(server, h, render=legacy) as base:
        r = httpx.get(f"{base}/health")
        assert r.status_code == 200 and r.json() == {"status": "degraded"}
        assert r.headers["content-type"] == "application/health+json"
        assert r.headers["cache-control"] == "max-age=2"
        assert httpx.get(f"{base}/readyz").json() == {"status": "warn"}


def test_other_paths_go_to_the_app(setup: Any) -> None:
    h, _, _ = setup

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})

    def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"wsgi app"]

    with run_asgi(health_asgi.HealthEndpoints(h, app=app, detail="/status")) as base:
        assert httpx.get(f"{base}/orders").text == "app"
        assert httpx.get(f"{base}/health").text == "app"
        assert httpx.get(f"{base}/status").json() == {"status": "pass"}
    with run_wsgi(health_wsgi.HealthEndpoints(h, app=wsgi_app, live="/healthz")) as base:
        assert httpx.get(f"{base}/orders").text == "wsgi app"
        assert httpx.get(f"{base}/healthz").json() == {"status": "pass"}


def test_hundred_concurrent_requests_run_each_check_once(make_health: Any) -> None:
    h = make_health(cache_ttl=30)
    gate = threading.Event()
    calls = 0

    def db() -> bool:
        nonlocal calls
        calls += 1
        gate.wait(10)
        return True

    h.add("db", db, timeout=10)

    async def hammer(base: str) -> list[int]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as client:
            tasks = [asyncio.ensure_future(client.get(f"{base}/health")) for _ in range(100)]
            await asyncio.sleep(0)
            gate.set()
            return [r.status_code for r in await asyncio.gather(*tasks)]

    with run_asgi(health_asgi.HealthEndpoints(h)) as base:
        statuses = asyncio.run(hammer(base))
    assert statuses == [200] * 100 and calls == 1


@pytest.mark.parametrize("server", SERVERS)
def test_a_hung_check_does_not_hold_the_response(server: str, make_health: Any) -> None:
    h = make_health()
    release = threading.Event()
    h.add("hung", lambda: release.wait(30), timeout=0.1)
    h.add("fine", lambda: True)
    try:
        with serve(server, h, show_details="always") as base:
            r = httpx.get(f"{base}/health", timeout=10)
    finally:
        release.set()
    assert r.status_code == 503
    assert r.json()["checks"]["hung:responseTime"][0]["output"] == "timed out after 0.1 s"
    assert r.json()["checks"]["fine:responseTime"][0]["status"] == "pass"


# -- lifespan ------------------------------------------------------------------------------


async def _lifespan(app: Any, messages: list[str]) -> list[str]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for m in messages:
        inbox.put_nowait({"type": m})
    sent: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    return sent


async def _get(app: Any, path: str) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send)
    return status


async def test_lifespan_shutdown_drains_without_an_app(setup: Any) -> None:
    h, _, _ = setup
    endpoints = health_asgi.HealthEndpoints(h)
    assert await _get(endpoints, "/readyz") == 200
    sent = await _lifespan(endpoints, ["lifespan.startup", "lifespan.shutdown"])
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert h.draining and await _get(endpoints, "/readyz") == 503
    assert await _get(endpoints, "/livez") == 200


async def test_lifespan_goes_to_the_app_and_its_shutdown_is_observed(setup: Any) -> None:
    h, _, _ = setup
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                seen.append(f"draining={h.draining}")
                await send({"type": "lifespan.shutdown.complete"})
                return

    endpoints = health_asgi.HealthEndpoints(h, app=app)
    sent = await _lifespan(endpoints, ["lifespan.startup", "lifespan.shutdown"])
    assert seen == ["lifespan.startup", "lifespan.shutdown", "draining=True"]
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_uvicorn_shutdown_drains(setup: Any) -> None:
    h, _, _ = setup
    with run_asgi_lifespan(health_asgi.HealthEndpoints(h)) as (base, (server, thread)):
        assert httpx.get(f"{base}/readyz").status_code == 200
        assert not h.draining
        server.should_exit = True
        thread.join(10)
    assert h.draining


def test_endpoint_configuration_errors(setup: Any) -> None:
    h, _, _ = setup
    with pytest.raises(ValueError, match="show_details"):
        health_asgi.HealthEndpoints(h, show_details="when-authorized")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must start with '/'"):
        health_wsgi.HealthEndpoints(h, live="livez")
    with pytest.raises(ValueError, match="given twice"):
        health_asgi.HealthEndpoints(h, live="/h", detail="/h")
    with pytest.raises(TypeError, match="HealthRegistry"):
        health_asgi.HealthEndpoints(object())  # type: ignore[arg-type]


# -- background refresh behind real servers ----------------------------------------------


def test_uvicorn_refresh_runs_before_requests_and_stops_at_shutdown(make_health: Any) -> None:
    h = make_health(cache_ttl=0, clock=None)
    db = Counter()
    h.add("db", db, groups={"readiness"})
    app = health_asgi.HealthEndpoints(h, refresh=3600, show_details="always")
    with run_asgi_lifespan(app) as (base, (server, thread)):
        assert h.refreshing and h._refresher.ready.wait(10)
        assert db.calls == 1  # ran at startup, before any request
        for path in ("/health", "/readyz", "/health"):
            assert httpx.get(base + path).json()["status"] == "pass"
        assert db.calls == 1  # requests read the refreshed report, never run a check
        server.should_exit = True
        thread.join(10)
    assert not h.refreshing and h.draining


def test_waitress_refresh_on_a_thread(make_health: Any) -> None:
    h = make_health(cache_ttl=0, clock=None)
    db = Counter()
    h.add("db", db)
    app = health_wsgi.HealthEndpoints(h, refresh=3600)
    try:
        assert h._refresher.ready.wait(10) and db.calls == 1
        with run_wsgi(app) as base:
            for _ in range(5):
                assert httpx.get(f"{base}/readyz").status_code == 200
        assert db.calls == 1
    finally:
        h.stop_refresh_sync()
    assert not h.refreshing


def test_waitress_concurrent_requests_run_each_check_once(make_health: Any) -> None:
    h = make_health(cache_ttl=30)
    gate = threading.Event()
    calls = 0

    def db() -> bool:
        nonlocal calls
        calls += 1
        gate.wait(10)
        return True

    h.add("db", db, timeout=10)
    results: list[int] = []
    with run_wsgi(health_wsgi.HealthEndpoints(h)) as base:

        def get() -> None:
            results.append(httpx.get(f"{base}/health", timeout=20).status_code)

        threads = [threading.Thread(target=get) for _ in range(20)]
        for t in threads:
            t.start()
        gate.set()
        for t in threads:
            t.join(30)
    assert results == [200] * 20 and calls == 1


def test_refresh_must_be_positive(setup: Any) -> None:
    h, _, _ = setup
    with pytest.raises(ValueError, match="refresh"):
        health_asgi.HealthEndpoints(h, refresh=0)
