"""The verifiers: each provider's scheme over the raw bytes, with secrets rotated.

Every scheme does the same thing in the same order: read and bound its headers,
parse them (anything odd is :class:`MalformedHeader`), compute one MAC per
secret from pre-keyed HMAC objects, compare every (secret x signature)
candidate with :func:`hmac.compare_digest`, check the timestamp window, then
record the message in the replay store. Nothing on the success path logs,
locks or calls Prometheus: outcomes are plain counters read at scrape time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar
from urllib.parse import ParseResult, parse_qs, unquote_plus, urlencode, urlparse

from prometheus_client import REGISTRY, CollectorRegistry

from opskit._core.clock import Clock, resolve_clock
from opskit._core.http import Headers
from opskit._core.telemetry import Metric, Publication, get_logger, publish
from opskit.webhooks._errors import (
    MalformedBody,
    MalformedHeader,
    MissingHeader,
    ReplayDetected,
    SignatureMismatch,
    TimestampOutOfTolerance,
    WebhookError,
)
from opskit.webhooks._replay import ReplayStore

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_SIGNATURES",
    "BearerSecret",
    "GitHub",
    "HMACScheme",
    "Scheme",
    "Shopify",
    "Slack",
    "StandardWebhooks",
    "Stripe",
    "Twilio",
    "VerifiedWebhook",
]

#: At most this many characters of one header are looked at; more is malformed.
MAX_HEADER_BYTES = 8192
#: At most this many signatures in one header; more is malformed.
MAX_SIGNATURES = 16
#: How long ids are kept when there is no timestamp window (``tolerance=None``).
DEFAULT_REPLAY_WINDOW = 86400.0
_MAX_TIMESTAMP_DIGITS = 15
_MAX_ID_CHARS = 200

_log = get_logger("webhooks")

_c_hmac_new: Any
try:  # OpenSSL's HMAC object without the pure-Python wrapper: a third cheaper per copy.
    from _hashlib import hmac_new as _c_hmac_new
except ImportError:  # pragma: no cover - CPython without OpenSSL, or another runtime
    _c_hmac_new = None


def _new_mac(key: bytes, algorithm: str) -> Any:
    """A keyed HMAC object to ``.copy()`` per message (copying skips the key setup)."""
    if _c_hmac_new is not None:
        try:
            return _c_hmac_new(key, digestmod=algorithm)
        except (ValueError, TypeError):  # pragma: no cover - algorithm unknown to OpenSSL
            pass
    return hmac.new(key, digestmod=algorithm)


_TRANS_36 = bytes(x ^ 0x36 for x in range(256))
_TRANS_5C = bytes(x ^ 0x5C for x in range(256))


def _hmac_pads(key: bytes, algorithm: str) -> tuple[Any, Any]:
    """HMAC's inner and outer hash states after the padded key (RFC 2104).

    ``outer(inner.copy() + msg)`` is exactly ``hmac.new(key, msg, algorithm)``
    (a test checks it against :mod:`hmac`); copying two plain hash states is
    cheaper than copying an HMAC context, which matters on the fast paths.
    """
    block = hashlib.new(algorithm).block_size
    if len(key) > block:
        key = hashlib.new(algorithm, key).digest()
    key = key.ljust(block, b"\0")
    return (
        hashlib.new(algorithm, key.translate(_TRANS_36)),
        hashlib.new(algorithm, key.translate(_TRANS_5C)),
    )


_b64encode = binascii.b2a_base64


# --------------------------------------------------------------------------- results


class VerifiedWebhook:
    """A message that passed verification: ``scheme``, ``id``, ``timestamp``, raw ``body``.

    ``id`` and ``timestamp`` are None where the scheme has none. ``url`` is the
    URL that was verified (Twilio). The repr never shows the body.
    """

    __slots__ = ("body", "id", "scheme", "timestamp", "url")

    def __init__(
        self,
        scheme: str,
        id: str | None,
        timestamp: int | None,
        body: bytes,
        url: str | None = None,
    ) -> None:
        self.scheme = scheme
        self.id = id
        self.timestamp = timestamp
        self.body = body
        self.url = url

    def json(self) -> Any:
        """The body parsed as JSON; :class:`MalformedBody` (a ``ValueError``) if it is not."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            raise MalformedBody("not JSON", scheme=self.scheme) from None

    def form(self) -> dict[str, list[str]]:
        """The body parsed as ``application/x-www-form-urlencoded`` (Twilio, Slack commands)."""
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VerifiedWebhook):
            return NotImplemented
        return (self.scheme, self.id, self.timestamp, self.body, self.url) == (
            other.scheme,
            other.id,
            other.timestamp,
            other.body,
            other.url,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"VerifiedWebhook(scheme={self.scheme!r}, id={self.id!r}, "
            f"timestamp={self.timestamp!r}, body=<{len(self.body)} bytes>)"
        )


