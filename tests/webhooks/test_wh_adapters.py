"""ASGI and WSGI adapters in process (httpx transports), and the verify_request helpers."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest
from flask import Flask, jsonify
from flask import request as flask_request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from opskit.testing import ManualClock
from opskit.webhooks import (
    BearerSecret,
    GitHub,
    MemoryReplayStore,
    PayloadTooLarge,
    SignatureMismatch,
    Stripe,
    Twilio,
)
from opskit.webhooks import asgi as wasgi
from opskit.webhooks import wsgi as wwsgi

T0 = 1_700_000_000
BODY = b'{"id":  "evt_1",\n "amount": 10}\xff'  # odd bytes: must arrive unchanged


def make_schemes() -> dict[str, Any]:
    clock = ManualClock(wall_start=T0)
    return {
        "/hooks/stripe": Stripe(
            secrets=["whsec_s"], clock=clock, replay_store=MemoryReplayStore(), metrics=False
        ),
        "/hooks/github": GitHub(secrets=["g"], metrics=False),
        "/hooks/sms": Twilio(auth_tokens=["tok"], metrics=False),
        "/cron/cleanup": BearerSecret(secrets=["cron"], metrics=False),
    }


async def asgi_echo(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    event = scope.get("opskit.webhook")
    doc = {
        "sha": hashlib.sha256(body).hexdigest(),
        "len": len(body),
        "scheme": event.scheme if event else None,
        "same": event.body == body if event else None,
    }
    out = json.dumps(doc).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": out})


def wsgi_echo(environ: Any, start_response: Any) -> list[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    event = environ.get("opskit.webhook")
    doc = {
        "sha": hashlib.sha256(body).hexdigest(),
        "len": len(body),
        "scheme": event.scheme if event else None,
        "same": event.body == body if event else None,
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(doc).encode()]


def clients(**kw: Any) -> list[tuple[str, httpx.AsyncClient | httpx.Client]]:
    schemes = make_schemes()
    a = wasgi.WebhookMiddleware(asgi_echo, schemes, **kw)
    w = wwsgi.WebhookMiddleware(wsgi_echo, schemes, **kw)
    return [
        ("asgi", httpx.AsyncClient(transport=httpx.ASGITransport(a), base_url="http://testserver")),
        ("wsgi", httpx.Client(transport=httpx.WSGITransport(w), base_url="http://testserver")),
    ]


async def call(client: Any, *args: Any, **kw: Any) -> httpx.Response:
    resp = client.request(*args, **kw)
    if isinstance(client, httpx.AsyncClient):
        return await resp  # type: ignore[no-any-return]
    return resp  # type: ignore[no-any-return]


async def test_verified_body_reaches_the_app_unchanged() -> None:
    signer = Stripe(secrets=["whsec_s"], clock=ManualClock(wall_start=T0), metrics=False)
    for kind, client in clients():
        headers = signer.sign(BODY + kind.encode())
        resp = await call(client, "POST", "/hooks/stripe", content=BODY + kind.encode(),
                          headers=headers)  # fmt: skip
        assert resp.status_code == 200, (kind, resp.text)
        doc = resp.json()
        assert doc == {
            "sha": hashlib.sha256(BODY + kind.encode()).hexdigest(),
            "len": len(BODY) + 4,
            "scheme": "stripe",
            "same": True,
        }
        # The replay store saw it: the same delivery again is a 401 problem.
        again = await call(client, "POST", "/hooks/stripe", content=BODY + kind.encode(),
                           headers=headers)  # fmt: skip
        assert again.status_code == 401
        assert again.headers["content-type"] == "application/problem+json"
        assert again.json()["reason"] == "replay_detected"


async def test_failures_are_problem_json_with_reasons() -> None:
    for kind, client in clients():
        missing = await call(client, "POST", "/hooks/github", content=b"x")
        assert (missing.status_code, missing.json()["reason"]) == (400, "missing_header"), kind
        bad = await call(client, "POST", "/hooks/github", content=b"x",
                         headers={"X-Hub-Signature-256": "md5=1"})  # fmt: skip
        assert (bad.status_code, bad.json()["reason"]) == (400, "malformed_header")
        wrong = await call(client, "POST", "/hooks/github", content=b"x",
                           headers={"X-Hub-Signature-256": "sha256=00"})  # fmt: skip
        body = wrong.json()
        assert (wrong.status_code, body["reason"], body["scheme"]) == (
            401, "signature_mismatch", "github")  # fmt: skip
        assert "00" not in body["detail"]
        other = await call(client, "POST", "/elsewhere", content=b"free")
        assert other.status_code == 200 and other.json()["scheme"] is None
        assert other.json()["len"] == 4


async def test_bearer_secret_route() -> None:
    for _kind, client in clients():
        ok = await call(client, "POST", "/cron/cleanup", headers={"Authorization": "Bearer cron"})
        assert ok.status_code == 200 and ok.json()["scheme"] == "bearer"
        no = await call(client, "POST", "/cron/cleanup")
        assert no.status_code == 401 and no.headers["www-authenticate"] == "Bearer"
        wrong = await call(client, "POST", "/cron/cleanup", headers={"Authorization": "Bearer x"})
        assert wrong.status_code == 401


async def test_oversized_bodies_get_413() -> None:
    signer = GitHub(secrets=["g"], metrics=False)
    for _kind, client in clients(max_body=1000):
        big = b"a" * 1001
        resp = await call(client, "POST", "/hooks/github", content=big, headers=signer.sign(big))
        assert resp.status_code == 413 and resp.json()["reason"] == "payload_too_large"
        assert resp.json()["scheme"] == "github"
        fits = b"a" * 1000
        ok = await call(client, "POST", "/hooks/github", content=fits, headers=signer.sign(fits))
        assert ok.status_code == 200


async def test_asgi_413_from_content_length_reads_nothing() -> None:
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"a" * 10, "more_body": True}

    sent: list[dict[str, Any]] = []

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    gh = GitHub(secrets=["g"], metrics=False)
    mw = wasgi.WebhookMiddleware(asgi_echo, {"/h": gh}, max_body=100)
    scope = {"type": "http", "path": "/h", "headers": [(b"content-length", b"5000")]}
    await mw(scope, receive, send)
    assert reads == 0 and sent[0]["status"] == 413
    # Without a Content-Length: stops at the first chunk past the cap.
    sent.clear()
    await mw({"type": "http", "path": "/h", "headers": []}, receive, send)
    assert reads == 11 and sent[0]["status"] == 413
    assert gh.counts == {"ok": 0, "payload_too_large": 2}


async def test_lifespan_and_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    mw = wasgi.WebhookMiddleware(app, make_schemes())
    await mw({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await mw({"type": "websocket", "path": "/hooks/github"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "websocket"]


def twilio_sig(url: str, body: bytes) -> dict[str, str]:
    return Twilio(auth_tokens=["tok"], metrics=False).sign(url, body)


async def test_twilio_url_from_public_base_url() -> None:
    body = b"From=%2B1555&Body=hi"
    headers = twilio_sig("https://public.example.com/hooks/sms?x=1", body)
    for _kind, client in clients(public_url="https://public.example.com/"):
        resp = await call(client, "POST", "/hooks/sms?x=1", content=body, headers=headers)
        assert resp.status_code == 200, resp.text
    for _kind, client in clients():  # no public URL: the request's own http://testserver
        resp = await call(client, "POST", "/hooks/sms?x=1", content=body, headers=headers)
        assert resp.status_code == 401


async def test_twilio_forwarded_headers_only_from_trusted_proxies() -> None:
    body = b"A=1"
    headers = {
        **twilio_sig("https://public.example.com/hooks/sms", body),
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example, public.example.com",
    }
    schemes = make_schemes()

    def pair(peer: str, trusted: list[str]) -> list[Any]:
        a = wasgi.WebhookMiddleware(asgi_echo, schemes, trusted_proxies=trusted)
        w = wwsgi.WebhookMiddleware(wsgi_echo, schemes, trusted_proxies=trusted)
        return [
            httpx.AsyncClient(transport=httpx.ASGITransport(a, client=(peer, 5000)),
                              base_url="http://internal:8000"),
            httpx.Client(transport=httpx.WSGITransport(w, remote_addr=peer),
                         base_url="http://internal:8000"),
        ]  # fmt: skip

    for client in pair("10.0.0.5", ["10.0.0.0/8"]):
        resp = await call(client, "POST", "/hooks/sms", content=body, headers=headers)
        assert resp.status_code == 200, resp.text
    for client in pair("203.0.113.9", ["10.0.0.0/8"]):
        resp = await call(client, "POST", "/hooks/sms", content=body, headers=headers)
        assert resp.status_code == 401


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="start with"):
        wasgi.WebhookMiddleware(asgi_echo, {"hooks": GitHub(secrets=["g"], metrics=False)})
    with pytest.raises(TypeError, match="not a scheme"):
        wwsgi.WebhookMiddleware(wsgi_echo, {"/h": object()})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="public_url"):
        wasgi.WebhookMiddleware(asgi_echo, {}, public_url="example.com")


# ------------------------------------------------------------------ verify_request


async def test_verify_request_with_starlette() -> None:
    gh = GitHub(secrets=["g"], metrics=False)

    async def endpoint(request: Request) -> JSONResponse:
        try:
            event = await wasgi.verify_request(gh, request, max_body=100)
        except SignatureMismatch as exc:
            return JSONResponse({"reason": exc.reason}, status_code=401)
        except PayloadTooLarge as exc:
            return JSONResponse({"reason": exc.reason}, status_code=413)
        again = await request.body()  # still readable after verification
        return JSONResponse({"id": event.id, "same": again == event.body,
                             "json": await request.json()})  # fmt: skip

    app = Starlette(routes=[Route("/gh", endpoint, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        body = b'{"a": 1}'
        ok = await c.post("/gh", content=body, headers=gh.sign(body, delivery="d1"))
        assert ok.json() == {"id": "d1", "same": True, "json": {"a": 1}}
        bad = await c.post("/gh", content=body, headers={"X-Hub-Signature-256": "sha256=00"})
        assert bad.status_code == 401
        big = await c.post("/gh", content=b"x" * 101, headers=gh.sign(b"x" * 101))
        assert big.status_code == 413

        async def chunks() -> Any:
            yield b"x" * 60
            yield b"x" * 60

        streamed = await c.post("/gh", content=chunks(), headers=gh.sign(b"x" * 120))
        assert streamed.status_code == 413


async def test_verify_request_twilio_with_starlette_url() -> None:
    tw = Twilio(auth_tokens=["tok"], metrics=False)

    async def endpoint(request: Request) -> JSONResponse:
        event = await wasgi.verify_request(tw, request)
        return JSONResponse({"url": event.url})

    app = Starlette(
        routes=[Route("/sms", endpoint, methods=["POST"]),
                Route("/sms x", endpoint, methods=["POST"])]
    )  # fmt: skip
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        headers = tw.sign("http://t/sms?q=1", b"A=1")
        resp = await c.post("/sms?q=1", content=b"A=1", headers={
            **headers, "content-type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert resp.json() == {"url": "http://t/sms?q=1"}
        # A percent-encoded path is checked as sent, not decoded.
        headers = tw.sign("http://t/sms%20x?q=%2F", b"A=1")
        resp = await c.post("/sms%20x?q=%2F", content=b"A=1", headers=headers)
        assert resp.json() == {"url": "http://t/sms%20x?q=%2F"}


def test_verify_request_with_flask() -> None:
    gh = GitHub(secrets=["g"], metrics=False)
    tw = Twilio(auth_tokens=["tok"], metrics=False)
    app = Flask(__name__)

    @app.post("/gh")
    def github() -> Any:
        try:
            event = wwsgi.verify_request(gh, flask_request, max_body=100)
        except SignatureMismatch as exc:
            return jsonify(reason=exc.reason), 401
        except PayloadTooLarge:
            return jsonify(reason="big"), 413
        return jsonify(id=event.id, json=flask_request.get_json(),
                       same=flask_request.get_data() == event.body)  # fmt: skip

    @app.post("/sms")
    def sms() -> Any:
        event = wwsgi.verify_request(tw, flask_request, public_url="https://pub.example")
        return jsonify(url=event.url, form=flask_request.form.to_dict(flat=False))

    client = app.test_client()
    body = b'{"a": 1}'
    ok = client.post("/gh", data=body, headers=gh.sign(body, delivery="d2"),
                     content_type="application/json")  # fmt: skip
    assert ok.json == {"id": "d2", "json": {"a": 1}, "same": True}
    assert (
        client.post("/gh", data=body, headers={"X-Hub-Signature-256": "sha256=0"}).status_code
        == 401
    )
    assert client.post("/gh", data=b"x" * 101, headers=gh.sign(b"x" * 101)).status_code == 413
    form = b"B=2&A=1&A=0"
    resp = client.post("/sms?z=9", data=form, headers=tw.sign("https://pub.example/sms?z=9", form),
                       content_type="application/x-www-form-urlencoded")  # fmt: skip
    assert resp.json == {
        "url": "https://pub.example/sms?z=9",
        "form": {"A": ["1", "0"], "B": ["2"]},
    }
