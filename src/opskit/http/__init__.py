"""Resilient outgoing HTTP: httpx transports composing timeouts, throttle, retry,
hedging, circuit breaker and tenant propagation.

::

    import httpx
    from opskit.http import AsyncResilientTransport, standard

    client = httpx.AsyncClient(transport=AsyncResilientTransport(**standard("stripe")))

Needs the ``httpx`` extra: ``pip install 'opskit[httpx]'``.
"""

from __future__ import annotations

try:
    import httpx  # noqa: F401 - checked here so the error names the extra
except ImportError as exc:  # pragma: no cover - exercised by test_http_import
    raise ImportError(
        "opskit.http needs httpx; install the extra: pip install 'opskit[httpx]'"
    ) from exc

from opskit.http._async import AsyncResilientTransport
from opskit.http._engine import RETRY_AFTER_STATUSES, RETRY_METHODS, RETRY_STATUSES
from opskit.http._errors import AttemptTimeout, HttpError, TotalTimeout
from opskit.http._hedge import Hedge
from opskit.http._standard import standard
from opskit.http._sync import ResilientTransport

__all__ = [
    "ResilientTransport",
    "AsyncResilientTransport",
    "Hedge",
    "standard",
    "TotalTimeout",
    "AttemptTimeout",
    "HttpError",
    "RETRY_STATUSES",
    "RETRY_METHODS",
    "RETRY_AFTER_STATUSES",
]
