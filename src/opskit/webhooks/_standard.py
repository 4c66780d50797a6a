"""Standard Webhooks (and Svix): ``v1,<base64 HMAC-SHA256 of id.timestamp.body>``."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from opskit.webhooks._base import VerifiedWebhook, _KeyedScheme
from opskit.webhooks._common import (
    _MAX_ID_CHARS,
    _MAX_TIMESTAMP_DIGITS,
    _OWS,
    MAX_HEADER_BYTES,
    MAX_SIGNATURES,
    _any_match,
    _ascii,
    _b64encode,
    _body,
    _digest,
    _header,
    _mac_digest,
    _required,
    _secret_bytes,
    _timestamp,
)
from opskit.webhooks._errors import (
    MalformedHeader,
    MissingHeader,
    SignatureMismatch,
    TimestampOutOfTolerance,
)

__all__ = ["StandardWebhooks"]


class StandardWebhooks(_KeyedScheme):
    """Standard Webhooks / Svix: ``v1,<base64 HMAC-SHA256 of id.timestamp.body>``.

    Reads ``webhook-id``/``webhook-timestamp``/``webhook-signature``, or the
    ``svix-*`` equivalents. Secrets are ``whsec_<base64>`` (padding optional),
    bare base64, or raw ``bytes``.
    """

    kind = "standard_webhooks"
    timestamped = True
    __slots__ = ()

    def _key(self, secret: str | bytes) -> bytes:
        if isinstance(secret, bytes | bytearray):
            return _secret_bytes(secret)
        if not isinstance(secret, str):
            raise TypeError("secrets are str or bytes")
        text = secret.strip()
        if text.startswith("whsec_"):
            text = text[len("whsec_") :]
        try:
            key = base64.b64decode(text + "==", validate=False)
        except (binascii.Error, ValueError):
            raise ValueError("a Standard Webhooks secret must be base64 after 'whsec_'") from None
        if not key:
            raise ValueError("a secret may not be empty")
        return key

    def _check(self, body: bytes, headers: Any, url: str | None, now: float) -> VerifiedWebhook:
        name = self.name
        # Fast path: a plain dict with the spec's lower-case names, one secret, one
        # "v1," entry. It only ever accepts; anything else falls through.
        pad = self._pad0
        if type(headers) is dict and pad is not None:
            sig = headers.get("webhook-signature")
            msg_id = headers.get("webhook-id")
            ts_raw = headers.get("webhook-timestamp")
            if (
                type(sig) is str
                and type(msg_id) is str
                and type(ts_raw) is str
                and sig[:3] == "v1,"
                and msg_id
                and len(sig) <= MAX_HEADER_BYTES
                and len(msg_id) <= MAX_HEADER_BYTES
                and len(ts_raw) <= _MAX_TIMESTAMP_DIGITS
                and ts_raw.isdigit()
                and ts_raw.isascii()
                and " " not in sig
            ):
                h = pad[0].copy()
                h.update(msg_id.encode("utf-8", "surrogatepass") + b"." + ts_raw.encode() + b".")
                h.update(body)
                o = pad[1].copy()
                o.update(h.digest())
                if hmac.compare_digest(
                    _b64encode(o.digest(), newline=False), sig[3:].encode("utf-8", "surrogatepass")
                ):
                    ts = int(ts_raw)
                    tol = self.tolerance
                    if tol is not None and not (now - tol <= ts <= now + tol):
                        raise TimestampOutOfTolerance(ts, now, tol, scheme=name)
                    return VerifiedWebhook(name, msg_id, ts, body)
        sig, msg_id, ts_raw, prefix = self._read_headers(headers)
        ts = int(ts_raw)
        provided = self._parse_signatures(sig, prefix)
        head = _ascii(msg_id) + b"." + ts_raw.encode() + b"."
        expected = []
        for mac in self._macs:
            h = mac.copy()
            h.update(head)
            h.update(body)
            expected.append(_b64encode(h.digest(), newline=False))
        if not _any_match(expected, provided):
            raise SignatureMismatch(scheme=name)
        tol = self.tolerance
        if tol is not None and not (now - tol <= ts <= now + tol):
            raise TimestampOutOfTolerance(ts, now, tol, scheme=name)
        return VerifiedWebhook(name, msg_id, ts, body)

    def _read_headers(self, headers: Any) -> tuple[str, str, str, str]:
        name = self.name
        sig = _header(headers, "webhook-signature", "webhook-signature", name)
        prefix = "webhook"
        if sig is None:
            svix = _header(headers, "svix-signature", "svix-signature", name)
            if svix is not None:
                sig, prefix = svix, "svix"
        if not sig:
            raise MissingHeader("webhook-signature", scheme=name)
        msg_id = _required(headers, f"{prefix}-id", f"{prefix}-id", name)
        ts_raw = _required(headers, f"{prefix}-timestamp", f"{prefix}-timestamp", name)
        _timestamp(ts_raw, f"{prefix}-timestamp", name)
        return sig, msg_id, ts_raw, prefix

    def _parse_signatures(self, sig: str, prefix: str) -> list[bytes]:
        # Entries are separated by spaces (the spec); OWS around the value is dropped.
        entries = [e for e in sig.strip(_OWS).split(" ") if e]
        if len(entries) > MAX_SIGNATURES:
            raise MalformedHeader(
                f"{prefix}-signature", f"more than {MAX_SIGNATURES} signatures", scheme=self.name
            )
        provided: list[bytes] = []
        for entry in entries:
            version, comma, value = entry.partition(",")
            if comma and version == "v1":
                provided.append(_ascii(value))
        if not provided:
            raise SignatureMismatch(scheme=self.name, detail="no v1 signature")
        return provided

    def _replay_key(self, event: VerifiedWebhook) -> str:
        msg_id = event.id or ""
        if len(msg_id) > _MAX_ID_CHARS:
            msg_id = "sha256:" + _digest(_ascii(msg_id))
        return f"{self.name}:id:{msg_id}"

    def sign(
        self, msg_id: str, timestamp: float | None, body: bytes, *, all_secrets: bool = False
    ) -> dict[str, str]:
        """Headers for ``body``: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``.

        Signs with the newest secret, or with every secret (space-separated) if asked.
        """
        ts = self._now_stamp(timestamp)
        signed = _ascii(msg_id) + b"." + str(ts).encode() + b"." + _body(body)
        macs = self._macs if all_secrets else self._macs[:1]
        sigs = " ".join("v1," + base64.b64encode(_mac_digest(m, signed)).decode() for m in macs)
        return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sigs}
