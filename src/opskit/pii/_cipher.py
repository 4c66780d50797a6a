"""PIICipher: AES-256-GCM under a Keyring, in Tink's AEAD wire format.

``encrypt_bytes`` gives ``0x01 || key id (4 bytes BE) || nonce (12) || ct || tag (16)``,
which Tink in any language decrypts with the same keyset and associated data.
``encrypt`` gives the same bytes as an ASCII token: :data:`TOKEN_MARKER` then
unpadded base64url, decoded strictly (only the canonical encoding is accepted).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, overload

from cryptography.exceptions import InvalidTag
from prometheus_client import CollectorRegistry

from opskit.pii._context import Context, aad
from opskit.pii._errors import DecryptionError, KeyNotFound, MalformedToken
from opskit.pii._fields import decrypt_fields, encrypt_fields
from opskit.pii._keyring import Keyring
from opskit.pii._legacy import LegacyReader
from opskit.pii._metrics import encryptions, note_encryption, ops_for

__all__ = ["TOKEN_MARKER", "PIICipher", "b64decode_strict", "b64encode", "utf8"]

#: The version marker every ``PIICipher.encrypt`` token starts with.
TOKEN_MARKER = "pii1."  # noqa: S105 - a format marker, not a secret
_MARKER_LEN = len(TOKEN_MARKER)
_VERSION = 0x01
_PREFIX = 5
_NONCE = 12
_TAG = 16
_MIN = _PREFIX + _NONCE + _TAG

_urlsafe_b64encode = base64.urlsafe_b64encode
_urlsafe_b64decode = base64.urlsafe_b64decode
_urandom = os.urandom
_from_bytes = int.from_bytes


def b64encode(raw: bytes) -> str:
    """Unpadded base64url."""
    return _urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64decode_strict(body: str) -> bytes:
    """Unpadded base64url, canonical only, else :class:`MalformedToken`.

    Re-encoding and comparing rejects padding, characters outside
    ``[A-Za-z0-9_-]`` (``+`` and ``/`` included) and changed unused low bits.
    """
    try:
        raw = _urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise MalformedToken() from None
    if _urlsafe_b64encode(raw).rstrip(b"=") != body.encode("ascii"):
        raise MalformedToken()
    return raw


def utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionError("the plaintext is not UTF-8 text; use decrypt_bytes") from None


class PIICipher:
    """Encrypts and decrypts fields under ``keyring``'s primary key, bound to a context.

    ``legacy`` lists decrypt-only readers (:class:`LegacyGCM`, :class:`LegacyFernet`)
    for tokens written before the migration. ``nonce_warn_at``: a structlog
    warning ``pii.key_nearing_limit`` once per key and process after that many
    encryptions (random 96-bit nonces must stay far below 2**32 per key).
    ``registry``: where ``opskit_pii_operations_total{op,key_id}`` is published
    (the global registry when ``None``).
    """

    __slots__ = ("_counts", "_legacy", "_primary", "_warn_at", "keyring")

    def __init__(
        self,
        keyring: Keyring,
        legacy: Iterable[LegacyReader] = (),
        *,
        nonce_warn_at: int = 2**30,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if not isinstance(keyring, Keyring):
            raise TypeError("PIICipher needs a Keyring")
        if type(nonce_warn_at) is not int or nonce_warn_at < 1:
            raise ValueError("nonce_warn_at is a positive integer")
        readers = tuple(legacy)
        for reader in readers:
            if not isinstance(reader, LegacyReader):
                raise TypeError("legacy readers have matches(token) and decrypt(token)")
        self.keyring = keyring
        self._legacy = readers
        self._warn_at = nonce_warn_at
        kid = keyring.primary_id
        aead = keyring._aead(kid)
        assert aead is not None
        self._primary = (kid, aead, bytes([_VERSION]) + kid.to_bytes(4, "big"), keyring._slot(kid))
        self._counts = ops_for(registry).counts

    # -- bytes (Tink wire format) ---------------------------------------------------------

    def _seal(self, data: bytes, ad: bytes) -> bytes:
        _, aead, prefix, slot = self._primary
        nonce = _urandom(_NONCE)
        out = prefix + nonce + aead.encrypt(nonce, data, ad)
        note_encryption(slot, self._warn_at)
        return out

    def _open(self, raw: bytes, ad: bytes) -> tuple[int, bytes]:
        if len(raw) < _MIN or raw[0] != _VERSION:
            raise MalformedToken()
        kid = _from_bytes(raw[1:5], "big")
        aead = self.keyring._aead(kid)
        if aead is None:
            raise KeyNotFound(kid)
        try:
            return kid, aead.decrypt(raw[5:17], raw[17:], ad)
        except InvalidTag:
            raise DecryptionError() from None

    def _count(self, op: str, key: int | str) -> None:
        label = (op, str(key))
        counts = self._counts
        counts[label] = counts.get(label, 0) + 1

    def encrypt_bytes(self, data: bytes, context: Context = None) -> bytes:
        """``data`` encrypted in Tink's AEAD wire format (TINK prefix), for binary columns."""
        out = self._seal(data, aad(context))
        self._count("encrypt", self._primary[0])
        return out

    def decrypt_bytes(self, ciphertext: bytes, context: Context = None) -> bytes:
        """The plaintext of :meth:`encrypt_bytes` output (or of Tink's, same keyset)."""
        ad = aad(context)
        if not isinstance(ciphertext, (bytes, bytearray, memoryview)):
            raise TypeError("decrypt_bytes takes bytes")
        kid, data = self._open(bytes(ciphertext), ad)
        self._count("decrypt", kid)
        return data

    # -- str tokens -----------------------------------------------------------------------

    def encrypt(self, value: str, context: Context = None) -> str:
        """``value`` as an ASCII token: the marker, then unpadded base64url of the wire bytes."""
        if not isinstance(value, str):
            raise TypeError("encrypt takes str; use encrypt_bytes for bytes")
        out = self._seal(value.encode("utf-8"), aad(context))
        self._count("encrypt", self._primary[0])
        return TOKEN_MARKER + b64encode(out)

    def _raw(self, token: str) -> bytes:
        """The wire bytes of a current-format token (MalformedToken otherwise)."""
        if not token.startswith(TOKEN_MARKER):
            raise MalformedToken()
        return b64decode_strict(token[_MARKER_LEN:])

    def _reader(self, token: str) -> LegacyReader | None:
        for reader in self._legacy:
            if reader.matches(token):
                return reader
        return None

    def decrypt(self, token: str, context: Context = None) -> str:
        """The value of an :meth:`encrypt` token (or a legacy token: context ignored)."""
        ad = aad(context)
        if not isinstance(token, str):
            raise TypeError("decrypt takes a str token; use decrypt_bytes for bytes")
        if token.startswith(TOKEN_MARKER):
            kid, data = self._open(b64decode_strict(token[_MARKER_LEN:]), ad)
            self._count("decrypt", kid)
            return utf8(data)
        reader = self._reader(token)
        if reader is None:
            raise MalformedToken()
        data = reader.decrypt(token)
        self._count("decrypt", "legacy")
        return utf8(data)

    # -- rotation -------------------------------------------------------------------------

    def needs_rotation(self, token: str | bytes) -> bool:
        """True when ``token`` is not under the primary key (or is a legacy format).

        Reads the prefix only; never decrypts. :class:`MalformedToken` for
        anything that is not a token.
        """
        if isinstance(token, str):
            if not token.startswith(TOKEN_MARKER):
                if self._reader(token) is not None:
                    return True
                raise MalformedToken()
            raw = self._raw(token)
        elif isinstance(token, (bytes, bytearray, memoryview)):
            raw = bytes(token)
        else:
            raise TypeError("needs_rotation takes a str token or bytes")
        if len(raw) < _MIN or raw[0] != _VERSION:
            raise MalformedToken()
        return _from_bytes(raw[1:5], "big") != self._primary[0]

    @overload
    def rotate(self, token: str, context: Context = None) -> str: ...

    @overload
    def rotate(self, token: bytes, context: Context = None) -> bytes: ...

    def rotate(self, token: str | bytes, context: Context = None) -> str | bytes:
        """``token`` under the primary key, bound to ``context``.

        Always authenticates the token first (a wrong context raises
        :class:`DecryptionError` even when nothing needs re-encrypting); returns
        the same token when it is already under the primary. Legacy tokens are
        re-encrypted with ``context`` bound for the first time. ``bytes`` in,
        ``bytes`` out.
        """
        ad = aad(context)
        if isinstance(token, (bytes, bytearray, memoryview)):
            kid, data = self._open(bytes(token), ad)
            self._count("rotate", kid)
            return token if kid == self._primary[0] else self._seal(data, ad)
        if not isinstance(token, str):
            raise TypeError("rotate takes a str token or bytes")
        if token.startswith(TOKEN_MARKER):
            kid, data = self._open(b64decode_strict(token[_MARKER_LEN:]), ad)
            self._count("rotate", kid)
            if kid == self._primary[0]:
                return token
            return TOKEN_MARKER + b64encode(self._seal(data, ad))
        reader = self._reader(token)
        if reader is None:
            raise MalformedToken()
        data = reader.decrypt(token)
        self._count("rotate", "legacy")
        return TOKEN_MARKER + b64encode(self._seal(data, ad))

    # -- records --------------------------------------------------------------------------

    def encrypt_fields(
        self, record: Mapping[str, Any], fields: Sequence[str], context: Context = None
    ) -> dict[str, Any]:
        """A copy of ``record`` with ``fields`` encrypted.

        Each field is bound to ``{**context, "field": name}``, so fields swapped
        within a record fail. Missing fields are skipped, ``None`` stays
        ``None``; ``str`` values become tokens, ``bytes`` values wire bytes.
        """
        return encrypt_fields(self.encrypt, self.encrypt_bytes, record, fields, context)

    def decrypt_fields(
        self, record: Mapping[str, Any], fields: Sequence[str], context: Context = None
    ) -> dict[str, Any]:
        """The inverse of :meth:`encrypt_fields` (same ``fields`` and ``context``)."""
        return decrypt_fields(self.decrypt, self.decrypt_bytes, record, fields, context)

    def encryption_count(self, key_id: int | None = None) -> int:
        """Encryptions under ``key_id`` (default: the primary) in this process."""
        kid = self._primary[0] if key_id is None else key_id
        if kid not in self.keyring:
            return 0
        return encryptions(self.keyring._slot(kid))

    def __repr__(self) -> str:
        return f"PIICipher({self.keyring!r}, legacy={len(self._legacy)})"
