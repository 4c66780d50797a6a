"""A shared secret in ``Authorization: Bearer <secret>``, for cron endpoints."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry

from opskit.webhooks._base import _register
from opskit.webhooks._common import (
    _OWS,
    _any_match,
    _ascii,
    _env_list,
    _header,
    _headers,
    _log,
    _secret_bytes,
    _secret_list,
)
from opskit.webhooks._errors import MalformedHeader, MissingHeader, SignatureMismatch, WebhookError

__all__ = ["BearerSecret"]


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
        kind, space, token = value.strip(_OWS).partition(" ")
        token = token.strip(_OWS)
        if not space or kind.lower() != "bearer" or not token:
            raise MalformedHeader(self.header, "expected 'Bearer <secret>'", scheme=self.name)
        got = hashlib.sha256(_ascii(token)).digest()
        if not _any_match(self._digests, [got]):
            raise SignatureMismatch(scheme=self.name, detail="wrong bearer secret")

    def sign(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <newest secret>"}``, for the caller's side."""
        return {self.header: "Bearer " + self._first.decode("utf-8", "surrogateescape")}

    def __repr__(self) -> str:
        return f"BearerSecret(name={self.name!r}, secrets=<{len(self._digests)}>)"
