"""End to end behind real servers: uvicorn (ASGI) and waitress (WSGI), httpx as client."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from _servers import run_asgi, run_wsgi
from opskit.webhooks import GitHub, MemoryReplayStore, StandardWebhooks, Twilio
from opskit.webhooks import asgi as wasgi
from opskit.webhooks import wsgi as wwsgi
from webhooks._wh import SW_SECRET

CAP = 32 * 1024
# Bytes that break naive code: non-UTF-8, CRLF, spaces JSON re-serialisation would drop.
RAW = b'{ "id" : "evt_1",\r\n  "note": "caf\xc3\xa9 \xff\x00" }  \n'


def routes() -> dict[str, Any]:
    return {
        "/hooks/std": StandardWebhooks(
            secrets=[SW_SECRET], replay_store=MemoryReplayStore(), metrics=False
        ),
        "/hooks/gh": GitHub(secrets=["g"], metrics=False),
        "/hooks/sms": Twilio(auth_tokens=["tok"], metrics=False),
    }


class Counter:
    """Bytes the middleware pulled, and how many it had before its last read."""

    def __init__(self) -> None:
        self.bytes = 0
        self.before_last = 0

    def add(self, n: int) -> None:
        self.before_last = self.bytes
        self.bytes += n


def asgi_stack(counter: Counter) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        event = scope["opskit.webhook"]
        out = json.dumps({"sha": hashlib.sha256(body).hexdigest(), "id": event.id,
                          "scheme": event.scheme, "same": event.body == body}).encode()  # fmt: skip
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": out})

    inner = wasgi.WebhookMiddleware(
        app, routes(), max_body=CAP, public_url="https://hooks.example.com"
    )

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        async def counted() -> Any:
            msg = await receive()
            counter.add(len(msg.get("body", b"")))
            return msg

        await inner(scope, counted, send)

    return counting


class CountingInput(io.RawIOBase):
    def __init__(self, stream: Any, counter: Counter) -> None:
        self._s, self._c = stream, counter

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._s.read(n)
        self._c.add(len(data))
        return data


def wsgi_stack(counter: Counter) -> Any:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        event = environ["opskit.webhook"]
        out = json.dumps({"sha": hashlib.sha256(body).hexdigest(), "id": event.id,
                          "scheme": event.scheme, "same": event.body == body}).encode()  # fmt: skip
        start_response("200 OK", [("Content-Type", "application/json")])
        return [out]

    inner = wwsgi.WebhookMiddleware(
        app, routes(), max_body=CAP, public_url="https://hooks.example.com"
    )

    def counting(environ: Any, start_response: Any) -> Any:
        environ["wsgi.input"] = CountingInput(environ["wsgi.input"], counter)
        return inner(environ, start_response)

    return counting


@pytest.fixture(params=["uvicorn", "waitress"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, Counter]]:
    counter = Counter()
    if request.param == "uvicorn":
        with run_asgi(asgi_stack(counter)) as base:
            yield base, counter
    else:
        with run_wsgi(wsgi_stack(counter)) as base:
            yield base, counter


def test_app_sees_the_exact_raw_body(server: tuple[str, Counter]) -> None:
    base, _ = server
    signer = StandardWebhooks(secrets=[SW_SECRET], metrics=False)
    headers = signer.sign("msg_e2e", None, RAW)
    with httpx.Client(base_url=base, timeout=10) as client:
        resp = client.post("/hooks/std", content=RAW, headers=headers)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"sha": hashlib.sha256(RAW).hexdigest(), "id": "msg_e2e",
                               "scheme": "standard_webhooks", "same": True}  # fmt: skip
        replay = client.post("/hooks/std", content=RAW, headers=headers)
        assert replay.status_code == 401
        assert replay.headers["content-type"] == "application/problem+json"
        assert replay.json()["reason"] == "replay_detected"
        tampered = client.post("/hooks/std", content=RAW + b" ", headers=headers)
        assert (tampered.status_code, tampered.json()["reason"]) == (401, "signature_mismatch")
        missing = client.post("/hooks/std", content=RAW)
        assert (missing.status_code, missing.json()["reason"]) == (400, "missing_header")


def test_twilio_behind_a_public_url(server: tuple[str, Counter]) -> None:
    base, _ = server
    form = b"From=%2B15551234567&Body=hello+w%C3%B6rld&MediaUrl0=a&MediaUrl0=b"
    tw = Twilio(auth_tokens=["tok"], metrics=False)
    headers = {**tw.sign("https://hooks.example.com/hooks/sms?acct=1", form),
               "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
    with httpx.Client(base_url=base, timeout=10) as client:
        resp = client.post("/hooks/sms?acct=1", content=form, headers=headers)
        assert resp.status_code == 200, resp.text
        assert resp.json()["sha"] == hashlib.sha256(form).hexdigest()


def test_oversized_declared_body_gets_413_unread(server: tuple[str, Counter]) -> None:
    base, counter = server
    big = b"a" * (CAP * 4)
    with httpx.Client(base_url=base, timeout=10) as client:
        resp = client.post("/hooks/gh", content=big, headers=GitHub(secrets=["g"]).sign(big))
    assert resp.status_code == 413 and resp.json()["reason"] == "payload_too_large"
    assert counter.bytes == 0


def test_oversized_streamed_body_stops_at_the_cap(server: tuple[str, Counter]) -> None:
    base, counter = server
    chunk = b"b" * 4096

    total = 128 * len(chunk)  # 512 KiB, sixteen times the cap, with no Content-Length

    def stream() -> Iterator[bytes]:
        for _ in range(128):
            yield chunk

    with httpx.Client(base_url=base, timeout=10) as client:
        try:
            resp = client.post("/hooks/gh", content=stream(),
                               headers={"X-Hub-Signature-256": "sha256=00"})  # fmt: skip
        except httpx.TransportError:
            resp = None  # the server may close while the client is still sending
    if resp is not None:
        assert resp.status_code == 413
    # What the middleware read is the check: it stops at the first read that crosses
    # the cap (uvicorn may coalesce chunks into one message), so the body is never
    # read whole; waitress de-chunks and declares the length, so nothing is read.
    assert counter.before_last <= CAP
    assert counter.bytes < total
