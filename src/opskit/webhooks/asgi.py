"""Pure-ASGI webhook verification: :class:`WebhookMiddleware` and :func:`verify_request`.

The middleware reads the body once (413 before reading past ``max_body``),
verifies it, and hands the very same bytes to the app with the
:class:`~opskit.webhooks.VerifiedWebhook` in ``scope["opskit.webhook"]``.
Failures are ``application/problem+json``: 400 (missing/malformed), 401
(mismatch, stale, replay), 413, 503 (replay store down with ``on_error="deny"``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from opskit._core.asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    buffered_receive,
    read_body,
    request_headers,
    send_problem,
)
from opskit._core.http import BodyTooLarge, Headers
from opskit.webhooks._adapt import (
    SCOPE_KEY,
    Route,
    UrlBuilder,
    check_routes,
    needs_url,
    problem_fields,
    too_large,
    verify_async,
)
from opskit.webhooks._errors import PayloadTooLarge, WebhookError
from opskit.webhooks._schemes import BearerSecret, Scheme, VerifiedWebhook

__all__ = ["SCOPE_KEY", "WebhookMiddleware", "verify_request"]


class WebhookMiddleware:
    """Verify webhooks on the given paths; pass every other request through untouched.

    ``routes`` maps exact paths to schemes (``{"/webhooks/stripe": Stripe(...)}``)
    or :class:`~opskit.webhooks.BearerSecret`. ``public_url`` and
    ``trusted_proxies`` decide the URL Twilio signatures are checked against.
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[str, Route],
        *,
        max_body: int = 1_048_576,
        public_url: str | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        if max_body < 0:
            raise ValueError("max_body must be >= 0")
        self.app = app
        self.routes = check_routes(routes)
        self.max_body = max_body
        self._urls = UrlBuilder(public_url, trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self.routes.get(scope.get("path", ""))
        if route is None:
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, self.max_body)
        except BodyTooLarge:
            await _problem(send, too_large(route, self.max_body), close=True)
            return
        headers = request_headers(scope)
        try:
            url = self._url(scope, headers) if needs_url(route) else None
            event = await verify_async(route, body, headers, url)
        except WebhookError as exc:
            await _problem(send, exc)
            return
        scope = dict(scope)
        scope[SCOPE_KEY] = event
        await self.app(scope, buffered_receive(body, receive), send)

    def _url(self, scope: Scope, headers: Headers) -> str:
        raw = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else scope.get("root_path", "") + scope["path"]
        if isinstance(raw, bytes) and b"?" in raw:  # some servers keep the query in raw_path
            path = path.split("?", 1)[0]
        client = scope.get("client")
        return self._urls.build(
            scheme=scope.get("scheme", "http"),
            host=headers.get("host"),
            peer=client[0] if client else None,
            path=path,
            query=(scope.get("query_string") or b"").decode("latin-1"),
            headers=headers,
        )


async def _problem(send: Send, exc: WebhookError, *, close: bool = False) -> None:
    status, ext, headers = problem_fields(exc)
    if close:
        headers.append(("Connection", "close"))
    await send_problem(send, status, detail=str(exc), headers=headers, **ext)


async def verify_request(
    scheme: Scheme | BearerSecret,
    request: Any,
    *,
    max_body: int | None = None,
    public_url: str | None = None,
) -> VerifiedWebhook:
    """Verify a Starlette/FastAPI ``Request`` (by duck typing) and return the event.

    Reads the body once (with ``max_body``, from ``request.stream()``, stopping
    at the first chunk past the cap) and leaves it cached, so the endpoint can
    still call ``body()``, ``json()`` or ``form()``. If a :class:`WebhookMiddleware`
    already verified this request with the same scheme, its result is returned. Twilio's URL is
    ``public_url`` + path + query when given, else ``str(request.url)``.
    """
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict):
        done = scope.get(SCOPE_KEY)
        if isinstance(done, VerifiedWebhook) and done.scheme == scheme.name:
            return done
    headers = Headers.of(request.headers)
    if max_body is not None:
        declared = headers.get("content-length")
        declared = declared.strip() if declared else declared
        if declared and declared.isascii() and declared.isdigit() and int(declared) > max_body:
            raise PayloadTooLarge(max_body, scheme=scheme.name)
    stream = getattr(request, "stream", None)
    if max_body is not None and callable(stream) and not hasattr(request, "_body"):
        # Stop at the first chunk past the cap instead of buffering it all.
        chunks: list[bytes] = []
        size = 0
        async for chunk in stream():
            size += len(chunk)
            if size > max_body:
                raise PayloadTooLarge(max_body, scheme=scheme.name)
            chunks.append(chunk)
        body = b"".join(chunks)
        # Where Starlette caches the body, so body()/json()/form() still work.
        with contextlib.suppress(AttributeError):
            request._body = body
    else:
        body = await request.body()
        if max_body is not None and len(body) > max_body:
            raise PayloadTooLarge(max_body, scheme=scheme.name)
    url: str | None = None
    if needs_url(scheme):
        u = request.url
        # The path as the client sent it (percent-encoding intact), as Twilio signed it.
        raw = scope.get("raw_path") if isinstance(scope, dict) else None
        path = raw.decode("latin-1").split("?", 1)[0] if isinstance(raw, bytes) else u.path
        base = public_url.rstrip("/") if public_url is not None else f"{u.scheme}://{u.netloc}"
        url = base + path + (f"?{u.query}" if u.query else "")
    return await verify_async(scheme, body, headers, url)
