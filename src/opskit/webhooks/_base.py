"""The base of every scheme: :class:`Scheme`, the verified message, and the metrics.

Every scheme does the same thing in the same order: read and bound its headers,
parse them (anything odd is :class:`MalformedHeader`), compute one MAC per
secret from pre-keyed HMAC objects, compare every (secret x signature)
candidate with :func:`hmac.compare_digest`, check the timestamp window, then
record the message in the replay store. Nothing on the success path logs,
locks or calls Prometheus: outcomes are plain counters read at scrape time.
Each provider's rules live in their own module (``_stripe.py``, ``_twilio.py``, ...).
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qs

from prometheus_client import REGISTRY, CollectorRegistry

from opskit._core.clock import Clock, resolve_clock
from opskit._core.http import Headers
from opskit._core.telemetry import Metric, Publication, publish
from opskit.webhooks._common import (
    DEFAULT_REPLAY_WINDOW,
    _body,
    _digest,
    _env_list,
    _headers,
    _hmac_pads,
    _log,
    _new_mac,
    _secret_bytes,
    _secret_list,
)
from opskit.webhooks._errors import (
    MalformedBody,
    ReplayDetected,
    TimestampOutOfTolerance,
    WebhookError,
)
from opskit.webhooks._replay import ReplayStore

__all__ = ["Scheme", "VerifiedWebhook"]


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