# --------------------------------------------------------------------------- metrics

_METRIC = "opskit_webhook_verifications_total"
_HELP = "Webhook verifications by scheme and result (ok or the failure reason)."
_published: weakref.WeakKeyDictionary[CollectorRegistry, weakref.WeakSet[Any]] = (
    weakref.WeakKeyDictionary()
)
_publications: list[Publication] = []
_metrics_lock = threading.Lock()


def _register(instance: Any, registry: CollectorRegistry | None) -> None:
    reg = REGISTRY if registry is None else registry
    with _metrics_lock:
        members = _published.get(reg)
        if members is None:
            members = weakref.WeakSet()
            _published[reg] = members
            _publications.append(publish(_source(members), reg))
        members.add(instance)


def _source(members: weakref.WeakSet[Any]) -> Any:
    def collect() -> Iterable[Metric]:
        totals: dict[tuple[str, str], int] = {}
        for inst in list(members):
            for result, n in inst.counts.items():
                key = (inst.name, result)
                totals[key] = totals.get(key, 0) + n
        for (scheme, result), n in sorted(totals.items()):
            yield Metric(_METRIC, "counter", _HELP, n, {"scheme": scheme, "result": result})

    return collect


# --------------------------------------------------------------------------- helpers


def _header(headers: Any, lname: str, tname: str, scheme: str) -> str | None:
    """One header value (bounded), from a plain dict or a :class:`Headers`."""
    if type(headers) is dict:
        value = headers.get(lname)
        if value is None:
            value = headers.get(tname)
            if value is None:
                for k, v in headers.items():
                    if isinstance(k, bytes):
                        k = k.decode("latin-1")
                    if isinstance(k, str) and k.lower() == lname:
                        value = v
                        break
    else:
        value = headers.get(lname)
    if value is None:
        return None
    if not isinstance(value, str):
        if isinstance(value, bytes | bytearray):
            value = bytes(value).decode("latin-1")
        else:
            raise MalformedHeader(tname, "not a string", scheme=scheme)
    if len(value) > MAX_HEADER_BYTES:
        raise MalformedHeader(tname, f"longer than {MAX_HEADER_BYTES} bytes", scheme=scheme)
    return value


def _headers(headers: Any) -> Any:
    return headers if type(headers) is dict or isinstance(headers, Headers) else Headers.of(headers)


def _required(headers: Any, lname: str, tname: str, scheme: str) -> str:
    value = _header(headers, lname, tname, scheme)
    if not value:
        raise MissingHeader(tname, scheme=scheme)
    return value


def _timestamp(value: str, header: str, scheme: str) -> int:
    value = value.strip()
    if not (0 < len(value) <= _MAX_TIMESTAMP_DIGITS and value.isascii() and value.isdigit()):
        raise MalformedHeader(header, "timestamp is not a decimal integer", scheme=scheme)
    return int(value)


