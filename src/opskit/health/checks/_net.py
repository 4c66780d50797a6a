"""Network checks: ``tcp`` (a connection opens) and ``http`` (httpx; status and body)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Container, Mapping
from typing import Any

from opskit.health._check import Check
from opskit.health._redact import redact_url
from opskit.health._status import CheckResult, Status

__all__ = ["http", "tcp"]

_BODY_CAP = 1 << 20  # a body predicate sees at most the first MiB


def tcp(host: str, port: int) -> Check:
    """A TCP connection to ``host:port`` opens (then is closed at once)."""
    if not isinstance(host, str) or not host:
        raise ValueError(f"checks.tcp() needs a host name, not {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"checks.tcp() needs a port between 1 and 65535, not {port!r}")

    async def connect() -> CheckResult:
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        with contextlib.suppress(OSError):  # the peer may be gone; the connection did open
            await writer.wait_closed()
        return CheckResult(Status.PASS)

    return Check(connect, True, component_type="component")


def _expected(expect: Container[int] | int) -> Container[int]:
    if isinstance(expect, bool):
        raise ValueError("expect must be a status code or a container of them")
    if isinstance(expect, int):
        return (expect,)
    return expect


def http(
    url: str,
    *,
    expect: Container[int] | int = range(200, 400),
    body: Callable[[str], bool] | None = None,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    client: Any = None,
    timeout: float = 5.0,
) -> Check:
    """``method url`` answers a status in ``expect`` (and ``body(text)`` is true, if given).

    Redirects are not followed (a 3xx is an answer). Without ``client`` the
    check owns a synchronous ``httpx.Client`` with ``timeout``; an
    ``httpx.AsyncClient`` makes it an async check on the caller's loop. Outputs
    name the URL as ``scheme://host[:port]/path`` only.
    """
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is in the test extra
        raise ImportError("checks.http needs httpx: pip install 'opskit[httpx]'") from None
    try:
        parsed = httpx.URL(url)
        valid = parsed.scheme in ("http", "https") and bool(parsed.host)
    except Exception:
        valid = False
    if not valid:
        raise ValueError(f"checks.http() needs an http(s) URL, not {redact_url(str(url))!r}")
    wanted = _expected(expect)
    shown = redact_url(url)
    hdrs = dict(headers or {})

    def judge(code: int, text: str | None) -> CheckResult:
        if code not in wanted:
            return CheckResult(Status.FAIL, output=f"HTTP {code} from {shown}")
        if body is not None and not body(text or ""):
            return CheckResult(Status.FAIL, output=f"unexpected body from {shown} (HTTP {code})")
        return CheckResult(Status.PASS)

    if isinstance(client, httpx.AsyncClient):
        aclient = client

        async def aget() -> CheckResult:
            async with aclient.stream(method, url, headers=hdrs) as resp:
                text = None
                if body is not None and resp.status_code in wanted:
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in resp.aiter_bytes():
                        chunks.append(chunk)
                        size += len(chunk)
                        if size >= _BODY_CAP:
                            break
                    text = b"".join(chunks)[:_BODY_CAP].decode(resp.encoding or "utf-8", "replace")
                return judge(resp.status_code, text)

        return Check(aget, True, component_type="component")

    sclient = (
        client if client is not None else httpx.Client(timeout=timeout, follow_redirects=False)
    )

    def get() -> CheckResult:
        with sclient.stream(method, url, headers=hdrs) as resp:
            text = None
            if body is not None and resp.status_code in wanted:
                chunks: list[bytes] = []
                size = 0
                for chunk in resp.iter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= _BODY_CAP:
                        break
                text = b"".join(chunks)[:_BODY_CAP].decode(resp.encoding or "utf-8", "replace")
            return judge(resp.status_code, text)

    return Check(get, False, component_type="component")
