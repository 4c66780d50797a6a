"""What both adapters share: route lookup, Twilio's public URL, error responses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from opskit._core.clientip import ClientIP, parse_ip
from opskit._core.http import Headers
from opskit.webhooks._errors import PayloadTooLarge, WebhookError
from opskit.webhooks._schemes import BearerSecret, Scheme, Twilio, VerifiedWebhook

__all__ = ["SCOPE_KEY", "Route", "UrlBuilder", "problem_fields", "verify_sync"]

#: Where the adapters put the :class:`VerifiedWebhook` (ASGI scope, WSGI environ).
SCOPE_KEY = "opskit.webhook"

Route = Scheme | BearerSecret


def check_routes(routes: Mapping[str, Route]) -> dict[str, Route]:
    out: dict[str, Route] = {}
    for path, scheme in routes.items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"route paths start with '/': {path!r}")
        if not isinstance(scheme, Scheme | BearerSecret):
            raise TypeError(f"route {path!r} maps to {type(scheme).__name__}, not a scheme")
        out[path] = scheme
    return out


class UrlBuilder:
    """The public URL a request was sent to, for Twilio.

    With ``public_url`` (``"https://api.example.com"``) it is that base plus the
    request path and query. Otherwise the request's own scheme and ``Host``;
    ``X-Forwarded-Proto`` / ``X-Forwarded-Host`` are believed only when the
    peer is one of ``trusted_proxies`` (the right-most value, which that proxy wrote).
    """

    __slots__ = ("_base", "_proxies")

    def __init__(self, public_url: str | None, trusted_proxies: Iterable[str]) -> None:
        if public_url is not None:
            parts = urlsplit(public_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("public_url must be an absolute http(s) URL")
            public_url = public_url.rstrip("/")
        self._base = public_url
        self._proxies = ClientIP(trusted_proxies)

    def build(
        self,
        *,
        scheme: str,
        host: str | None,
        peer: str | None,
        path: str,
        query: str,
        headers: Headers,
    ) -> str:
        suffix = path + ("?" + query if query else "")
        if self._base is not None:
            return self._base + suffix
        addr = parse_ip(peer) if peer else None
        if addr is not None and self._proxies.is_trusted(addr):
            proto = _last(headers.get("x-forwarded-proto"))
            fwd_host = _last(headers.get("x-forwarded-host"))
            if proto in ("http", "https"):
                scheme = proto
            if fwd_host:
                host = fwd_host
        return f"{scheme}://{host or 'localhost'}{suffix}"


def _last(value: str | None) -> str | None:
    if not value:
        return None
    last = value.split(",")[-1].strip()
    return last or None


def quoted_path(path: str) -> str:
    return quote(path, safe="/:@!$&'()*+,;=-._~%")


def problem_fields(exc: WebhookError) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
    headers: list[tuple[str, str]] = []
    if exc.status == 401 and exc.scheme == "bearer":
        headers.append(("WWW-Authenticate", "Bearer"))
    return exc.status, {"reason": exc.reason, "scheme": exc.scheme}, headers


def verify_sync(route: Route, body: bytes, headers: Headers, url: str | None) -> VerifiedWebhook:
    if isinstance(route, BearerSecret):
        route.verify(headers)
        return VerifiedWebhook(route.name, None, None, body)
    return route.verify(body, headers, url=url)


async def verify_async(
    route: Route, body: bytes, headers: Headers, url: str | None
) -> VerifiedWebhook:
    if isinstance(route, BearerSecret):
        route.verify(headers)
        return VerifiedWebhook(route.name, None, None, body)
    return await route.averify(body, headers, url=url)


def too_large(route: Route, limit: int) -> PayloadTooLarge:
    """The 413 error for ``route``, counted in its metrics like any other rejection."""
    exc = PayloadTooLarge(limit, scheme=route.name)
    counts = route._counts
    counts[exc.reason] = counts.get(exc.reason, 0) + 1
    return exc


def needs_url(route: Route) -> bool:
    return isinstance(route, Twilio)