def _ascii(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def _body(body: Any) -> bytes:
    if type(body) is bytes:
        return body
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise TypeError(
        "webhooks are verified over the raw body bytes; pass the bytes you received, "
        f"not {type(body).__name__}"
    )


def _secret_bytes(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes | bytearray):
        key = bytes(secret)
    elif isinstance(secret, str):
        key = secret.encode("utf-8")
    else:
        raise TypeError("secrets are str or bytes")
    if not key:
        raise ValueError("a secret may not be empty")
    return key


def _secret_list(secrets: Any, what: str = "secrets") -> list[Any]:
    if isinstance(secrets, str | bytes):
        secrets = [secrets]
    items = list(secrets)
    if not items:
        raise ValueError(f"{what} may not be empty: give at least one")
    return items


def _any_match(expected: Sequence[bytes], provided: Sequence[bytes]) -> bool:
    """Compare every candidate in constant time; no early exit."""
    ok = False
    for e in expected:
        for p in provided:
            ok |= hmac.compare_digest(e, p)
    return ok


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()


def _env_list(var: str) -> list[str]:
    raw = os.environ.get(var)
    if raw is None:
        raise ValueError(f"environment variable {var} is not set")
    items = [s.strip() for s in raw.split(",") if s.strip()]
    if not items:
        raise ValueError(f"environment variable {var} holds no secret")
    return items


S = TypeVar("S", bound="Scheme")


# --------------------------------------------------------------------------- base


class Scheme:
    """Common machinery: secrets, clock, tolerance, replay store, counters."""

    #: Default name, used as the ``scheme`` metric label and in replay keys.
    kind: ClassVar[str] = "scheme"
    #: Whether the scheme carries a signed timestamp.
    timestamped: ClassVar[bool] = False
    _secrets_param: ClassVar[str] = "secrets"

    __slots__ = ("__weakref__", "_clock", "_counts", "_ok", "_store", "name", "tolerance")

    def __init__(
        self,
        *,
        tolerance: float | None = 300,
        replay_store: ReplayStore | None = None,
        clock: Clock | None = None,
        name: str | None = None,
        registry: CollectorRegistry | None = None,
        metrics: bool = True,
    ) -> None:
        if tolerance is not None and not tolerance > 0:
            raise ValueError("tolerance must be > 0 seconds, or None to disable the check")
        self.tolerance = None if tolerance is None else float(tolerance)
        self._store = replay_store
        self._clock = resolve_clock(clock)
        self.name = name or self.kind
        self._ok = 0  # successes: a plain int on the hot path
        self._counts: dict[str, int] = {}  # failures by reason
        if metrics:
            _register(self, registry)

    @classmethod
    def from_env(cls: type[S], var: str, /, **kwargs: Any) -> S:
        """Build from ``os.environ[var]``, a comma-separated list of secrets (newest first)."""
        kwargs[cls._secrets_param] = _env_list(var)
        return cls(**kwargs)

    @property
    def counts(self) -> dict[str, int]:
        """Verifications so far by result (``"ok"`` or a failure reason)."""
        return {"ok": self._ok, **self._counts}

    # The engine: pure, given the time. Subclasses implement it.
    def _check(self, body: bytes, headers: Any, url: str | None, now: float) -> VerifiedWebhook:
        raise NotImplementedError

    def _replay_key(self, event: VerifiedWebhook) -> str:
        stamp = b"" if event.timestamp is None else b"%d." % event.timestamp
        return f"{self.name}:{_digest(stamp, event.body)}"

    def _ttl(self, event: VerifiedWebhook, now: float) -> float:
        if self.tolerance is None:
            return DEFAULT_REPLAY_WINDOW
        if event.timestamp is None:
            return self.tolerance
        # Until the timestamp check would reject it anyway, plus a second.
        return max(event.timestamp + self.tolerance - now, 0.0) + 1.0

    def _window(self, ts: int, now: float) -> None:
        tol = self.tolerance
        if tol is not None and not (now - tol <= ts <= now + tol):
            raise TimestampOutOfTolerance(ts, now, tol, scheme=self.name)

    def _failed(self, exc: WebhookError) -> None:
        if exc.scheme is None:
            exc.scheme = self.name
        counts = self._counts
        counts[exc.reason] = counts.get(exc.reason, 0) + 1
        _log.debug("webhooks.rejected", scheme=self.name, reason=exc.reason)

    def verify(self, body: bytes, headers: Any, *, url: str | None = None) -> VerifiedWebhook:
        """Verify ``body`` (the raw bytes received) against ``headers`` (any mapping).

        Returns the :class:`VerifiedWebhook`; raises a :class:`WebhookError` subclass.
        """
        now = self._clock.time()
        if type(body) is not bytes:
            body = _body(body)
        if type(headers) is not dict and not isinstance(headers, Headers):
            headers = Headers.of(headers)
        try:
            event = self._check(body, headers, url, now)
            if self._store is not None and not self._store.add(
                self._replay_key(event), self._ttl(event, now)
            ):
                raise ReplayDetected(scheme=self.name, id=event.id)
        except WebhookError as exc:
            self._failed(exc)
            raise
        self._ok += 1
        return event

    async def averify(
        self, body: bytes, headers: Any, *, url: str | None = None
    ) -> VerifiedWebhook:
        """:meth:`verify` for async code: the replay store is awaited (asyncio Redis)."""
        now = self._clock.time()
        try:
            event = self._check(_body(body), _headers(headers), url, now)
            store = self._store
            if store is not None and not await store.aadd(
                self._replay_key(event), self._ttl(event, now)
            ):
                raise ReplayDetected(scheme=self.name, id=event.id)
        except WebhookError as exc:
            self._failed(exc)
            raise
        self._ok += 1
        return event

    def _now_stamp(self, timestamp: float | None) -> int:
        return int(self._clock.time() if timestamp is None else timestamp)

    def _describe(self) -> str:
        return ""

    def __repr__(self) -> str:
        extra = self._describe()
        return (
            f"{type(self).__name__}(name={self.name!r}, tolerance={self.tolerance!r}"
            f"{extra}, replay_store={type(self._store).__name__ if self._store else None})"
        )


class _KeyedScheme(Scheme):
    """A scheme with one keyed HMAC object per secret, newest first."""

    digestmod: ClassVar[str] = "sha256"
    __slots__ = ("_macs", "_pad0")

    def __init__(self, secrets: Iterable[str | bytes], **kwargs: Any) -> None:
        keys = [self._key(s) for s in _secret_list(secrets)]
        self._macs = [_new_mac(k, self.digestmod) for k in keys]
        # The single-secret fast paths use precomputed HMAC pads.
        self._pad0 = _hmac_pads(keys[0], self.digestmod) if len(keys) == 1 else None
        super().__init__(**kwargs)

    def _key(self, secret: str | bytes) -> bytes:
        return _secret_bytes(secret)

    def _describe(self) -> str:
        return f", secrets=<{len(self._macs)}>"


# --------------------------------------------------------------------------- schemes


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
        ts_raw = _required(headers, f"{prefix}-timestamp", f"{prefix}-timestamp", name).strip()
        _timestamp(ts_raw, f"{prefix}-timestamp", name)
        return sig, msg_id, ts_raw, prefix

    def _parse_signatures(self, sig: str, prefix: str) -> list[bytes]:
        entries = sig.split()
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


def _mac_digest(mac: Any, data: bytes) -> bytes:
    h = mac.copy()
    h.update(data)
    return bytes(h.digest())


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
        if value.startswith("t=") and " " not in value and ",t=" not in value:
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
            key, _, val = item.partition("=")
            key = key.strip()
            if key == "t":
                if ts_raw is not None:
                    raise MalformedHeader("Stripe-Signature", "more than one t=", scheme=name)
                ts_raw = val.strip()
                continue
            count += 1
            if count > MAX_SIGNATURES:
                raise MalformedHeader(
                    "Stripe-Signature", f"more than {MAX_SIGNATURES} signatures", scheme=name
                )
            if key == "v1":
                provided.append(_ascii(val.strip()))
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


class _BodyMAC(_KeyedScheme):
    """MAC of the raw body in one header, with an optional prefix, hex or base64."""

    header: ClassVar[str] = ""
    sig_prefix: ClassVar[str] = ""
    encoding: ClassVar[str] = "hex"
    id_header: ClassVar[str | None] = None
    __slots__ = ()

    def _hdr(self) -> str:
        return self.header

    def _prefix(self) -> str:
        return self.sig_prefix

    def _enc(self) -> str:
        return self.encoding

    def _idh(self) -> str | None:
        return self.id_header

    def _encode(self, digest: bytes) -> bytes:
        if self._enc() == "hex":
            return binascii.hexlify(digest)
        return _b64encode(digest, newline=False)

    def _check(self, body: bytes, headers: Any, url: str | None, now: float) -> VerifiedWebhook:
        name, header, prefix = self.name, self._hdr(), self._prefix()
        value = _required(headers, header.lower(), header, name).strip()
        if prefix:
            if not value.startswith(prefix):
                raise MalformedHeader(header, f"does not start with {prefix!r}", scheme=name)
            value = value[len(prefix) :]
        provided = _ascii(value.lower() if self._enc() == "hex" else value)
        ok = False
        for mac in self._macs:
            h = mac.copy()
            h.update(body)
            ok |= hmac.compare_digest(self._encode(h.digest()), provided)
        if not ok:
            raise SignatureMismatch(scheme=name)
        idh = self._idh()
        msg_id = _header(headers, idh.lower(), idh, name) if idh else None
        return VerifiedWebhook(name, msg_id, None, body)

    def _sign_headers(self, body: bytes) -> dict[str, str]:
        sig = self._encode(_mac_digest(self._macs[0], _body(body))).decode()
        return {self._hdr(): self._prefix() + sig}


class GitHub(_BodyMAC):
    """GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``.

    ``id`` is ``X-GitHub-Delivery``. GitHub sends no timestamp: ``tolerance`` is
    only how long the replay store remembers a message.
    """

    kind = "github"
    header = "X-Hub-Signature-256"
    sig_prefix = "sha256="
    id_header = "X-GitHub-Delivery"
    __slots__ = ()

    def sign(self, body: bytes, *, delivery: str | None = None) -> dict[str, str]:
        headers = self._sign_headers(body)
        if delivery is not None:
            headers["X-GitHub-Delivery"] = delivery
        return headers


class Shopify(_BodyMAC):
    """Shopify: ``X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>``.

    ``id`` is ``X-Shopify-Webhook-Id``.
    """

    kind = "shopify"
    header = "X-Shopify-Hmac-Sha256"
    encoding = "base64"
    id_header = "X-Shopify-Webhook-Id"
    __slots__ = ()

    def sign(self, body: bytes, *, webhook_id: str | None = None) -> dict[str, str]:
        headers = self._sign_headers(body)
        if webhook_id is not None:
            headers["X-Shopify-Webhook-Id"] = webhook_id
        return headers


_ALGORITHMS = ("sha1", "sha256", "sha384", "sha512")


class HMACScheme(_BodyMAC):
    """Any provider that sends an HMAC of the raw body in one header.

    ``HMACScheme("razorpay", header="X-Razorpay-Signature", secrets=[...])``;
    ``algorithm`` is one of sha1/sha256/sha384/sha512, ``encoding`` ``"hex"``
    (compared case-insensitively) or ``"base64"``, ``prefix`` is stripped
    (``"sha256="``). ``id_header`` names a delivery-id header, if any.
    """

    kind = "hmac"
    __slots__ = ("_algorithm", "_encoding", "_header", "_id_header", "_sig_prefix")

    def __init__(
        self,
        name: str,
        *,
        header: str,
        secrets: Iterable[str | bytes],
        algorithm: str = "sha256",
        encoding: str = "hex",
        prefix: str = "",
        id_header: str | None = None,
        **kwargs: Any,
    ) -> None:
        if algorithm not in _ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(_ALGORITHMS)}")
        if encoding not in ("hex", "base64"):
            raise ValueError("encoding must be 'hex' or 'base64'")
        if not header:
            raise ValueError("header is required")
        self._algorithm = algorithm
        self._encoding = encoding
        self._header = header
        self._sig_prefix = prefix
        self._id_header = id_header
        keys = [_secret_bytes(s) for s in _secret_list(secrets)]
        self._macs = [_new_mac(k, algorithm) for k in keys]
        Scheme.__init__(self, name=name, **kwargs)

    @classmethod
    def from_env(cls, var: str, /, **kwargs: Any) -> HMACScheme:
        kwargs["secrets"] = _env_list(var)
        return cls(**kwargs)

    def _hdr(self) -> str:
        return self._header

    def _prefix(self) -> str:
        return self._sig_prefix

    def _enc(self) -> str:
        return self._encoding

    def _idh(self) -> str | None:
        return self._id_header

    def sign(self, body: bytes) -> dict[str, str]:
        return self._sign_headers(body)

    def _describe(self) -> str:
        return f", header={self._header!r}, algorithm={self._algorithm!r}"


