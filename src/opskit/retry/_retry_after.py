from __future__ import annotations

import math
import re
from email.utils import parsedate_to_datetime
from typing import Any

from opskit._core.clock import MONOTONIC

_DIGITS = re.compile(r"\s*(\d{1,10})\s*")


def _header(obj: Any) -> str | None:
    for holder in (obj, getattr(obj, "response", None)):
        headers = getattr(holder, "headers", None)
        if headers is None:
            continue
        get = getattr(headers, "get", None)
        if get is None:
            continue
        try:
            value = get("Retry-After")
            if value is None:
                value = get("retry-after")
        except Exception:  # noqa: S112 - a headers object that raises means "no header"
            continue
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str):
            return value
    return None


def retry_after_from(obj: Any, *, now: float | None = None) -> float | None:
    """Seconds to wait that ``obj`` asks for, or None.

    Looks at, in order: a numeric ``retry_after`` attribute (opskit's own errors
    carry one); an HTTP ``Retry-After`` header on ``obj.headers`` (an httpx or
    requests response) or on ``obj.response.headers`` (``httpx.HTTPStatusError``,
    ``requests.HTTPError``), in delay-seconds or HTTP-date form. An HTTP-date is
    measured from ``now`` (Unix seconds; default: the real clock), and one in
    the past means 0. Garbage, negative or absent values give None. Never raises.
    """
    value = getattr(obj, "retry_after", None)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = float(value)
        return v if math.isfinite(v) and v >= 0 else None
    raw = _header(obj)
    if raw is None:
        return None
    m = _DIGITS.fullmatch(raw)
    if m:
        return float(m.group(1))
    try:
        when = parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None  # RFC 9110 HTTP-dates are GMT; a date without a zone is garbage
    current = MONOTONIC.time() if now is None else now
    return max(0.0, when.timestamp() - current)
