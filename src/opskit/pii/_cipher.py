"""PIICipher: AES-256-GCM under a Keyring, in Tink's AEAD wire format.

``encrypt_bytes`` gives ``0x01 || key id (4 bytes BE) || nonce (12) || ct || tag (16)``,
which Tink in any language decrypts with the same keyset and associated data.
``encrypt`` gives the same bytes as an ASCII token: :data:`TOKEN_MARKER` then
unpadded base64url, decoded strictly (only the canonical encoding is accepted).
"""

from __future__ import annotations

import binascii
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, overload

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from prometheus_client import CollectorRegistry

from opskit.pii._context import Context, aad
from opskit.pii._errors import DecryptionError, KeyNotFound, MalformedToken
from opskit.pii._fields import decrypt_fields, encrypt_fields
from opskit.pii._keyring import Keyring
from opskit.pii._legacy import LegacyReader
from opskit.pii._metrics import budget_cell, encryptions, ops_for, warn_nearing_limit

__all__ = ["TOKEN_MARKER", "PIICipher", "b64decode_strict", "b64encode", "utf8"]

#: The version marker every ``PIICipher.encrypt`` token starts with.
TOKEN_MARKER = "pii1."  # noqa: S105 - a format marker, not a secret
_MARKER_LEN = len(TOKEN_MARKER)
_VERSION = 0x01
_PREFIX = 5
_NONCE = 12
_TAG = 16
_MIN = _PREFIX + _NONCE + _TAG

_b2a = binascii.b2a_base64
_a2b = binascii.a2b_base64
_urandom = os.urandom
_from_bytes = int.from_bytes
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# The last character of an unpadded encoding leaves 4 (length % 4 == 2) or 2
# (length % 4 == 3) bits unused: canonical only when they are zero.
_LAST: tuple[frozenset[int], ...] = (
    frozenset(),
    frozenset(),
    frozenset(c for i, c in enumerate(_ALPHABET) if i & 0xF == 0),
    frozenset(c for i, c in enumerate(_ALPHABET) if i & 0x3 == 0),
)
_PAD = (b"", b"", b"==", b"=")
# "=", "+", "/" as ints: ``int in bytes`` is a memchr, while ``bytes in bytes``
# first tries the needle as an integer and builds (and drops) a TypeError. (A
# bytes.translate does the check and the mapping in one call, but costs about 10
# instructions a byte against 3 for the memchr and the two replaces.)
_EQ, _PLUS, _SLASH = 0x3D, 0x2B, 0x2F
_STD_ALPHABET = _ALPHABET[:-2] + b"+/"


def b64encode(raw: bytes) -> str:
    """Unpadded base64url."""
    return _b2a(raw, newline=False).rstrip(b"=").replace(b"+", b"-").replace(b"/", b"_").decode()


def b64decode_strict(body: str) -> bytes:
    """Unpadded base64url, canonical only, else :class:`MalformedToken`.

    Rejects padding, characters outside ``[A-Za-z0-9_-]`` (``+`` and ``/``
    included), a length no encoding has, and a last character whose unused
    low bits are not zero.
    """
    try:
        b = body.encode("ascii")
    except UnicodeEncodeError:
        raise MalformedToken() from None
    r = len(b) & 3
    if r == 1 or (r and b[-1] not in _LAST[r]) or _EQ in b or _PLUS in b or _SLASH in b:
        raise MalformedToken()
    try:
        std = b.replace(b"-", b"+").replace(b"_", b"/")
        return _a2b_std(std + _PAD[r], strict_mode=True)
    except binascii.Error:
        raise MalformedToken() from None


if sys.version_info >= (3, 11):  # a2b itself refuses characters outside the alphabet
    _a2b_std = _a2b
else:  # pragma: no cover - Python 3.10

    def _a2b_std(b: bytes, strict_mode: bool = True) -> bytes:
        if b.translate(None, _STD_ALPHABET + b"="):  # the only "=" are the padding added here
            raise binascii.Error("not base64")
        return _a2b(b)


_NOT_TEXT = "the plaintext is not UTF-8 text; use decrypt_bytes"


def utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionError(_NOT_TEXT) from None