class Slack(_KeyedScheme):
    """Slack: ``X-Slack-Signature: v0=<hex HMAC-SHA256 of v0:ts:body>``.

    The timestamp is ``X-Slack-Request-Timestamp``.
    """

    kind = "slack"
    timestamped = True
    __slots__ = ()

    def _check(self, body: bytes, headers: Any, url: str | None, now: float) -> VerifiedWebhook:
        name = self.name
        sig = _required(headers, "x-slack-signature", "X-Slack-Signature", name).strip()
        ts_raw = _required(
            headers, "x-slack-request-timestamp", "X-Slack-Request-Timestamp", name
        ).strip()
        ts = _timestamp(ts_raw, "X-Slack-Request-Timestamp", name)
        if not sig.startswith("v0="):
            raise MalformedHeader("X-Slack-Signature", "does not start with 'v0='", scheme=name)
        provided = _ascii(sig[3:].lower())
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


# --------------------------------------------------------------------------- Twilio

_TWILIO_ALGOS = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}


def _remove_port(uri: ParseResult) -> str:
    if not uri.port:
        return uri.geturl()
    return uri._replace(netloc=uri.netloc.split(":")[0]).geturl()


def _add_port(uri: ParseResult) -> str:
    if uri.port:
        return uri.geturl()
    port = 443 if uri.scheme == "https" else 80
    return uri._replace(netloc=f"{uri.netloc}:{port}").geturl()


