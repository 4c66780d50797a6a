"""A MAC of the raw body in one header: the generic :class:`HMACScheme` and its base."""

from __future__ import annotations

import binascii
import hmac
from collections.abc import Iterable
from typing import Any, ClassVar

from opskit.webhooks._base import Scheme, VerifiedWebhook, _KeyedScheme
from opskit.webhooks._common import (
    _OWS,
    _ascii,
    _b64encode,
    _body,
    _env_list,
    _header,
    _mac_digest,
    _new_mac,
    _required,
    _secret_bytes,
    _secret_list,
)
from opskit.webhooks._errors import MalformedHeader, SignatureMismatch

__all__ = ["HMACScheme"]


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
        value = _required(headers, header.lower(), header, name).strip(_OWS)
        if prefix:
            if not value.startswith(prefix):
                raise MalformedHeader(header, f"does not start with {prefix!r}", scheme=name)
            value = value[len(prefix) :]
        provided = _ascii(value).lower() if self._enc() == "hex" else _ascii(value)
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
