from __future__ import annotations

import httpx

from opskit import OpskitError

__all__ = ["AttemptTimeout", "HttpError", "TotalTimeout"]


class HttpError(OpskitError):
    """Base of the errors ``opskit.http`` raises itself."""


class TotalTimeout(httpx.TimeoutException, HttpError):
    """The whole call (limiter wait, every attempt and wait) ran past ``total_timeout``.

    ``timeout`` is the configured total in seconds. The message names the
    client and the host, never the URL's path or query.
    """

    def __init__(self, client: str, host: str, timeout: float, *, request: httpx.Request) -> None:
        super().__init__(
            f"opskit.http client {client!r}: call to {host} exceeded its total timeout "
            f"of {timeout:g}s",
            request=request,
        )
        self.client = client
        self.host = host
        self.timeout = timeout


class AttemptTimeout(httpx.TimeoutException, HttpError):
    """One attempt got no response headers within ``attempt_timeout``.

    Retried whatever the retry policy's ``on`` says (for requests that may be
    retried), and counted as a breaker failure.
    """

    def __init__(self, client: str, host: str, timeout: float, *, request: httpx.Request) -> None:
        super().__init__(
            f"opskit.http client {client!r}: attempt to {host} got no response within {timeout:g}s",
            request=request,
        )
        self.client = client
        self.host = host
        self.timeout = timeout