def _twilio_params(pairs: Iterable[tuple[str, str]]) -> str:
    # Names sorted, each name's distinct values sorted: the order of the sorted
    # distinct (name, value) pairs, as twilio-python builds it.
    return "".join([k + v for k, v in sorted(set(pairs))])


def _parse_form(body: bytes) -> list[tuple[str, str]]:
    """``parse_qsl(body, keep_blank_values=True)``, unquoting only fields that need it."""
    pairs: list[tuple[str, str]] = []
    for field in body.decode("utf-8", "replace").split("&"):
        if not field:
            continue
        k, _, v = field.partition("=")
        if "%" in k or "+" in k:
            k = unquote_plus(k, errors="replace")
        if "%" in v or "+" in v:
            v = unquote_plus(v, errors="replace")
        pairs.append((k, v))
    return pairs


class Twilio(Scheme):
    """Twilio: ``X-Twilio-Signature``, base64 HMAC-SHA1 of URL + sorted form params.

    ``verify(body, headers, url=...)`` needs the public URL Twilio requested.
    Form bodies: each parameter name then value, names sorted, values sorted
    (as twilio-python). JSON bodies: the URL carries ``bodySHA256=<hex>``, the
    signature covers the URL alone and the body must hash to that value. The
    URL with and without its default port both verify. A request with
    ``X-Twilio-Webhooks-Signature-Settings: ...,algorithm=HMAC_SHA256`` is
    checked with HMAC-SHA256 instead.
    """

    kind = "twilio"
    _secrets_param = "auth_tokens"
    __slots__ = ("_macs",)

    def __init__(self, auth_tokens: Iterable[str | bytes], **kwargs: Any) -> None:
        keys = [_secret_bytes(t) for t in _secret_list(auth_tokens, "auth_tokens")]
        self._macs = {algo: [_new_mac(k, algo) for k in keys] for algo in ("sha1", "sha256")}
        super().__init__(**kwargs)

    def _describe(self) -> str:
        return f", auth_tokens=<{len(self._macs['sha1'])}>"

    def _check(self, body: bytes, headers: Any, url: str | None, now: float) -> VerifiedWebhook:
        name = self.name
        if url is None:
            raise TypeError("Twilio.verify needs url=: the public URL Twilio requested")
        sig = _required(headers, "x-twilio-signature", "X-Twilio-Signature", name).strip()
        settings = _header(
            headers,
            "x-twilio-webhooks-signature-settings",
            "X-Twilio-Webhooks-Signature-Settings",
            name,
        )
        algo = "sha1"
        if settings:
            for part in settings.split(","):
                key, eq, val = part.partition("=")
                if eq and key.strip() == "algorithm" and val.strip():
                    found = _TWILIO_ALGOS.get(val.strip().upper())
                    if found is None:
                        raise MalformedHeader(
                            "X-Twilio-Webhooks-Signature-Settings",
                            "unsupported algorithm",
                            scheme=name,
                        )
                    algo = found
        try:
            parsed = urlparse(url)
            candidates = dict.fromkeys((_remove_port(parsed), _add_port(parsed)))
            query = parse_qs(parsed.query, keep_blank_values=True)
        except ValueError:
            raise MalformedHeader("Host", "the request URL is not valid", scheme=name) from None
        body_hash = query.get("bodySHA256")
        ok = True
        if body_hash:
            ok = hmac.compare_digest(
                hashlib.sha256(body).hexdigest().encode(), _ascii(body_hash[0].lower())
            )
            params = ""
        else:
            pairs = _parse_form(body)
            if body.strip() and not pairs:
                ok = False  # a body that carries no parameter was not what Twilio signed
            params = _twilio_params(pairs)
        provided = _ascii(sig)
        matched = False
        for candidate in candidates:
            data = (candidate + params).encode("utf-8", "surrogatepass")
            for mac in self._macs[algo]:
                h = mac.copy()
                h.update(data)
                matched |= hmac.compare_digest(_b64encode(h.digest(), newline=False), provided)
        if not (ok and matched):
            raise SignatureMismatch(scheme=name)
        msg_id = _header(headers, "i-twilio-idempotency-token", "I-Twilio-Idempotency-Token", name)
        return VerifiedWebhook(name, msg_id, None, body, url)

    def _replay_key(self, event: VerifiedWebhook) -> str:
        try:
            canonical = _remove_port(urlparse(event.url or ""))
        except ValueError:
            canonical = event.url or ""
        return f"{self.name}:{_digest(_ascii(canonical), b' ', event.body)}"

    def sign(
        self,
        url: str,
        body: bytes | Mapping[str, str | Sequence[str]] = b"",
        *,
        algorithm: str = "HMAC_SHA1",
    ) -> dict[str, str]:
        """``{"X-Twilio-Signature": ...}`` for a request to ``url`` with a form ``body``.

        ``body`` is the form-encoded bytes or a mapping of parameters. For a JSON
        body, sign :meth:`json_url` ``(url, body)`` with no body.
        """
        algo = _TWILIO_ALGOS[algorithm.upper()]
        if isinstance(body, Mapping):
            pairs: list[tuple[str, str]] = []
            for k, v in body.items():
                pairs.extend((k, x) for x in ([v] if isinstance(v, str) else v))
        else:
            pairs = _parse_form(_body(body))
        if "bodySHA256" in parse_qs(urlparse(url).query):
            pairs = []
        data = (url + _twilio_params(pairs)).encode("utf-8", "surrogatepass")
        sig = base64.b64encode(_mac_digest(self._macs[algo][0], data)).decode()
        headers = {"X-Twilio-Signature": sig}
        if algo != "sha1":
            headers["X-Twilio-Webhooks-Signature-Settings"] = f"algorithm={algorithm.upper()}"
        return headers

    @staticmethod
    def json_url(url: str, body: bytes) -> str:
        """``url`` with ``bodySHA256=<hex sha256 of body>`` appended, as Twilio sends JSON."""
        sep = "&" if urlparse(url).query else "?"
        return url + sep + urlencode({"bodySHA256": hashlib.sha256(body).hexdigest()})


