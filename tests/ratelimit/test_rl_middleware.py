"""The middleware in process (ASGI and WSGI) and end to end behind uvicorn and waitress."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from _servers import run_asgi, run_wsgi
from opskit.ratelimit import ConcurrencyLimiter, by_header, by_ip
from opskit.ratelimit import asgi as rl_asgi
from opskit.ratelimit import wsgi as rl_wsgi
from opskit.ratelimit._middleware import QUOTA_EXCEEDED, Rule
from opskit.testing import ManualClock

PASSWORD = "correct horse"


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    status = 200
    if scope["path"] == "/auth/login":
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        status = 200 if body == PASSWORD.encode() else 401
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b"hello"})


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    status = "200 OK"
    if environ["PATH_INFO"] == "/auth/login":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        status = "200 OK" if body == PASSWORD.encode() else "401 Unauthorized"
    start_response(status, [("Content-Type", "text/plain")])
    return iter([b"hello"])


def rules() -> list[Rule]:
    return [
        Rule("/auth/login", methods=["POST"], rates="2/15minutes", key=by_ip, count="failures"),
        Rule("/api/*", rates="2/minute", key=by_header("X-API-Key")),
        Rule("/open/*", rates="2/minute", key=by_ip),
    ]


def asgi_stack(**kw: Any) -> Any:
    kw.setdefault("registry", CollectorRegistry())
    return rl_asgi.RateLimitMiddleware(asgi_app, rules(), exempt=["/health*"], **kw)


def wsgi_stack(**kw: Any) -> Any:
    kw.setdefault("registry", CollectorRegistry())
    return rl_wsgi.RateLimitMiddleware(wsgi_app, rules(), exempt=["/health*"], **kw)


def check_limited_api(client: httpx.Client) -> None:
    h = {"X-API-Key": "secret-key-1"}
    first = client.get("/api/items", headers=h)
    assert first.status_code == 200
    assert first.headers["RateLimit-Policy"] == '"rule1:/api/_-0";q=2;w=60'
    assert first.headers["RateLimit"] == '"rule1:/api/_-0";r=1;t=30'
    assert client.get("/api/items", headers=h).status_code == 200
    denied = client.get("/api/items", headers=h)
    assert denied.status_code == 429
    assert denied.headers["content-type"] == "application/problem+json"
    assert int(denied.headers["Retry-After"]) == 30
    doc = denied.json()
    assert doc["type"] == QUOTA_EXCEEDED and doc["status"] == 429 and doc["retry_after"] == 30
    assert "secret-key-1" not in denied.text
    assert client.get("/api/items", headers={"X-API-Key": "other"}).status_code == 200
    assert client.get("/api/items").status_code == 200  # no key: not limited by the rule
    for _ in range(5):
        assert client.get("/health/live").status_code == 200  # exempt
        assert client.get("/elsewhere").status_code == 200  # no rule


def check_login_failures(client: httpx.Client) -> None:
    for _ in range(5):  # successes are not counted
        assert client.post("/auth/login", content=PASSWORD).status_code == 200
    assert client.post("/auth/login", content="guess1").status_code == 401
    assert client.post("/auth/login", content="guess2").status_code == 401
    blocked = client.post("/auth/login", content=PASSWORD)
    assert blocked.status_code == 429  # even the right password, once 2 failures were counted
    assert int(blocked.headers["Retry-After"]) >= 400


def check_forged_forwarded_for_is_ignored(client: httpx.Client) -> None:
    codes = [client.get("/open/x", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
             for i in range(3)]  # fmt: skip
    assert codes == [200, 200, 429]  # the peer is not a trusted proxy: XFF changes nothing


async def test_asgi_in_process() -> None:
    transport = httpx.ASGITransport(app=asgi_stack())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        codes = [(await client.get("/open/x")).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        assert (await client.get("/elsewhere")).status_code == 200


async def test_asgi_headers_are_added_to_a_copy_of_the_start_message() -> None:
    # An app may send the same message objects every time (a constant start message
    # and a streamed body): the rate headers go into a copy, once per response.
    start = {"type": "http.response.start", "status": 200,
             "headers": [(b"content-type", b"text/plain")]}  # fmt: skip
    before = list(start["headers"])

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(start)
        for part in (b"he", b"llo"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    stack = rl_asgi.RateLimitMiddleware(app, [Rule("/*", rates="5/minute")], clock=ManualClock(),
                                        registry=CollectorRegistry())  # fmt: skip
    transport = httpx.ASGITransport(app=stack)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for used in (1, 2, 3):  # GCRA: each hit is 12 s of the minute's quota
            r = await client.get("/x")
            assert r.text == "hello"
            assert r.headers.get_list("RateLimit") == [f'"rule0:/_-0";r={5 - used};t={12 * used}']
            assert r.headers.get_list("RateLimit-Policy") == ['"rule0:/_-0";q=5;w=60']
    assert start["headers"] == before


@pytest.mark.parametrize(
    ("rates", "style"),
    [(["5/minute", "100/hour"], "ietf"), ("5/minute", "both"), ("5/minute", "legacy")],
)
async def test_asgi_general_header_styles_copy_the_start_message(rates: Any, style: Any) -> None:
    # Styles other than one-rate "ietf" take the general send wrapper.
    start = {"type": "http.response.start", "status": 200,
             "headers": [(b"content-type", b"text/plain")]}  # fmt: skip
    before = list(start["headers"])

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(start)
        await send({"type": "http.response.body", "body": b"hello"})

    stack = rl_asgi.RateLimitMiddleware(app, [Rule("/*", rates=rates)], clock=ManualClock(),
                                        headers=style, registry=CollectorRegistry())  # fmt: skip
    transport = httpx.ASGITransport(app=stack)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for used in (1, 2):
            r = await client.get("/x")
            assert r.text == "hello"
            assert r.headers.get_list("content-type") == ["text/plain"]
            if style == "ietf":
                assert r.headers.get_list("RateLimit") == [
                    f'"rule0:/_-0";r={5 - used};t={12 * used}'
                ]
                assert r.headers.get_list("RateLimit-Policy") == [
                    '"rule0:/_-0";q=5;w=60, "rule0:/_-1";q=100;w=3600'
                ]
            else:
                assert r.headers.get_list("X-RateLimit-Remaining") == [str(5 - used)]
                assert ("RateLimit" in r.headers) == (style == "both")
    assert start["headers"] == before


def test_header_seconds_ignore_float_noise() -> None:
    from opskit.ratelimit import Decision, Rate
    from opskit.ratelimit._middleware import Core

    core = Core([Rule("/*", rates="2/minute")], headers="both", registry=CollectorRegistry())
    rate = Rate.parse("2/minute")
    # (now + 30) - now is 30.000000000004 at some values of now: still 30 s.
    d = Decision(False, 2, 0, 30.000000000004, 30.000000000004, rate)
    hdrs, _ = core.rejection(0, d, d.retry_after)
    assert ("Retry-After", "30") in hdrs
    assert ("X-RateLimit-Reset", "30") in hdrs
    assert ("RateLimit", '"rule0:/_-0";r=0;t=30') in hdrs
    assert core.rule_routes[0].headers is not None
    raw = dict(core.rule_routes[0].headers(d))
    assert raw[b"ratelimit"] == b'"rule0:/_-0";r=0;t=30'
    d = Decision(False, 2, 0, 30.01, 30.01, rate)
    assert ("Retry-After", "31") in core.rejection(0, d, d.retry_after)[0]
    # The one-rate IETF send wrapper formats its value apart: the same seconds.
    ietf = Core([Rule("/*", rates="2/minute")], registry=CollectorRegistry()).rule_routes[0]
    assert ietf.sender is not None and ietf.headers is not None
    sent: list[Any] = []
    for reset, said in ((30.000000000004, b"30"), (30.01, b"31"), (-0.5, b"0")):
        d = Decision(True, 2, 1, reset, 0.0, rate)
        ietf.sender((sent.append, d), {"type": "http.response.start", "status": 200})
        assert sent[-1]["headers"][-1] == (b"ratelimit", b'"rule0:/_-0";r=1;t=' + said)
        assert sent[-1]["headers"] == ietf.headers(d)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([0.0, 0.5, 1.0, 1.000000000004,
                                                              2.0, 29.99, 30.0, -0.5])),
                min_size=1, max_size=30))  # fmt: skip
def test_one_rate_sender_never_reuses_a_stale_value(decisions: list[tuple[int, float]]) -> None:
    # The one-rate IETF wrapper keeps the last value it formatted: whatever the order
    # of decisions (repeats, alternations), each response says what rate_headers says.
    from opskit.ratelimit import Decision, Rate
    from opskit.ratelimit._middleware import Core

    route = Core([Rule("/*", rates="3/minute")], registry=CollectorRegistry()).rule_routes[0]
    assert route.sender is not None and route.headers is not None
    rate = Rate.parse("3/minute")
    sent: list[Any] = []
    for left, reset in decisions:
        d = Decision(True, 3, left, reset, 0.0, rate)
        route.sender((sent.append, d), {"type": "http.response.start", "status": 200})
        route.sender((sent.append, d), {"type": "http.response.body", "body": b""})
        assert sent[-2]["headers"] == route.headers(d)
        assert "headers" not in sent[-1]


def test_wsgi_in_process() -> None:
    transport = httpx.WSGITransport(app=wsgi_stack())
    with httpx.Client(transport=transport, base_url="http://t") as client:
        check_limited_api(client)
        check_login_failures(client)


@pytest.mark.parametrize("kind", ["uvicorn", "waitress"])
def test_end_to_end(kind: str) -> None:
    runner = run_asgi if kind == "uvicorn" else run_wsgi
    stack = asgi_stack if kind == "uvicorn" else wsgi_stack
    with runner(stack()) as base, httpx.Client(base_url=base, timeout=10) as client:
        check_limited_api(client)
        check_login_failures(client)
        check_forged_forwarded_for_is_ignored(client)


@pytest.mark.parametrize("kind", ["uvicorn", "waitress"])
def test_trusted_proxies_key_by_the_forwarded_client(kind: str) -> None:
    runner = run_asgi if kind == "uvicorn" else run_wsgi
    stack = asgi_stack if kind == "uvicorn" else wsgi_stack
    with (
        runner(stack(trusted_proxies=["127.0.0.1/32"])) as base,
        httpx.Client(base_url=base) as client,
    ):
        for i in range(3):
            ok = client.get("/open/x", headers={"X-Forwarded-For": f"6.6.6.6, 203.0.113.{i}"})
            assert ok.status_code == 200  # three clients behind our proxy
        same = [client.get("/open/x", headers={"X-Forwarded-For": "198.51.100.1"}).status_code
                for _ in range(3)]  # fmt: skip
        assert same == [200, 200, 429]


@pytest.mark.parametrize("style", ["legacy", "both", "none"])
def test_header_styles(style: str) -> None:
    with run_wsgi(wsgi_stack(headers=style)) as base, httpx.Client(base_url=base) as client:
        r = client.get("/open/x")
        assert ("X-RateLimit-Limit" in r.headers) == (style in ("legacy", "both"))
        assert ("RateLimit" in r.headers) == (style == "both")
        if style != "none":
            assert r.headers["X-RateLimit-Remaining"] == "1"
    with pytest.raises(ValueError, match="headers"):
        wsgi_stack(headers="x-only")


async def test_delay_mode_slows_without_blocking() -> None:
    clock = ManualClock()
    app = rl_asgi.RateLimitMiddleware(
        asgi_app, [Rule("/search", rates="2/minute", mode="delay", delay=0.5, max_delay=1.2)],
        clock=clock, registry=CollectorRegistry(),
    )  # fmt: skip
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        codes = [(await client.get("/search")).status_code for _ in range(5)]
    assert codes == [200] * 5
    assert clock.sleeps == [0.5, 1.0, 1.2]


def test_delay_mode_wsgi() -> None:
    clock = ManualClock()
    app = rl_wsgi.RateLimitMiddleware(
        wsgi_app, [Rule("/search", rates="1/minute", mode="delay", delay=0.25)], clock=clock,
        registry=CollectorRegistry(),
    )  # fmt: skip
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        assert [client.get("/search").status_code for _ in range(3)] == [200, 200, 200]
    assert clock.sleeps == [0.25, 0.5]


async def test_concurrency_rule() -> None:
    exports = ConcurrencyLimiter("exports", limit=1, registry=CollectorRegistry())
    gate = asyncio.Event()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await gate.wait()
        await asgi_app(scope, receive, send)

    app = rl_asgi.RateLimitMiddleware(slow, [Rule("/api/export", limiter=exports)],
                                      registry=CollectorRegistry())  # fmt: skip
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        first = asyncio.ensure_future(client.get("/api/export"))
        await asyncio.sleep(0.01)  # let the first request take its slot
        second = await client.get("/api/export")
        gate.set()
        assert second.status_code == 429
        assert (await first).status_code == 200
        assert (await client.get("/api/export")).status_code == 200  # released


async def test_non_http_scopes_pass_through() -> None:
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    mw = rl_asgi.RateLimitMiddleware(app, rules(), registry=CollectorRegistry())
    await mw({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await mw({"type": "websocket", "path": "/api/x"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "websocket"]


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Rule("/x")
    with pytest.raises(ValueError, match="malformed rate"):
        Rule("/x", rates="lots")
    with pytest.raises(ValueError, match="count"):
        Rule("/x", rates="1/s", count="some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="concurrency"):
        Rule("/x", limiter=ConcurrencyLimiter("c", limit=1, registry=CollectorRegistry()),
             mode="delay")  # fmt: skip


# -- IP filter ---------------------------------------------------------------------------


def test_ip_filter_asgi_and_wsgi_end_to_end() -> None:
    kw: dict[str, Any] = {"deny": ["192.0.2.0/24"], "rules": {"/admin/*": ["10.0.0.0/8"]}}
    for runner, app in (
        (run_asgi, rl_asgi.IPFilterMiddleware(asgi_app, **kw)),
        (run_wsgi, rl_wsgi.IPFilterMiddleware(wsgi_app, **kw)),
    ):
        with runner(app) as base, httpx.Client(base_url=base) as client:
            assert client.get("/public").status_code == 200
            denied = client.get("/admin/users")
            assert denied.status_code == 403
            assert denied.headers["content-type"] == "application/problem+json"
    only_ten = rl_asgi.IPFilterMiddleware(asgi_app, allow=["10.0.0.0/8"])
    with run_asgi(only_ten) as base:
        assert httpx.get(base + "/public").status_code == 403
    behind = rl_wsgi.IPFilterMiddleware(wsgi_app, deny=["192.0.2.0/24"],
                                        trusted_proxies=["127.0.0.1/32"])  # fmt: skip
    with run_wsgi(behind) as base:
        assert httpx.get(base + "/", headers={"X-Forwarded-For": "192.0.2.9"}).status_code == 403
        assert httpx.get(base + "/", headers={"X-Forwarded-For": "198.51.100.9"}).status_code == 200
    with pytest.raises(ValueError, match="CIDR"):
        rl_asgi.IPFilterMiddleware(asgi_app, allow=["10.0.0.0/99"])


def test_problem_body_is_json_and_metrics_count_delays() -> None:
    reg = CollectorRegistry()
    app = rl_wsgi.RateLimitMiddleware(wsgi_app, [Rule("/x", rates="1/minute", name="x")],
                                      registry=reg)  # fmt: skip
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        client.get("/x")
        body = client.get("/x").text
    assert json.loads(body)["status"] == 429
    assert reg.get_sample_value("opskit_ratelimit_decisions_total",
                                {"name": "x", "decision": "limited"}) == 1  # fmt: skip


def test_route_memo_keys_by_method_only_when_a_rule_names_methods() -> None:
    from opskit.ratelimit._middleware import Core

    plain = Core([Rule("/api/*", rates="5/minute")], exempt=["/api/health"],
                 registry=CollectorRegistry())  # fmt: skip
    assert plain.by_path
    for method in ("GET", "POST", "GET"):
        route = plain.route(method, "/api/x")
        assert route is not None and route.rule_index == 0
        assert plain.route(method, "/api/health") is None
    assert set(plain.routes) == {"/api/x", "/api/health"}

    named = Core([Rule("/api/*", methods=["POST"], rates="5/minute"),
                  Rule("/api/*", rates="50/minute")], registry=CollectorRegistry())  # fmt: skip
    assert not named.by_path
    for _ in range(2):  # the second time from the memo
        post, get = named.route("POST", "/api/x"), named.route("GET", "/api/x")
        assert post is not None and post.rule_index == 0
        assert get is not None and get.rule_index == 1
    assert set(named.routes) == {("POST", "/api/x"), ("GET", "/api/x")}


async def test_asgi_rules_with_methods_limit_only_those_methods() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    rules = [Rule("/x", methods=["POST"], rates="1/minute")]
    stack = rl_asgi.RateLimitMiddleware(app, rules, clock=ManualClock(),
                                        registry=CollectorRegistry())  # fmt: skip
    transport = httpx.ASGITransport(app=stack)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert [(await client.get("/x")).status_code for _ in range(3)] == [200, 200, 200]
        assert [(await client.post("/x")).status_code for _ in range(2)] == [200, 429]
        assert (await client.get("/x")).status_code == 200


LOGIN = "3/15minutes"


def check_every_429_is_limited(reg: CollectorRegistry, codes: list[int]) -> None:
    assert codes == [401, 401, 401, 429, 429]

    def count(decision: str) -> float | None:
        return reg.get_sample_value("opskit_ratelimit_decisions_total",
                                    {"name": "login", "decision": decision})  # fmt: skip

    assert count("limited") == 2  # one per 429 answered
    assert count("allowed") == 3  # the three counted failures


def login_rule() -> list[Rule]:
    return [Rule("/auth/login", rates=LOGIN, key=by_ip, count="failures", name="login")]


async def test_asgi_every_429_of_a_status_counting_rule_is_a_limited_decision() -> None:
    # count="failures" checks with a peek (which counts nothing) before the request;
    # its 429s must still reach opskit_ratelimit_decisions_total{decision="limited"}
    reg = CollectorRegistry()
    app = rl_asgi.RateLimitMiddleware(asgi_app, login_rule(), registry=reg)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:  # fmt: skip
        codes = [(await client.post("/auth/login", content="guess")).status_code
                 for _ in range(5)]  # fmt: skip
    check_every_429_is_limited(reg, codes)


def test_wsgi_every_429_of_a_status_counting_rule_is_a_limited_decision() -> None:
    reg = CollectorRegistry()
    app = rl_wsgi.RateLimitMiddleware(wsgi_app, login_rule(), registry=reg)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        codes = [client.post("/auth/login", content="guess").status_code for _ in range(5)]
    check_every_429_is_limited(reg, codes)
