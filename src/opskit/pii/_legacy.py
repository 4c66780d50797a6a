"""Decrypt-only readers of the formats services migrate from.

``LegacyGCM`` reads the hand-rolled ``ivhex:taghex:cthex`` AES-256-GCM format
(16-byte IV, no associated data); ``LegacyFernet`` reads Fernet tokens under
any of its keys. Neither binds a context: ``PIICipher.rotate`` moves their
tokens into the current format and binds the context there.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from opskit.pii._errors import DecryptionError

__all__ = ["LegacyFernet", "LegacyGCM", "LegacyReader"]


@runtime_checkable
class LegacyReader(Protocol):
    """A decrypt-only format: ``matches`` looks at the shape only."""

    def matches(self, token: str) -> bool: ...

    def decrypt(self, token: str) -> bytes: ...


# iv:tag:ct in hex; 12- or 16-byte IVs (the hand-rolled code used 16), 16-byte tag.
_GCM_SHAPE = re.compile(
    r"([0-9a-fA-F]{24}|[0-9a-fA-F]{32}):([0-9a-fA-F]{32}):((?:[0-9a-fA-F]{2})*)\Z"
)


class LegacyGCM:
    """The hand-rolled ``ivhex:taghex:cthex`` AES-256-GCM format, no associated data.

    ``key`` is the 64-character hex string the service kept in ``ENCRYPTION_KEY``
    or the 32 raw bytes; anything else is a ``ValueError``.
    """

    __slots__ = ("_aead",)

    def __init__(self, key: str | bytes) -> None:
        if isinstance(key, str):
            if len(key) != 64 or not re.fullmatch(r"[0-9a-fA-F]{64}", key):
                raise ValueError("LegacyGCM needs a 64-character hex key or 32 bytes")
            raw = bytes.fromhex(key)
        elif isinstance(key, (bytes, bytearray)) and len(key) == 32:
            raw = bytes(key)
        else:
            raise ValueError("LegacyGCM needs a 64-character hex key or 32 bytes")
        self._aead = AESGCM(raw)

    def matches(self, token: str) -> bool:
        return _GCM_SHAPE.match(token) is not None

    def decrypt(self, token: str) -> bytes:
        m = _GCM_SHAPE.match(token)
        if m is None:
            raise DecryptionError()
        iv, tag, ct = (bytes.fromhex(g) for g in m.groups())
        try:
            return self._aead.decrypt(iv, ct + tag, None)
        except InvalidTag:
            raise DecryptionError() from None

    def __repr__(self) -> str:
        return "LegacyGCM(key=<hidden>)"


_FERNET_SHAPE = re.compile(r"gAAAAA[A-Za-z0-9_-]{70,}={0,2}\Z")


class LegacyFernet:
    """Fernet tokens (as MultiFernet writes them) under any of ``keys``, each tried.

    No TTL is enforced: these are stored values being migrated, not session tokens.
    """

    __slots__ = ("_fernets",)

    def __init__(self, keys: Iterable[str | bytes]) -> None:
        if isinstance(keys, (str, bytes)):
            keys = [keys]
        fernets = []
        for key in keys:
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError, binascii.Error):
                raise ValueError("LegacyFernet keys are url-safe base64 of 32 bytes") from None
        if not fernets:
            raise ValueError("LegacyFernet needs at least one key")
        self._fernets = tuple(fernets)

    def matches(self, token: str) -> bool:
        if _FERNET_SHAPE.match(token) is None:
            return False
        try:
            raw = base64.urlsafe_b64decode(token)
        except (binascii.Error, ValueError):
            return False
        return len(raw) >= 73 and (len(raw) - 57) % 16 == 0

    def decrypt(self, token: str) -> bytes:
        data = token.encode("ascii")
        for fernet in self._fernets:
            try:
                return fernet.decrypt(data)
            except InvalidToken:
                continue
        raise DecryptionError()

    def __repr__(self) -> str:
        return f"LegacyFernet(keys=<{len(self._fernets)} hidden>)"