# --------------------------------------------------------------------------- bearer


class BearerSecret:
    """A shared secret in ``Authorization: Bearer <secret>``, for cron endpoints.

    Compared in constant time over SHA-256 digests (so the secret's length does
    not leak either). Several secrets allow rotation.
    """

    kind: ClassVar[str] = "bearer"
    __slots__ = ("__weakref__", "_counts", "_digests", "_first", "header", "name")

    def __init__(
        self,
        secrets: Iterable[str | bytes],
        *,
        header: str = "Authorization",
        name: str | None = None,
        registry: CollectorRegistry | None = None,
        metrics: bool = True,
    ) -> None:
        keys = [_secret_bytes(s) for s in _secret_list(secrets)]
        self._digests = [hashlib.sha256(k).digest() for k in keys]
        self._first = keys[0]
        self.header = header
        self.name = name or self.kind
        self._counts: dict[str, int] = {"ok": 0}
        if metrics:
            _register(self, registry)

    @classmethod
    def from_env(cls, var: str, /, **kwargs: Any) -> BearerSecret:
        return cls(secrets=_env_list(var), **kwargs)

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def verify(self, headers: Any) -> None:
        """Return if the header carries one of the secrets; else raise a WebhookError."""
        try:
            self._check(_headers(headers))
        except WebhookError as exc:
            exc.scheme = self.name
            self._counts[exc.reason] = self._counts.get(exc.reason, 0) + 1
            _log.debug("webhooks.rejected", scheme=self.name, reason=exc.reason)
            raise
        self._counts["ok"] += 1

    def _check(self, headers: Any) -> None:
        value = _header(headers, self.header.lower(), self.header, self.name)
        if not value:
            raise MissingHeader(self.header, scheme=self.name, status=401)
        kind, space, token = value.strip().partition(" ")
        if not space or kind.lower() != "bearer" or not token.strip():
            raise MalformedHeader(self.header, "expected 'Bearer <secret>'", scheme=self.name)
        got = hashlib.sha256(_ascii(token.strip())).digest()
        if not _any_match(self._digests, [got]):
            raise SignatureMismatch(scheme=self.name, detail="wrong bearer secret")

    def sign(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <newest secret>"}``, for the caller's side."""
        return {self.header: "Bearer " + self._first.decode("utf-8", "surrogateescape")}

    def __repr__(self) -> str:
        return f"BearerSecret(name={self.name!r}, secrets=<{len(self._digests)}>)"
