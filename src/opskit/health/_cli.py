"""``opskit health URL``: one probe for Docker ``HEALTHCHECK`` and exec probes.

Exit 0 when the answer is 200-399 and its health+json ``status`` (if any) is
not ``fail``; 1 on fail, a hang past ``--timeout``, or no answer; 2 on a URL
that is not http(s). Exactly one line of summary; the URL is shown without
userinfo (sent as Basic credentials), query or fragment.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from opskit.health._redact import redact_url

__all__ = ["probe"]

_FAILING = {"fail", "down", "out_of_service"}
_MAX_BODY = 1 << 20


def _request(url: str) -> urllib.request.Request:
    """The request for ``url``; its userinfo, if any, becomes Basic credentials."""
    headers = {"Accept": "application/health+json"}
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
        netloc = parts.netloc.rpartition("@")[2]
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) only


def _fetch(url: str, timeout: float, out: dict[str, Any]) -> None:
    req = _request(url)
    try:
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) only
                out["status"], out["body"] = int(resp.status), resp.read(_MAX_BODY)
        except urllib.error.HTTPError as err:
            out["status"], out["body"] = int(err.code), err.read(_MAX_BODY)
            err.close()
    except Exception as exc:
        out["error"] = type(exc).__name__
        reason = getattr(exc, "reason", None)
        if isinstance(reason, BaseException):
            out["error"] = type(reason).__name__


def probe(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """Probe ``url`` once; return the exit code and the summary line."""
    shown = redact_url(url)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https") or timeout <= 0:
        return 2, f"error: need an http(s) URL and a positive --timeout, not {shown!r}"
    out: dict[str, Any] = {}
    start = time.monotonic()
    # A daemon thread bounds the whole exchange: urlopen's timeout is per socket
    # operation, so a server that trickles bytes could hold it far longer.
    worker = threading.Thread(target=_fetch, args=(url, timeout, out), daemon=True)
    worker.start()
    worker.join(timeout)
    elapsed = (time.monotonic() - start) * 1000.0
    # The socket's own timeout may fire a moment before the join's: the same answer.
    if worker.is_alive() or out.get("error") in ("TimeoutError", "timeout"):
        return 1, f"fail timeout: no answer within {timeout:g} s from {shown}"
    if "error" in out:
        return 1, f"fail no answer ({out['error']}) from {shown}"
    code: int = out["status"]
    word = None
    try:
        doc = json.loads(out["body"])
        if isinstance(doc, dict) and isinstance(doc.get("status"), str):
            word = doc["status"]
    except ValueError:
        pass
    ok = 200 <= code < 400 and (word is None or word.lower() not in _FAILING)
    label = word or ("pass" if ok else "fail")
    return (0 if ok else 1), f"{label} HTTP {code} from {shown} in {elapsed:.0f} ms"
