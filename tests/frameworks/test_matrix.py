"""The framework matrix (issue 19): every opskit adapter under FastAPI, Starlette,
Litestar, Django (ASGI and WSGI) and Flask, end to end.

Each framework app (tests/frameworks/apps/, the recipes of docs/frameworks.md)
is served once for the module by a real server (uvicorn for ASGI, waitress for
WSGI) and driven by httpx. The server's peer is 127.0.0.1, the trusted proxy of
the apps: each test speaks for its own clients through ``X-Forwarded-For``.
"""

from __future__ import annotations

import hashlib
import logging
import random
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from _servers import run_asgi, run_wsgi
from frameworks.apps import django_project, fastapi_app, flask_app, litestar_app, starlette_app
from frameworks.apps.opskit_setup import health_registry
from opskit.health import HealthRegistry
from opskit.health.asgi import HealthEndpoints
from opskit.ratelimit._middleware import QUOTA_EXCEEDED
from opskit.tenancy import TenantLogFilter
from opskit.webhooks import GitHub

SECRET = "matrix-webhook-secret"
PROBLEM = "application/problem+json"

# name -> (server kind, the app's factory); the factory takes the app's metrics registry.
FRAMEWORKS: dict[str, tuple[str, Callable[[CollectorRegistry], Any]]] = {
    "fastapi": ("asgi", fastapi_app.create_app),
    "starlette": ("asgi", starlette_app.create_app),
    "litestar": ("asgi", litestar_app.create_app),
    "django-asgi": ("asgi", django_project.asgi_application),
    "django-wsgi": ("wsgi", django_project.wsgi_application),
    "flask": ("wsgi", flask_app.create_app),
}

# The tenancy and health rows run on a second app per framework (create_tenant_app).
TENANT_APPS: dict[str, tuple[str, Callable[[HealthRegistry], Any]]] = {
    "fastapi": ("asgi", fastapi_app.create_tenant_app),
    "starlette": ("asgi", starlette_app.create_tenant_app),
    "litestar": ("asgi", litestar_app.create_tenant_app),
    "django-asgi": ("asgi", django_project.tenant_asgi_application),
    "django-wsgi": ("wsgi", django_project.tenant_wsgi_application),
    "flask": ("wsgi", flask_app.create_tenant_app),
}


@dataclass
class Server:
    framework: str
    client: httpx.Client

    @property
    def marker(self) -> str:
        """The X-Framework header every view of this app sets (absent: no view ran)."""
        return self.framework.split("-")[0]


