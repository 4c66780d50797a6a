"""TenantMiddleware (ASGI) in process: answers, resolvers, lookup, scope lifetime, metrics."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from opskit.tenancy import (
    DEFAULT_ID_PATTERN,
    Tenant,
    current_tenant,
    get_tenant,
    resolvers,
    tenant_scope,
)
from opskit.tenancy.asgi import TenantMiddleware
from opskit.testing import ManualClock
from tenancy._tn import asgi_text, call, get, http_scope


def who() -> str:
    t = current_tenant()
    return "-" if t is None else t.id


async def echo(scope: Any, receive: Any, send: Any) -> None:
    t = current_tenant()
    plan = getattr(t, "plan", "") if t is not None else ""
    await asgi_text(send, f"{who()}|{plan}|{scope.get('root_path', '')}|{scope['path']}")


def mw(app: Any = echo, **kw: Any) -> TenantMiddleware:
    kw.setdefault("registry", CollectorRegistry())
    return TenantMiddleware(app, **kw)


valid_ids = st.from_regex(re.compile(DEFAULT_ID_PATTERN), fullmatch=True)


def samples(registry: CollectorRegistry) -> dict[str, float]:
    out = {}
    for fam in registry.collect():
        for s in fam.samples:
            if s.name == "opskit_tenancy_requests_total":
                assert set(s.labels) == {"outcome"}  # never a tenant label
                out[s.labels["outcome"]] = s.value
    return out


APP = mw()  # one middleware for the property test: its fast path warms up across examples


async def test_header_resolves_and_nothing_is_left() -> None:
    app = mw()
    r = await get(app, "/x", {"X-Tenant-ID": "acme"})
    assert r.status == 200 and r.body == b"acme|||/x"
    assert current_tenant() is None  # the same task: the finally restored it
    r = await get(app, "/x", {"x-tenant-id": "globex"})
    assert r.body.startswith(b"globex|")


async def test_missing_is_401_problem() -> None:
    r = await get(mw(), "/x")
    assert r.status == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == {"type": "about:blank", "title": "Unauthorized", "status": 401,
                        "detail": "no tenant context"}  # fmt: skip


@pytest.mark.parametrize("bad", ["", "bad id", "-x", "a" * 65, "acme,globex", "ac/me"])
async def test_malformed_is_400_and_never_echoed(bad: str) -> None:
    for required in (True, False):
        r = await get(mw(required=required), "/", {"X-Tenant-ID": bad})
        assert r.status == 400 and r.json()["detail"] == "malformed tenant id"
        if bad:
            assert bad.encode() not in r.body


async def test_repeated_header_with_different_values_is_400() -> None:
    scope = http_scope("/", headers=None)
    scope["headers"] = [(b"x-tenant-id", b"acme"), (b"x-tenant-id", b"globex")]
    assert (await call(mw(), scope)).status == 400
    scope["headers"] = [(b"x-tenant-id", b"acme"), (b"x-tenant-id", b"acme")]
    assert (await call(mw(), scope)).body.startswith(b"acme|")


async def test_not_required_passes_with_no_scope() -> None:
    r = await get(mw(required=False), "/x")
    assert r.status == 200 and r.body.startswith(b"-|")


async def test_id_pattern_narrows() -> None:
    app = mw(id_pattern=r"t-[0-9]+")
    assert (await get(app, "/", {"X-Tenant-ID": "acme"})).status == 400
    assert (await get(app, "/", {"X-Tenant-ID": "t-42"})).body.startswith(b"t-42|")


async def test_exempt_globs_are_not_resolved() -> None:
    reg = CollectorRegistry()
    app = mw(exempt=["/health*", "/metrics"], registry=reg)
    for path in ("/health", "/health/deep/x", "/metrics"):
        r = await get(app, path, {"X-Tenant-ID": "bad id"})  # not even validated
        assert r.status == 200 and r.body.startswith(b"-|"), path
    assert (await get(app, "/metricsx")).status == 401
    assert samples(reg)["exempt"] == 3
    # An id the middleware has already seen changes nothing on an exempt path.
    assert (await get(app, "/x", {"X-Tenant-ID": "acme"})).body.startswith(b"acme|")
    assert (await get(app, "/health", {"X-Tenant-ID": "acme"})).body.startswith(b"-|")
    assert samples(reg)["exempt"] == 4


async def test_ids_seen_before_take_the_same_decisions() -> None:
    """The fast path for known ids: repeated, duplicated, conflicting, padded headers."""
    reg = CollectorRegistry()
    app = mw(registry=reg)
    for _ in range(3):
        assert (await get(app, "/", {"X-Tenant-ID": "acme"})).body.startswith(b"acme|")
    scope = http_scope("/")
    scope["headers"] = [(b"x-tenant-id", b"acme"), (b"x-tenant-id", b"globex")]
    assert (await call(app, scope)).status == 400
    scope["headers"] = [(b"x-tenant-id", b"acme"), (b"x-tenant-id", b"acme")]
    assert (await call(app, scope)).body.startswith(b"acme|")
    scope["headers"] = [(b"x-tenant-id", b" acme ")]
    assert (await call(app, scope)).body.startswith(b"acme|")
    scope["headers"] = [(b"X-Tenant-ID", b"acme")]  # not lowercased, as a hand-built scope
    assert (await call(app, scope)).body.startswith(b"acme|")
    assert samples(reg)["resolved"] == 6 and samples(reg)["invalid"] == 1


async def test_subdomain_resolver() -> None:
    app = mw(resolver=resolvers.subdomain("example.com"))
    assert (await get(app, "/", {"Host": "acme.example.com:8000"})).body.startswith(b"acme|")
    assert (await get(app, "/", {"Host": "ACME.Example.COM."})).body.startswith(b"acme|")
    for host in ("example.com", "a.b.example.com", "acme.other.com", "[::1]:80", "evilexample.com"):
        assert (await get(app, "/", {"Host": host})).status == 401, host
    assert (await get(app, "/", {"Host": "bad_#.example.com"})).status == 400


async def test_path_prefix_strips_into_root_path() -> None:
    app = mw(resolver=resolvers.path_prefix("/t/{tenant}", strip=True))
    scope = http_scope("/t/acme/orders/1")
    r = await call(app, scope)
    assert r.body == b"acme||/t/acme|/orders/1"
    assert scope["path"] == "/t/acme/orders/1"  # the caller's scope is not changed
    assert (await get(app, "/t/acme")).body == b"acme||/t/acme|/"
    assert (await get(app, "/tx/acme")).status == 401
    kept = mw(resolver=resolvers.path_prefix("/t/{tenant}", strip=False))
    assert (await get(kept, "/t/acme/orders")).body == b"acme|||/t/acme/orders"


async def test_scope_value_and_first() -> None:
    app = mw(resolver=resolvers.scope_value("tenant_id"))
    r = await get(app, "/", state={"tenant_id": Tenant("acme", plan="pro")})
    assert r.body.startswith(b"acme|pro|")
    assert (await get(app, "/", state={"tenant_id": "globex"})).body.startswith(b"globex|")
    assert (await get(app, "/", state={"tenant_id": 5})).status == 400
    assert (await get(app, "/", state={})).status == 401
    both = mw(resolver=resolvers.first(resolvers.header("X-Tenant-ID"),
                                       resolvers.subdomain("example.com")))  # fmt: skip
    assert (await get(both, "/", {"Host": "acme.example.com"})).body.startswith(b"acme|")
    r = await get(both, "/", {"Host": "acme.example.com", "X-Tenant-ID": "hdr"})
    assert r.body.startswith(b"hdr|")


async def test_a_failing_resolver_is_500_and_counted() -> None:
    reg = CollectorRegistry()

    def broken(scope: Any) -> str:
        raise RuntimeError("bug")

    r = await get(mw(resolver=broken, registry=reg), "/")
    assert r.status == 500 and samples(reg)["lookup_failed"] == 1
    assert (await get(mw(resolver=lambda s: "plain"), "/")).body.startswith(b"plain|")


# -- lookup -------------------------------------------------------------------------------


async def test_lookup_unknown_failing_and_cached() -> None:
    clock = ManualClock()
    calls: list[str] = []
    db = {"acme": Tenant("acme", plan="pro")}

    def lookup(tenant_id: str) -> Tenant | None:
        calls.append(tenant_id)
        if tenant_id == "boom":
            raise ConnectionError("db down")
        if tenant_id == "weird":
            return {"id": "weird"}  # type: ignore[return-value]
        return db.get(tenant_id)

    reg = CollectorRegistry()
    app = mw(lookup=lookup, lookup_ttl=30, clock=clock, registry=reg)
    assert (await get(app, "/", {"X-Tenant-ID": "acme"})).body.startswith(b"acme|pro|")
    assert (await get(app, "/", {"X-Tenant-ID": "acme"})).body.startswith(b"acme|pro|")
    r = await get(app, "/", {"X-Tenant-ID": "nobody"})
    assert r.status == 404 and r.json()["detail"] == "unknown tenant"
    assert (await get(app, "/", {"X-Tenant-ID": "nobody"})).status == 404
    assert calls == ["acme", "nobody"]  # hits and misses cached
    r = await get(app, "/", {"X-Tenant-ID": "boom"})
    assert r.status == 503 and r.json()["detail"] == "tenant lookup failed"
    assert (await get(app, "/", {"X-Tenant-ID": "boom"})).status == 503
    assert calls.count("boom") == 2  # failures are not cached
    assert (await get(app, "/", {"X-Tenant-ID": "weird"})).status == 503
    db["nobody"] = Tenant("nobody")
    clock.advance(29.9)
    assert (await get(app, "/", {"X-Tenant-ID": "nobody"})).status == 404
    clock.advance(0.2)
    assert (await get(app, "/", {"X-Tenant-ID": "nobody"})).status == 200
    assert samples(reg) == {"resolved": 3, "missing": 0, "unknown": 3, "invalid": 0,
                            "lookup_failed": 3, "exempt": 0}  # fmt: skip


async def test_async_lookup_and_timeout() -> None:
    release = asyncio.Event()

    async def lookup(tenant_id: str) -> Tenant | None:
        if tenant_id == "slow":
            await release.wait()
        return Tenant(tenant_id, source="async")

    app = mw(lookup=lookup, lookup_timeout=0.05)
    assert (await get(app, "/", {"X-Tenant-ID": "acme"})).status == 200
    assert (await get(app, "/", {"X-Tenant-ID": "slow"})).status == 503
    release.set()


async def test_sync_lookup_runs_off_the_loop_and_times_out() -> None:
    release = threading.Event()
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def lookup(tenant_id: str) -> Tenant | None:
        threads.append(threading.get_ident())
        if tenant_id == "slow":
            release.wait(10)
        return Tenant(tenant_id)

    app = mw(lookup=lookup, lookup_timeout=0.05)
    assert (await get(app, "/", {"X-Tenant-ID": "acme"})).status == 200
    assert threads and threads[0] != loop_thread
    assert (await get(app, "/", {"X-Tenant-ID": "slow"})).status == 503
    release.set()


async def test_concurrent_requests_share_one_lookup_call() -> None:
    release, called = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    async def lookup(tenant_id: str) -> Tenant | None:
        calls.append(tenant_id)
        called.set()
        await release.wait()
        return Tenant(tenant_id)

    app = mw(lookup=lookup)
    tasks = [asyncio.create_task(get(app, "/", {"X-Tenant-ID": "acme"})) for _ in range(25)]
    await called.wait()
    for _ in range(20):
        await asyncio.sleep(0)  # let every request reach the shared call
    release.set()
    results = await asyncio.gather(*tasks)
    assert calls == ["acme"]
    assert all(r.body.startswith(b"acme|") for r in results)


async def test_a_cancelled_waiter_does_not_cancel_the_shared_call() -> None:
    release, called = asyncio.Event(), asyncio.Event()
    calls = 0

    async def lookup(tenant_id: str) -> Tenant:
        nonlocal calls
        calls += 1
        called.set()
        await release.wait()
        return Tenant(tenant_id)

    app = mw(lookup=lookup)
    first = asyncio.create_task(get(app, "/", {"X-Tenant-ID": "acme"}))
    second = asyncio.create_task(get(app, "/", {"X-Tenant-ID": "acme"}))
    await called.wait()
    first.cancel()
    release.set()
    assert (await second).body.startswith(b"acme|")
    assert calls == 1


# -- scope lifetime -----------------------------------------------------------------------


async def test_streaming_body_keeps_the_scope_to_the_end() -> None:
    async def stream(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(3):
            await asyncio.sleep(0)
            await send({"type": "http.response.body", "body": who().encode(), "more_body": True})

        async def in_task() -> str:  # a body streamed from another task (as Starlette does)
            return who()

        last = await asyncio.create_task(in_task())
        await send({"type": "http.response.body", "body": last.encode()})

    r = await get(mw(stream), "/", {"X-Tenant-ID": "acme"})
    assert r.body == b"acme" * 4
    assert current_tenant() is None


async def test_app_raising_or_cancelled_leaves_nothing() -> None:
    async def boom(scope: Any, receive: Any, send: Any) -> None:
        assert get_tenant().id == "acme"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        raise RuntimeError("mid-stream")

    with pytest.raises(RuntimeError, match="mid-stream"):
        await get(mw(boom), "/", {"X-Tenant-ID": "acme"})
    assert current_tenant() is None

    hang = asyncio.Event()

    async def waits(scope: Any, receive: Any, send: Any) -> None:
        await hang.wait()

    task = asyncio.create_task(get(mw(waits), "/", {"X-Tenant-ID": "acme"}))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert current_tenant() is None


async def test_an_outer_scope_is_restored_after_the_request() -> None:
    async with tenant_scope("outer"):
        r = await get(mw(), "/", {"X-Tenant-ID": "acme"})
        assert r.body.startswith(b"acme|") and get_tenant().id == "outer"


async def test_lifespan_and_other_scopes_pass_untouched() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    reg = CollectorRegistry()
    life = {"type": "lifespan", "asgi": {"version": "3.0"}}
    await TenantMiddleware(app, registry=reg)(life, None, None)  # type: ignore[arg-type]
    assert seen == [life] and seen[0] is life
    assert sum(samples(reg).values()) == 0


async def ws(app: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    scope = http_scope("/ws", headers, type="websocket")
    sent: list[dict[str, Any]] = []
    inbox = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_websocket_resolved_or_closed_before_accept() -> None:
    reached: list[str] = []

    async def ws_app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        reached.append(who())
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": who()})
        await receive()

    app = mw(ws_app)
    sent = await ws(app, {"X-Tenant-ID": "acme"})
    assert sent[0]["type"] == "websocket.accept" and sent[1]["text"] == "acme"
    for headers in ({}, {"X-Tenant-ID": "bad id"}):
        sent = await ws(app, headers)
        assert sent == [{"type": "websocket.close", "code": 1008, "reason": sent[0]["reason"]}]
    assert reached == ["acme"]


async def test_a_client_gone_while_rejecting_does_not_raise() -> None:
    async def send(message: Any) -> None:
        raise OSError("connection reset")

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    await mw()(http_scope("/"), receive, send)  # no exception


async def test_metrics_one_increment_per_request_shared_per_registry() -> None:
    reg = CollectorRegistry()
    a = mw(registry=reg, exempt=["/h"])
    b = mw(registry=reg, lookup=lambda i: None)
    await get(a, "/", {"X-Tenant-ID": "acme"})
    await get(a, "/")
    await get(a, "/", {"X-Tenant-ID": "!"})
    await get(a, "/h")
    await get(b, "/", {"X-Tenant-ID": "acme"})
    assert samples(reg) == {"resolved": 1, "missing": 1, "unknown": 1, "invalid": 1,
                            "lookup_failed": 0, "exempt": 1}  # fmt: skip


def test_bad_configuration() -> None:
    with pytest.raises(ValueError, match="lookup_timeout"):
        TenantMiddleware(echo, lookup_timeout=0)
    with pytest.raises(TypeError):
        TenantMiddleware(echo, resolver=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        TenantMiddleware(echo, exempt=[1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="tenant"):
        resolvers.path_prefix("/t/")


@settings(max_examples=200, deadline=None)
@given(st.one_of(valid_ids, st.text(max_size=70)))
async def test_any_header_value_is_resolved_exactly_or_answered_400(value: str) -> None:
    """200 with exactly that tenant iff the value is a valid id once SP and HTAB around
    it are stripped (nothing else: "\\x85acme" is malformed), else 400; never a leak."""
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raw = value.encode("utf-8")
    scope = http_scope("/")
    scope["headers"] = [(b"x-tenant-id", raw)]
    r = await call(APP, scope)
    text = raw.decode("latin-1").strip(" \t")
    if re.fullmatch(DEFAULT_ID_PATTERN, text):
        assert r.status == 200 and r.body.startswith(f"{text}|".encode())
    else:
        assert r.status == 400
    assert current_tenant() is None


def test_the_lookup_cache_is_bounded() -> None:
    calls: list[str] = []

    def lookup(tenant_id: str) -> Tenant:
        calls.append(tenant_id)
        return Tenant(tenant_id)

    app = mw(lookup=lookup, cache_size=2)

    async def run() -> None:
        for tenant_id in ("a1", "a2", "a1", "a3", "a1", "a2"):
            assert (await get(app, "/", {"X-Tenant-ID": tenant_id})).status == 200

    asyncio.run(run())
    # a3 evicts a1 (the oldest); a1 then evicts a2.
    assert calls == ["a1", "a2", "a3", "a1", "a2"]
    assert len(app._gate._cache) == 2


@pytest.mark.parametrize("raw", [b"\x85acme", b"acme\x1f", b"\x0bacme", b"acme\xa0"])
async def test_only_sp_and_htab_are_stripped(raw: bytes) -> None:
    app = mw()
    scope = http_scope("/")
    scope["headers"] = [(b"x-tenant-id", raw)]
    assert (await call(app, scope)).status == 400
    scope["headers"] = [(b"x-tenant-id", b" \tacme\t ")]
    assert (await call(app, scope)).body.startswith(b"acme|")


async def test_known_tenants_of_a_lookup_expire_on_the_fast_path_too() -> None:
    clock = ManualClock()
    calls: list[str] = []
    plans = {"acme": "pro"}

    def lookup(tenant_id: str) -> Tenant | None:
        calls.append(tenant_id)
        return Tenant(tenant_id, plan=plans[tenant_id]) if tenant_id in plans else None

    app = mw(lookup=lookup, lookup_ttl=10, clock=clock)
    for _ in range(5):
        assert (await get(app, "/", {"X-Tenant-ID": "acme"})).body.startswith(b"acme|pro|")
    assert calls == ["acme"]
    plans["acme"] = "enterprise"
    clock.advance(9.9)
    assert (await get(app, "/", {"X-Tenant-ID": "acme"})).body.startswith(b"acme|pro|")
    clock.advance(0.2)  # the entry expired: the next request looks the tenant up again
    assert (await get(app, "/", {"X-Tenant-ID": "acme"})).body.startswith(b"acme|enterprise|")
    assert (await get(app, "/", {"X-Tenant-ID": "acme"})).body.startswith(b"acme|enterprise|")
    assert calls == ["acme", "acme"]
    del plans["acme"]
    clock.advance(11)
    assert (await get(app, "/", {"X-Tenant-ID": "acme"})).status == 404  # gone: never stale
