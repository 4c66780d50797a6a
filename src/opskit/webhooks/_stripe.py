"""Stripe: ``Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256 of ts.body>``."""

from __future__ import annotations

import hmac
from typing import Any

from opskit.webhooks._base import VerifiedWebhook, _KeyedScheme
from opskit.webhooks._common import (
    _MAX_TIMESTAMP_DIGITS,
    _OWS,
    MAX_HEADER_BYTES,
    MAX_SIGNATURES,
    _any_match,
    _ascii,
    _body,
    _mac_digest,
    _required,
)
from opskit.webhooks._errors import MalformedHeader, SignatureMismatch, TimestampOutOfTolerance

__all__ = ["Stripe"]


class Stripe(_KeyedScheme):
    """Stripe: ``Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256 of ts.body>``.

    The whole ``whsec_...`` string is the key. Only ``v1`` entries count (a
    ``v0`` or unknown scheme is ignored: no downgrade). The window is two-sided.
    """

    kind = "stripe"
    timestamped = True
    __slots__ = ()

    def _check(self, body: bytes, headers: Any, url: str | None, now: float) -> VerifiedWebhook:
        name = self.name
        value = headers.get("Stripe-Signature") if type(headers) is dict else None
        pad = self._pad0
        # Fast path: one secret and exactly "t=<digits>,v1=<hex>". It only ever
        # accepts; anything else (or a mismatch) falls through to the full parse.
        if type(value) is str and pad is not None and value[:2] == "t=":
            t_part, _, sig = value.partition(",")
            ts_raw = t_part[2:]
            if (
                sig[:3] == "v1="
                and len(value) <= MAX_HEADER_BYTES
                and len(ts_raw) <= _MAX_TIMESTAMP_DIGITS
                and ts_raw.isdigit()
                and ts_raw.isascii()
            ):  # (several v1 entries fail the comparison and take the full parse)
                h = pad[0].copy()
                h.update(ts_raw.encode() + b".")
                h.update(body)
                o = pad[1].copy()
                o.update(h.digest())
                try:
                    ok = hmac.compare_digest(o.hexdigest(), sig[3:])
                except TypeError:  # a non-ASCII signature
                    ok = False
                if ok:
                    ts = int(ts_raw)
                    tol = self.tolerance
                    if tol is not None and not (now - tol <= ts <= now + tol):
                        raise TimestampOutOfTolerance(ts, now, tol, scheme=name)
                    return VerifiedWebhook(name, None, ts, body)
        if type(value) is not str or len(value) > MAX_HEADER_BYTES:
            value = _required(headers, "stripe-signature", "Stripe-Signature", name)
        value = value.strip(_OWS)
        if value.startswith("t=") and " " not in value and "\t" not in value and ",t=" not in value:
            parts = value.split(",")
            ts_raw = parts[0][2:]
            if len(parts) == 2 and parts[1][:3] == "v1=":
                provided = [parts[1][3:].encode("utf-8", "surrogatepass")]
            else:
                if len(parts) > MAX_SIGNATURES + 1:
                    raise MalformedHeader(
                        "Stripe-Signature", f"more than {MAX_SIGNATURES} signatures", scheme=name
                    )
                provided = [_ascii(p[3:]) for p in parts if p[:3] == "v1="]
        else:
            ts_raw, provided = self._parse(value)
        if not (0 < len(ts_raw) <= _MAX_TIMESTAMP_DIGITS and ts_raw.isdigit() and ts_raw.isascii()):
            raise MalformedHeader("Stripe-Signature", "t= is not a decimal integer", scheme=name)
        ts = int(ts_raw)
        if not provided:
            raise SignatureMismatch(scheme=name, detail="no v1 signature")
        head = ts_raw.encode() + b"."
        expected = []
        for mac in self._macs:
            h = mac.copy()
            h.update(head)
            h.update(body)
            expected.append(h.hexdigest().encode())
        if len(expected) == 1 and len(provided) == 1:
            ok = hmac.compare_digest(expected[0], provided[0])
        else:
            ok = _any_match(expected, provided)
        if not ok:
            raise SignatureMismatch(scheme=name)
        tol = self.tolerance
        if tol is not None and not (now - tol <= ts <= now + tol):
            raise TimestampOutOfTolerance(ts, now, tol, scheme=name)
        return VerifiedWebhook(name, None, ts, body)

    def _parse(self, value: str) -> tuple[str, list[bytes]]:
        name = self.name
        ts_raw: str | None = None
        provided: list[bytes] = []
        count = 0
        for item in value.split(","):
            # OWS may stand around each entry of the list; nothing else is stripped.
            key, _, val = item.strip(_OWS).partition("=")
            if key == "t":
                if ts_raw is not None:
                    raise MalformedHeader("Stripe-Signature", "more than one t=", scheme=name)
                ts_raw = val
                continue
            count += 1
            if count > MAX_SIGNATURES:
                raise MalformedHeader(
                    "Stripe-Signature", f"more than {MAX_SIGNATURES} signatures", scheme=name
                )
            if key == "v1":
                provided.append(_ascii(val))
        if ts_raw is None:
            raise MalformedHeader("Stripe-Signature", "no t= timestamp", scheme=name)
        return ts_raw, provided

    def sign(
        self, body: bytes, timestamp: float | None = None, *, all_secrets: bool = False
    ) -> dict[str, str]:
        """``{"Stripe-Signature": "t=...,v1=..."}`` with the newest (or every) secret."""
        ts = self._now_stamp(timestamp)
        signed = str(ts).encode() + b"." + _body(body)
        macs = self._macs if all_secrets else self._macs[:1]
        parts = [f"t={ts}"] + [f"v1={_mac_digest(m, signed).hex()}" for m in macs]
        return {"Stripe-Signature": ",".join(parts)}
