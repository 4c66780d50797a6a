"""Slack: ``X-Slack-Signature: v0=<hex HMAC-SHA256 of v0:ts:body>``."""

from __future__ import annotations

import hmac
from typing import Any

from opskit.webhooks._base import VerifiedWebhook, _KeyedScheme
from opskit.webhooks._common import _OWS, _ascii, _body, _mac_digest, _required, _timestamp
from opskit.webhooks._errors import MalformedHeader, SignatureMismatch

__all__ = ["Slack"]


class Slack(_KeyedScheme):
    """Slack: ``X-Slack-Signature: v0=<hex HMAC-SHA256 of v0:ts:body>``.

    The timestamp is ``X-Slack-Request-Timestamp``.
    """

    kind = "slack"
    timestamped = True
    __slots__ = ()

    def _check(self, body: bytes, headers: Any, url: str | None, now: float) -> VerifiedWebhook:
        name = self.name
        sig = _required(headers, "x-slack-signature", "X-Slack-Signature", name).strip(_OWS)
        ts_raw = _required(headers, "x-slack-request-timestamp", "X-Slack-Request-Timestamp", name)
        ts = _timestamp(ts_raw, "X-Slack-Request-Timestamp", name)
        if not sig.startswith("v0="):
            raise MalformedHeader("X-Slack-Signature", "does not start with 'v0='", scheme=name)
        provided = _ascii(sig[3:]).lower()  # hex in either case: the same MAC
        head = b"v0:" + ts_raw.encode() + b":"
        ok = False
        for mac in self._macs:
            h = mac.copy()
            h.update(head)
            h.update(body)
            ok |= hmac.compare_digest(h.hexdigest().encode(), provided)
        if not ok:
            raise SignatureMismatch(scheme=name)
        self._window(ts, now)
        return VerifiedWebhook(name, None, ts, body)

    def sign(self, body: bytes, timestamp: float | None = None) -> dict[str, str]:
        ts = self._now_stamp(timestamp)
        signed = b"v0:" + str(ts).encode() + b":" + _body(body)
        return {
            "X-Slack-Signature": "v0=" + _mac_digest(self._macs[0], signed).hex(),
            "X-Slack-Request-Timestamp": str(ts),
        }