class PIICipher:
    """Encrypts and decrypts fields under ``keyring``'s primary key, bound to a context.

    ``legacy`` lists decrypt-only readers (:class:`LegacyGCM`, :class:`LegacyFernet`)
    for tokens written before the migration. ``nonce_warn_at``: a structlog
    warning ``pii.key_nearing_limit`` once per key and process after that many
    encryptions (random 96-bit nonces must stay far below 2**32 per key).
    ``registry``: where ``opskit_pii_operations_total{op,key_id}`` is published
    (the global registry when ``None``).
    """

    __slots__ = (
        "_aeads",
        "_budget",
        "_by_prefix",
        "_dec_cells",
        "_enc_cell",
        "_last",
        "_legacy",
        "_ops",
        "_primary",
        "_warn_at",
        "keyring",
    )

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
        self._aeads = keyring._aeads
        self._ops = ops = ops_for(registry)
        self._enc_cell = ops.cell("encrypt", str(kid))
        self._dec_cells: dict[int, list[int]] = {}
        # The 5-byte prefix of a token's wire bytes -> (AEAD, decrypt counter), filled
        # on a key id's first decrypt: one slice and one lookup on the hot path.
        self._by_prefix: dict[bytes, tuple[AESGCM, list[int]]] = {}
        # The last context mapping (a copy) and its associated data: a record's
        # fields and a tenant's rows repeat one context, and comparing two small
        # dicts costs less than building the memo's key.
        self._last: tuple[object, bytes] = (None, b"")
        self._budget = budget_cell(keyring._slot(kid))

    # -- bytes (Tink wire format) ---------------------------------------------------------

    def _seal(self, data: bytes, ad: bytes) -> bytes:
        _, aead, prefix, _slot = self._primary
        nonce = _urandom(_NONCE)
        out = prefix + nonce + aead.encrypt(nonce, data, ad)
        self._note()
        return out

    def _open(self, raw: bytes, ad: bytes) -> tuple[int, bytes]:
        if len(raw) < _MIN or raw[0] != _VERSION:
            raise MalformedToken()
        kid = _from_bytes(raw[1:5], "big")
        aead = self._aeads.get(kid)
        if aead is None:
            raise KeyNotFound(kid)
        try:
            return kid, aead.decrypt(raw[5:17], raw[17:], ad)
        except InvalidTag:
            raise DecryptionError() from None

    def _note(self) -> None:
        """One encryption under the primary: the nonce budget (warn once past it)."""
        budget = self._budget
        n = budget[0] + 1
        budget[0] = n
        if n > self._warn_at:
            warn_nearing_limit(self._primary[3], n, self._warn_at)

    def _ad(self, context: object) -> bytes:
        """``aad(context)``, remembered as the last context when it is a mapping."""
        ad = aad(context)
        if isinstance(context, Mapping):
            self._last = (dict(context), ad)
        return ad

    def _count(self, op: str, key: int | str) -> None:
        self._ops.cell(op, str(key))[0] += 1

    def encrypt_bytes(self, data: bytes, context: Context = None) -> bytes:
        """``data`` encrypted in Tink's AEAD wire format (TINK prefix), for binary columns."""
        ad = context if context.__class__ is bytes else aad(context)
        _, aead, prefix, slot = self._primary
        nonce = _urandom(_NONCE)
        out = prefix + nonce + aead.encrypt(nonce, data, ad)
        # The nonce budget and the operation counter, inline (the hot path): plain
        # integers in cells, no lock, no hashing.
        budget = self._budget
        n = budget[0] + 1
        budget[0] = n
        if n > self._warn_at:
            warn_nearing_limit(slot, n, self._warn_at)
        self._enc_cell[0] += 1
        return out

    def decrypt_bytes(self, ciphertext: bytes, context: Context = None) -> bytes:
        """The plaintext of :meth:`encrypt_bytes` output (or of Tink's, same keyset)."""
        try:
            ad = context if context.__class__ is bytes else aad(context)
            if ciphertext.__class__ is not bytes:
                if not isinstance(ciphertext, (bytes, bytearray, memoryview)):
                    raise TypeError("decrypt_bytes takes bytes")
                ciphertext = bytes(ciphertext)
            kid, data = self._open(ciphertext, ad)
            cell = self._dec_cells.get(kid)
            if cell is None:
                cell = self._dec_cells[kid] = self._ops.cell("decrypt", str(kid))
            cell[0] += 1
            return data
        except (MalformedToken, KeyNotFound, DecryptionError) as exc:
            self._ops.failed(exc)  # plain integers: never changes the outcome
            raise

    # -- str tokens -----------------------------------------------------------------------

    def encrypt(self, value: str, context: Context = None) -> str:
        """``value`` as an ASCII token: the marker, then unpadded base64url of the wire bytes."""
        if value.__class__ is not str and not isinstance(value, str):
            raise TypeError("encrypt takes str; use encrypt_bytes for bytes")
        if context.__class__ is bytes:
            ad = context
        else:
            last = self._last
            try:
                ad = last[1] if context == last[0] else self._ad(context)
            except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError):
                ad = self._ad(context)  # a value whose __eq__ raised: aad names the fault
        _, aead, prefix, slot = self._primary
        nonce = _urandom(_NONCE)
        raw = prefix + nonce + aead.encrypt(nonce, value.encode(), ad)
        budget = self._budget
        n = budget[0] + 1
        budget[0] = n
        if n > self._warn_at:
            warn_nearing_limit(slot, n, self._warn_at)
        self._enc_cell[0] += 1
        return TOKEN_MARKER + (
            _b2a(raw, newline=False).rstrip(b"=").replace(b"+", b"-").replace(b"/", b"_").decode()
        )

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

    def _entry(self, raw: bytes) -> tuple[AESGCM, list[int]]:
        """The AEAD and decrypt counter of the key ``raw`` names (first use of a key id)."""
        if raw[0] != _VERSION:
            raise MalformedToken()
        kid = _from_bytes(raw[1:5], "big")
        aead = self._aeads.get(kid)
        if aead is None:
            raise KeyNotFound(kid)
        cell = self._dec_cells.get(kid)
        if cell is None:
            cell = self._dec_cells[kid] = self._ops.cell("decrypt", str(kid))
        entry = self._by_prefix[raw[:_PREFIX]] = (aead, cell)
        return entry

    def decrypt(self, token: str, context: Context = None) -> str:
        """The value of an :meth:`encrypt` token (or a legacy token: context ignored)."""
        try:
            if context.__class__ is bytes:
                ad = context
            else:
                last = self._last
                try:
                    ad = last[1] if context == last[0] else self._ad(context)
                except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError):
                    ad = self._ad(context)  # a value whose __eq__ raised: aad names the fault
            if token.__class__ is not str and not isinstance(token, str):
                raise TypeError("decrypt takes a str token; use decrypt_bytes for bytes")
            if token.startswith(TOKEN_MARKER):
                # b64decode_strict and _open, inline (the hot path).
                try:
                    b = token.encode("ascii")
                except UnicodeEncodeError:
                    raise MalformedToken() from None
                r = (len(b) - _MARKER_LEN) & 3
                if r == 1 or (r and b[-1] not in _LAST[r]) or _EQ in b or _PLUS in b or _SLASH in b:
                    raise MalformedToken()
                try:
                    std = b[_MARKER_LEN:].replace(b"-", b"+").replace(b"_", b"/")
                    raw = _a2b_std(std + _PAD[r], strict_mode=True)
                except binascii.Error:
                    raise MalformedToken() from None
                if len(raw) < _MIN:
                    raise MalformedToken()
                entry = self._by_prefix.get(raw[:_PREFIX])
                aead, cell = self._entry(raw) if entry is None else entry
                try:
                    data = aead.decrypt(raw[5:17], raw[17:], ad)
                except InvalidTag:
                    raise DecryptionError() from None
                cell[0] += 1
                try:
                    return data.decode()
                except UnicodeDecodeError:
                    raise DecryptionError(_NOT_TEXT) from None
            reader = self._reader(token)
            if reader is None:
                raise MalformedToken()
            data = reader.decrypt(token)
            self._count("decrypt", "legacy")
            return utf8(data)
        except (MalformedToken, KeyNotFound, DecryptionError) as exc:
            self._ops.failed(exc)  # plain integers: never changes the outcome
            raise

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
        try:
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
        except (MalformedToken, KeyNotFound, DecryptionError) as exc:
            self._ops.failed(exc)  # plain integers: never changes the outcome
            raise

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
