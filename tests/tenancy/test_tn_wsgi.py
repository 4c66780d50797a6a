"""TenantMiddleware (WSGI) in process: answers, strip, lookup sharing, scope until close()."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from opskit.tenancy import Tenant, current_tenant, resolvers
from opskit.tenancy.wsgi import TenantMiddleware
from opskit.testing import ManualClock
from tenancy._tn import environ, wsgi_call


def who() -> str:
    t = current_tenant()
    return "-" if t is None else t.id


def echo(env: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{who()}|{env['SCRIPT_NAME']}|{env['PATH_INFO']}".encode()]


def mw(app: Any = echo, **kw: Any) -> TenantMiddleware:
    kw.setdefault("registry", CollectorRegistry())
    return TenantMiddleware(app, **kw)


def test_statuses() -> None:
    app = mw()
    assert wsgi_call(app, environ("/a", {"X-Tenant-ID": "acme"})).body == b"acme||/a"
    r = wsgi_call(app, environ("/a"))
    assert r.status == 401 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "no tenant context"
    assert wsgi_call(app, environ("/a", {"X-Tenant-ID": "bad id"})).status == 400
    # waitress joins a repeated header with ","
    assert wsgi_call(app, environ("/", {"X-Tenant-ID": "acme, globex"})).status == 400
    assert wsgi_call(app, environ("/", {"X-Tenant-ID": "acme,acme"})).body == b"acme||/"
    lax = mw(required=False)
    assert wsgi_call(lax, environ("/a")).body == b"-||/a"
    assert wsgi_call(lax, environ("/a", {"X-Tenant-ID": "bad id"})).status == 400
    assert current_tenant() is None


def test_exempt_and_strip() -> None:
    app = mw(resolver=resolvers.path_prefix("/t/{tenant}"), exempt=["/health*"])
    assert wsgi_call(app, environ("/t/acme/orders")).body == b"acme|/t/acme|/orders"
    assert wsgi_call(app, environ("/t/acme")).body == b"acme|/t/acme|"
    assert wsgi_call(app, environ("/health/x")).body == b"-||/health/x"
    assert wsgi_call(app, environ("/orders")).status == 401
    sub = mw(resolver=resolvers.subdomain("example.com"))
    assert wsgi_call(sub, environ("/", {"Host": "acme.example.com"})).body == b"acme||/"
    state = mw(resolver=resolvers.scope_value("tenant"))
    env = environ("/")
    env["tenant"] = Tenant("acme")
    assert wsgi_call(state, env).body == b"acme||/"


def test_scope_lasts_until_close_and_close_is_forwarded() -> None:
    log: list[str] = []

    def streaming(env: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        try:
            for _ in range(3):
                yield who().encode()
        finally:
            log.append(f"close:{who()}")

    app = mw(streaming)
    result = app(environ("/", {"X-Tenant-ID": "acme"}), lambda s, h, e=None: None)
    assert current_tenant() is None  # the server thread's own context is never changed
    assert next(iter(result)) == b"acme"
    assert current_tenant() is None
    result.close()  # type: ignore[attr-defined]
    assert log == ["close:acme"]
    assert current_tenant() is None


def test_close_is_forwarded_for_lists_with_close() -> None:
    closed: list[str] = []

    class Body(list[bytes]):
        def close(self) -> None:
            closed.append(who())

    def app(env: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body([b"x"])

    assert wsgi_call(mw(app), environ("/", {"X-Tenant-ID": "acme"})).body == b"x"
    assert closed == ["acme"]


def test_app_raising_leaves_nothing() -> None:
    def boom(env: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError(who())

    with pytest.raises(RuntimeError, match="acme"):
        wsgi_call(mw(boom), environ("/", {"X-Tenant-ID": "acme"}))
    assert current_tenant() is None


def test_lookup_cached_unknown_failing_timeout() -> None:
    clock = ManualClock()
    calls: list[str] = []
    release = threading.Event()

    def lookup(tenant_id: str) -> Tenant | None:
        calls.append(tenant_id)
        if tenant_id == "boom":
            raise ConnectionError
        if tenant_id == "slow":
            release.wait(10)
        return None if tenant_id == "nobody" else Tenant(tenant_id, plan="x")

    app = mw(lookup=lookup, clock=clock, lookup_timeout=0.05)
    for _ in range(2):
        assert wsgi_call(app, environ("/", {"X-Tenant-ID": "acme"})).status == 200
        assert wsgi_call(app, environ("/", {"X-Tenant-ID": "nobody"})).status == 404
        assert wsgi_call(app, environ("/", {"X-Tenant-ID": "boom"})).status == 503
    assert calls == ["acme", "nobody", "boom", "boom"]
    assert wsgi_call(app, environ("/", {"X-Tenant-ID": "slow"})).status == 503
    release.set()
    clock.advance(31)
    assert wsgi_call(app, environ("/", {"X-Tenant-ID": "acme"})).status == 200
    assert calls.count("acme") == 2


def test_threads_share_one_lookup_call() -> None:
    release = threading.Event()
    calls: list[str] = []

    def lookup(tenant_id: str) -> Tenant:
        calls.append(tenant_id)
        release.wait(10)
        return Tenant(tenant_id)

    app = mw(lookup=lookup)
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(
            wsgi_call(app, environ("/", {"X-Tenant-ID": "acme"})).body))
        for _ in range(8)
    ]  # fmt: skip
    for t in threads:
        t.start()
    while not app._inflight:  # the first request started the call
        threading.Event().wait(0.001)
    flight = app._inflight["acme"]
    while len(flight._condition._waiters) < 8:  # type: ignore[attr-defined]
        threading.Event().wait(0.001)  # every request is waiting on the one call
    release.set()
    for t in threads:
        t.join(10)
    assert calls == ["acme"] and results == [b"acme||/"] * 8


def test_async_lookup_is_refused() -> None:
    async def lookup(tenant_id: str) -> Tenant:
        return Tenant(tenant_id)

    with pytest.raises(TypeError, match="synchronous"):
        TenantMiddleware(echo, lookup=lookup)


def test_a_list_response_keeps_its_length_and_a_file_wrapper_passes() -> None:
    result = mw()(environ("/", {"X-Tenant-ID": "acme"}), lambda s, h, e=None: None)
    assert len(result) == 1  # type: ignore[arg-type]
    assert list(result) == [b"acme||/"]

    class FileWrapper:
        def __init__(self, f: Any, size: int = 8192) -> None:
            self.f = f

        def __iter__(self) -> Iterator[bytes]:
            return iter([self.f.read()])

    def sends_a_file(env: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [])
        return env["wsgi.file_wrapper"](io.BytesIO(b"file"))

    env = environ("/", {"X-Tenant-ID": "acme"})
    env["wsgi.file_wrapper"] = FileWrapper
    out = mw(sends_a_file)(env, lambda s, h, e=None: None)
    assert isinstance(out, FileWrapper) and list(out) == [b"file"]
