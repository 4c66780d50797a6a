"""The webhooks part of the demo: a Standard Webhooks endpoint and a cron endpoint.

``GET /webhooks`` shows a demo-only secret (generated at start) and a signed
``curl`` command for ``POST /webhooks/receive``; running it twice shows the
replay protection. ``GET /webhooks/self-test`` signs, tampers and replays a
message through the real middleware in process.
"""

from __future__ import annotations

import base64
import html
import json
import secrets
import shlex
from typing import Any

from prometheus_client import CollectorRegistry

from opskit._core.asgi import Receive, Scope, Send, request_headers, send_problem, send_response
from opskit.demo._app import Part
from opskit.webhooks import BearerSecret, MemoryReplayStore, StandardWebhooks
from opskit.webhooks.asgi import WebhookMiddleware

PREFIX = "/webhooks"
BODY = b'{"type": "invoice.paid", "data": {"amount": 1999, "currency": "eur"}}'


def demo_part(registry: CollectorRegistry | None = None) -> Part:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    cron_secret = secrets.token_urlsafe(18)
    scheme = StandardWebhooks(
        secrets=[secret], replay_store=MemoryReplayStore(), name="demo", registry=registry
    )
    bearer = BearerSecret(secrets=[cron_secret], name="demo-cron", registry=registry)

    async def receiver(scope: Scope, receive: Receive, send: Send) -> None:
        event = scope.get("opskit.webhook")
        if event is None:  # not one of the verified routes
            await send_problem(send, 404, detail=f"nothing at {scope['path']}")
            return
        try:
            payload: Any = event.json()
        except ValueError:
            payload = None
        doc = {"verified": True, "scheme": event.scheme, "id": event.id,
               "timestamp": event.timestamp, "bytes": len(event.body), "json": payload}  # fmt: skip
        await send_response(send, 200, json.dumps(doc).encode(), content_type="application/json")

    verified = WebhookMiddleware(
        receiver, {f"{PREFIX}/receive": scheme, f"{PREFIX}/cron": bearer}, max_body=64 * 1024
    )

    async def call(path: str, body: bytes, headers: dict[str, str]) -> int:
        """One in-process request through the real middleware; its status."""
        status = 0
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        scope = {"type": "http", "method": "POST", "path": path, "query_string": b"",
                 "headers": raw}  # fmt: skip
        await verified(scope, receive, send)  # type: ignore[arg-type]
        return status

    async def self_test(send: Send) -> None:
        msg_id = "msg_selftest_" + secrets.token_hex(6)
        headers = scheme.sign(msg_id, None, BODY)
        results = {
            "signed": await call(f"{PREFIX}/receive", BODY, headers),
            "tampered body": await call(f"{PREFIX}/receive", BODY + b" ", headers),
            "replayed": await call(f"{PREFIX}/receive", BODY, headers),
            "unsigned": await call(f"{PREFIX}/receive", BODY, {}),
            "cron with bearer": await call(f"{PREFIX}/cron", b"", bearer.sign()),
        }
        expected = {"signed": 200, "tampered body": 401, "replayed": 401, "unsigned": 400,
                    "cron with bearer": 200}  # fmt: skip
        ok = results == expected
        doc = {"ok": ok, "statuses": results, "expected": expected}
        await send_response(send, 200 if ok else 500, json.dumps(doc).encode(),
                            content_type="application/json")  # fmt: skip

    async def page(scope: Scope, send: Send) -> None:
        host = request_headers(scope).get("host") or "127.0.0.1:8000"
        msg_id = "msg_demo_" + secrets.token_hex(6)
        headers = scheme.sign(msg_id, None, BODY)
        args = ["curl", "-i", "-X", "POST", f"http://{host}{PREFIX}/receive"]
        for k, v in [*headers.items(), ("content-type", "application/json")]:
            args += ["-H", f"{k}: {v}"]
        args += ["--data-binary", BODY.decode()]
        curl = " ".join(shlex.quote(a) for a in args)
        cron = (
            f"curl -i -X POST http://{host}{PREFIX}/cron "
            f"-H {shlex.quote('Authorization: Bearer ' + cron_secret)}"
        )
        text = f"""<!doctype html><title>opskit webhooks demo</title>
<h1>opskit.webhooks</h1>
<p>Demo-only secret, generated when this demo started (never use it elsewhere):
<br><code>{html.escape(secret)}</code></p>
<p>A Standard Webhooks request signed just now (valid for 5 minutes; run it twice to see
the replay protection answer 401, change a byte of the body to see the signature fail):</p>
<pre>{html.escape(curl)}</pre>
<p>The cron endpoint takes a bearer secret (demo-only too):</p><pre>{html.escape(cron)}</pre>
<p><a href="{PREFIX}/self-test">{PREFIX}/self-test</a> signs, tampers and replays a
message through the middleware in process.</p>"""
        await send_response(send, 200, text.encode(), content_type="text/html; charset=utf-8")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if scope["type"] == "http" and scope.get("method") == "GET":
            if path in (PREFIX, PREFIX + "/"):
                await page(scope, send)
                return
            if path == f"{PREFIX}/self-test":
                await self_test(send)
                return
        await verified(scope, receive, send)

    return Part(
        prefix=PREFIX,
        title="webhook signatures: a signed curl command, replay protection, a cron bearer",
        app=app,
        checks=[
            ("GET", PREFIX, 200),
            ("GET", f"{PREFIX}/self-test", 200),
            ("POST", f"{PREFIX}/receive", 400),
            ("POST", f"{PREFIX}/cron", 401),
        ],
    )
