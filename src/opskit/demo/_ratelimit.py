"""The rate limiting part of the demo: an API limited per key, and a login limited per IP.

``GET /ratelimit/api`` allows 3 requests per minute per ``X-API-Key`` (or per
IP without one); the 4th gets 429 problem+json with ``Retry-After`` and the
IETF ``RateLimit-Policy`` / ``RateLimit`` headers. ``POST /ratelimit/login``
counts only failed logins (the password is ``demo``): 3 failures per 15
minutes per IP, then 429 even for the right password.
"""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry

from opskit._core.asgi import Receive, Scope, Send, read_body, send_problem, send_response
from opskit.demo._app import Part
from opskit.ratelimit import Request, by_header, by_ip
from opskit.ratelimit.asgi import RateLimitMiddleware, Rule

PREFIX = "/ratelimit"


def demo_part(registry: CollectorRegistry | None = None) -> Part:
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == PREFIX + "/api":
            await send_response(send, 200, b'{"items": []}', content_type="application/json")
        elif path == PREFIX + "/login" and scope["method"] == "POST":
            body = await read_body(scope, receive, max_bytes=1024)
            if body == b"demo":
                await send_response(send, 200, b'{"logged_in": true}',
                                    content_type="application/json")  # fmt: skip
            else:
                await send_problem(send, 401, detail="wrong password")
        elif path in (PREFIX, PREFIX + "/"):
            doc = {
                "api": f"GET {PREFIX}/api: 3/minute per X-API-Key (or per IP)",
                "login": f"POST {PREFIX}/login (password: demo): 3 failures/15 minutes per IP",
            }
            await send_response(send, 200, json.dumps(doc).encode(),
                                content_type="application/json")  # fmt: skip
        else:
            await send_problem(send, 404, detail=f"nothing at {path}")

    header_key = by_header("X-API-Key")

    def api_key(request: Request) -> str | None:
        return header_key(request) or by_ip(request)

    app = RateLimitMiddleware(
        inner,
        [
            Rule(f"{PREFIX}/login", methods=["POST"], rates="3/15minutes", key=by_ip,
                 count="failures", name="demo-login"),
            Rule(f"{PREFIX}/api", rates="3/minute", key=api_key, name="demo-api"),
        ],
        registry=registry,
    )  # fmt: skip
    return Part(
        PREFIX,
        "ratelimit: an API at 3/minute per key and a login counting failures (GCRA, IETF headers)",
        app,
        [
            ("GET", PREFIX, 200),
            ("GET", f"{PREFIX}/api", 200),
            ("GET", f"{PREFIX}/api", 200),
            ("GET", f"{PREFIX}/api", 200),
            ("GET", f"{PREFIX}/api", 429),
            ("POST", f"{PREFIX}/login", 401),
        ],
    )