@pytest.fixture(scope="module", params=list(FRAMEWORKS))
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    kind, create = FRAMEWORKS[request.param]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GITHUB_WEBHOOK_SECRET", SECRET)
        app = create(CollectorRegistry())
    runner = run_asgi if kind == "asgi" else run_wsgi
    with runner(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield Server(request.param, client)


def client_ip(address: str) -> dict[str, str]:
    """The header our trusted proxy (the loopback peer) adds for a client."""
    return {"X-Forwarded-For": address}


def assert_view(server: Server, resp: httpx.Response, status: int, text: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers.get("X-Framework") == server.marker  # the framework's view answered
    if text is not None:
        assert resp.text == text


def assert_problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    assert "X-Framework" not in resp.headers  # answered by the middleware, not the view
    doc: dict[str, Any] = resp.json()
    assert doc["status"] == status
    return doc


# -- ratelimit: RateLimitMiddleware -----------------------------------------------------


def test_ratelimit_429_with_ietf_headers_by_forwarded_ip(server: Server) -> None:
    c, alice = server.client, client_ip("203.0.113.10")
    # One "/api/*" rule: its count is the client's, whichever route of it is asked.
    for remaining, route in ((2, "items"), (1, "orders"), (0, "items")):
        ok = c.get(f"/api/{route}", headers=alice)
        assert_view(server, ok, 200, route)
        assert ok.headers["RateLimit-Policy"] == '"api-0";q=3;w=3600'
        assert ok.headers["RateLimit"].startswith(f'"api-0";r={remaining};t=')
    denied = c.get("/api/orders", headers=alice)
    doc = assert_problem(denied, 429)
    assert doc["type"] == QUOTA_EXCEEDED
    assert 1190 <= int(denied.headers["Retry-After"]) <= 1200  # GCRA 3/hour: one back in 20 min
    assert denied.headers["RateLimit"].startswith('"api-0";r=0;t=')
    # Keyed by the client our proxy saw: another client behind it is not limited ...
    bob = c.get("/api/items", headers=client_ip("203.0.113.11"))
    assert_view(server, bob, 200, "items")
    assert bob.headers["RateLimit"].startswith('"api-0";r=2;t=')
    # ... and alice writing a fake left-most address is still alice (read right to left).
    forged = c.get("/api/items", headers=client_ip("198.51.100.99, 203.0.113.10"))
    assert_problem(forged, 429)
    # A path no rule names carries no rate headers.
    plain = c.get("/hello", headers=alice)
    assert_view(server, plain, 200, f"hello from {server.marker}")
    assert "RateLimit" not in plain.headers


def test_ratelimit_login_counts_failures_only(server: Server) -> None:
    c, carol = server.client, client_ip("203.0.113.20")
    for _ in range(4):  # successes are not counted
        assert_view(server, c.post("/login", content=b"correct horse", headers=carol), 200,
                    "welcome")  # fmt: skip
    for left in (2, 1, 0):
        wrong = c.post("/login", content=b"guess", headers=carol)
        assert_view(server, wrong, 401, "wrong password")
        assert wrong.headers["RateLimit"].startswith(f'"login-0";r={left};t=')
    blocked = c.post("/login", content=b"correct horse", headers=carol)
    assert_problem(blocked, 429)  # three failures: even the right password is refused
    assert int(blocked.headers["Retry-After"]) >= 1190
    assert_view(server, c.post("/login", content=b"correct horse",
                               headers=client_ip("203.0.113.21")), 200)  # fmt: skip


def test_litestar_rates_rules_count_per_route_handler() -> None:
    """Why the Litestar recipe gives its rules ready limiters: Litestar builds a
    middleware once per route handler, so ``rates=`` rules count per route."""
    app = litestar_app.create_naive_app(CollectorRegistry())
    with run_asgi(app) as base, httpx.Client(base_url=base, timeout=10) as c:
        codes = [c.get(f"/api/{route}").status_code for route in ("items", "orders") * 4]
    # "/api/*" allows 3 an hour; each of the two routes admitted 3 on its own count.
    assert codes == [200] * 6 + [429] * 2


# -- ratelimit: IPFilterMiddleware ------------------------------------------------------


def test_ip_filter_denies_networks_and_guards_admin(server: Server) -> None:
    c = server.client
    assert_view(server, c.get("/hello"), 200)  # the proxy itself
    assert_view(server, c.get("/hello", headers=client_ip("198.51.100.7")), 200)
    doc = assert_problem(c.get("/hello", headers=client_ip("192.0.2.7")), 403)
    assert "network" in doc["detail"]
    assert_problem(c.get("/admin/panel"), 403)  # 127.0.0.1 is not in 10.0.0.0/8
    assert_problem(c.get("/admin/panel", headers=client_ip("198.51.100.7")), 403)
    assert_view(server, c.get("/admin/panel", headers=client_ip("10.1.2.3")), 200, "admin panel")
    # A client cannot claim to be inside: the proxy's (right-most) entry decides.
    assert_problem(c.get("/admin/panel", headers=client_ip("10.1.2.3, 198.51.100.8")), 403)
    # A path no route serves: Litestar runs middleware after routing (its 404 comes
    # first); everywhere else the filter answers before the framework routes.
    stray = c.get("/admin/nothing-here", headers=client_ip("192.0.2.7"))
    if server.framework == "litestar":
        assert stray.status_code == 404 and stray.headers["content-type"] != PROBLEM
    else:
        assert_problem(stray, 403)


# -- webhooks: WebhookMiddleware --------------------------------------------------------

# Bytes that break code verifying re-serialised JSON: spacing, CRLF, non-UTF-8, NUL.
RAW = b'{ "action" : "opened",\r\n  "note": "caf\xc3\xa9 \xff\x00" }  \n'


def sign(body: bytes, delivery: str) -> dict[str, str]:
    headers = GitHub(secrets=[SECRET], metrics=False).sign(body, delivery=delivery)
    return {**headers, "Content-Type": "application/json"}


@pytest.mark.parametrize("body", [RAW, random.Random(19).randbytes(300_000)], ids=["raw", "300KB"])
def test_webhook_view_gets_the_verified_bytes(server: Server, body: bytes) -> None:
    c = server.client
    resp = c.post("/webhooks/github", content=body, headers=sign(body, "d-1"))
    assert_view(server, resp, 200)
    assert resp.json() == {"sha256": hashlib.sha256(body).hexdigest(), "same": True,
                           "delivery": "d-1", "scheme": "github"}  # fmt: skip


def test_webhook_tampered_or_unsigned_is_refused(server: Server) -> None:
    c = server.client
    headers = sign(RAW, "d-2")
    tampered = RAW.replace(b"opened", b"closed")
    doc = assert_problem(c.post("/webhooks/github", content=tampered, headers=headers), 401)
    assert (doc["reason"], doc["scheme"]) == ("signature_mismatch", "github")
    doc = assert_problem(c.post("/webhooks/github", content=RAW), 400)
    assert doc["reason"] == "missing_header"
    # The same request untampered passes: the refusal was the signature's doing.
    assert_view(server, c.post("/webhooks/github", content=RAW, headers=headers), 200)


# -- observability: the metrics app at /metrics -----------------------------------------

# Starlette's Mount (and so FastAPI's app.mount) serves /metrics/ and redirects /metrics.
REDIRECTS = {"fastapi", "starlette"}


def scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = server.client.get("/metrics")
    if server.framework in REDIRECTS:
        assert resp.status_code == 307 and resp.headers["location"].endswith("/metrics/")
        resp = server.client.get("/metrics/")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(resp.text) for s in f.samples}  # fmt: skip


def test_metrics_app_exposes_the_apps_opskit_counters(server: Server) -> None:
    c, dave = server.client, client_ip("203.0.113.30")
    limited = ("opskit_ratelimit_decisions_total", (("decision", "limited"), ("name", "api")))
    allowed = ("opskit_ratelimit_decisions_total", (("decision", "allowed"), ("name", "api")))
    mismatch = ("opskit_webhook_verifications_total",
                (("result", "signature_mismatch"), ("scheme", "github")))  # fmt: skip
    before = scrape(server)
    for _ in range(4):
        c.get("/api/items", headers=dave)
    c.post("/webhooks/github", content=b"{}", headers=sign(b"{ }", "d-3"))
    after = scrape(server)
    assert after[allowed] - before.get(allowed, 0) == 3
    assert after[limited] - before.get(limited, 0) == 1
    assert after[mismatch] - before.get(mismatch, 0) == 1


# -- tenancy: TenantMiddleware ----------------------------------------------------------


@dataclass
class TenantServer(Server):
    health: HealthRegistry
    database: socket.socket  # what the readiness check connects to
    records: list[logging.LogRecord]


class Captured(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records
        self.addFilter(TenantLogFilter())  # runs in the thread that logs: the view's

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module", params=list(TENANT_APPS))
def tenant_server(request: pytest.FixtureRequest) -> Iterator[TenantServer]:
    kind, create = TENANT_APPS[request.param]
    records: list[logging.LogRecord] = []
    handler, log = Captured(records), logging.getLogger("orders")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    database = socket.create_server(("127.0.0.1", 0))
    health = health_registry(*database.getsockname()[:2])
    runner = run_asgi if kind == "asgi" else run_wsgi
    try:
        with runner(create(health)) as base, httpx.Client(base_url=base, timeout=10) as client:
            yield TenantServer(request.param, client, health, database, records)
    finally:
        log.removeHandler(handler)
        database.close()
        health.close()


def test_tenant_in_the_view_and_its_logs(tenant_server: TenantServer) -> None:
    c, records = tenant_server.client, tenant_server.records
    records.clear()
    for tenant in ("acme", "globex", "acme"):
        resp = c.get("/whoami", headers={"X-Tenant-ID": tenant})
        assert_view(tenant_server, resp, 200)
        body = resp.json()
        assert (body["tenant"], body["log_tenant_id"]) == (tenant, tenant)  # view, structlog
        assert body.get("depends", tenant) == tenant  # FastAPI's Depends(get_tenant)
    # The view's stdlib log lines, tagged by TenantLogFilter in the view's own thread.
    assert [(r.getMessage(), r.tenant_id) for r in records] == [  # type: ignore[attr-defined]
        ("whoami served", "acme"),
        ("whoami served", "globex"),
        ("whoami served", "acme"),
    ]
    doc = assert_problem(c.get("/whoami"), 401)  # no tenant: the view never runs
    assert doc["detail"] == "no tenant context"
    assert_problem(c.get("/whoami", headers={"X-Tenant-ID": "../etc"}), 400)
    assert len(records) == 3


# -- health: HealthEndpoints ------------------------------------------------------------


def test_health_endpoints_livez_readyz_health(tenant_server: TenantServer) -> None:
    c = tenant_server.client

    def probe(path: str, status: int, verdict: str) -> None:
        resp = c.get(path)  # no tenant header: the probes are answered before tenancy
        assert resp.status_code == status, resp.text
        assert resp.headers["content-type"].startswith("application/health+json")
        assert resp.headers["cache-control"].startswith("max-age=")
        assert "X-Framework" not in resp.headers  # answered by the endpoints, not a view
        assert resp.json()["status"] == verdict

    probe("/livez", 200, "pass")
    probe("/readyz", 200, "pass")
    probe("/health", 200, "pass")
    tenant_server.database.close()  # the database goes away
    tenant_server.health.invalidate()  # (the report is cached for cache_ttl seconds)
    probe("/readyz", 503, "fail")  # out of the load balancer
    probe("/health", 503, "fail")
    probe("/livez", 200, "pass")  # but not restarted: liveness asks nothing outside


def test_health_endpoints_go_through_add_middleware_by_around() -> None:
    """HealthEndpoints takes the registry first, and Starlette's add_middleware passes
    the app first: the class itself fails there, HealthEndpoints.around does not."""
    from starlette.applications import Starlette

    app = Starlette()
    app.add_middleware(HealthEndpoints, health=HealthRegistry())
    with pytest.raises(TypeError, match="multiple values for argument 'health'"):
        app.build_middleware_stack()
    health = HealthRegistry()
    inner = Starlette()
    inner.add_middleware(HealthEndpoints.around, health=health, live="/alive")
    stack = inner.build_middleware_stack()
    found = stack
    while not isinstance(found, HealthEndpoints):
        found = found.app
    assert found.health is health and "/alive" in found._ep.paths
    health.close()


def test_litestar_middleware_never_sees_the_health_paths() -> None:
    """Why the Litestar recipe wraps the app: its middleware runs after routing."""
    health = HealthRegistry()
    try:
        with run_asgi(litestar_app.create_naive_health_app(health)) as base:
            resp = httpx.get(base + "/livez", timeout=10)
    finally:
        health.close()
    assert resp.status_code == 404
    assert not resp.headers["content-type"].startswith("application/health+json")
