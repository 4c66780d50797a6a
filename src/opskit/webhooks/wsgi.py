"""PEP 3333 webhook verification: :class:`WebhookMiddleware` and :func:`verify_request`.

Same behaviour as :mod:`opskit.webhooks.asgi`: the body is read once (413
before reading past ``max_body``), verified, and put back in ``wsgi.input``;
the :class:`~opskit.webhooks.VerifiedWebhook` is in ``environ["opskit.webhook"]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opskit._core.http import BodyTooLarge, Headers
from opskit._core.wsgi import (
    Environ,
    StartResponse,
    WSGIApp,
    problem_response,
    read_body,
    request_headers,
)
from opskit.webhooks._adapt import (
    SCOPE_KEY,
    Route,
    UrlBuilder,
    check_routes,
    needs_url,
    problem_fields,
    quoted_path,
    too_large,
    verify_sync,
)
from opskit.webhooks._errors import PayloadTooLarge, WebhookError
from opskit.webhooks._schemes import BearerSecret, Scheme, VerifiedWebhook

__all__ = ["SCOPE_KEY", "WebhookMiddleware", "verify_request"]


class WebhookMiddleware:
    """Verify webhooks on the given paths (``PATH_INFO``); pass the rest through."""

    def __init__(
        self,
        app: WSGIApp,
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

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        route = self.routes.get(environ.get("PATH_INFO") or "/")
        if route is None:
            return self.app(environ, start_response)
        try:
            body = read_body(environ, self.max_body)
        except BodyTooLarge:
            return _problem(start_response, too_large(route, self.max_body))
        headers = request_headers(environ)
        try:
            url = self._url(environ, headers) if needs_url(route) else None
            event = verify_sync(route, body, headers, url)
        except WebhookError as exc:
            return _problem(start_response, exc)
        environ[SCOPE_KEY] = event
        return self.app(environ, start_response)

    def _url(self, environ: Environ, headers: Headers) -> str:
        uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")
        if isinstance(uri, str) and uri.startswith("/"):
            path, _, query = uri.partition("?")
        else:
            path = quoted_path(
                (environ.get("SCRIPT_NAME") or "") + (environ.get("PATH_INFO") or "")
            )
            query = environ.get("QUERY_STRING") or ""
        host = headers.get("host") or environ.get("SERVER_NAME")
        return self._urls.build(
            scheme=environ.get("wsgi.url_scheme", "http"),
            host=host,
            peer=environ.get("REMOTE_ADDR"),
            path=path,
            query=query,
            headers=headers,
        )


def _problem(start_response: StartResponse, exc: WebhookError) -> list[bytes]:
    # No "Connection: close" here: PEP 3333 forbids hop-by-hop headers; the
    # server decides what to do with the unread rest of the body.
    status, ext, headers = problem_fields(exc)
    return problem_response(start_response, status, detail=str(exc), headers=headers, **ext)


def verify_request(
    scheme: Scheme | BearerSecret,
    request: Any,
    *,
    max_body: int | None = None,
    public_url: str | None = None,
) -> VerifiedWebhook:
    """Verify a Flask/Werkzeug ``request`` (by duck typing) and return the event.

    Reads ``request.get_data(cache=True)``, so ``request.form`` and
    ``request.get_json()`` still work afterwards. A result the middleware already
    put in ``request.environ`` for the same scheme is returned as is.
    """
    environ = getattr(request, "environ", None)
    if isinstance(environ, dict):
        done = environ.get(SCOPE_KEY)
        if isinstance(done, VerifiedWebhook) and done.scheme == scheme.name:
            return done
    headers = Headers.of(request.headers)
    if max_body is not None:
        length = getattr(request, "content_length", None)
        if isinstance(length, int) and length > max_body:
            raise PayloadTooLarge(max_body, scheme=scheme.name)
    body = request.get_data(cache=True)
    if max_body is not None and len(body) > max_body:
        raise PayloadTooLarge(max_body, scheme=scheme.name)
    url: str | None = None
    if needs_url(scheme):
        url = str(request.url)
        if public_url is not None:
            query = request.query_string.decode("latin-1") if request.query_string else ""
            url = public_url.rstrip("/") + request.path + (f"?{query}" if query else "")
    return verify_sync(scheme, body, headers, url)
