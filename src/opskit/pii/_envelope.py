"""EnvelopeCipher: a data key (DEK) per message, wrapped by a KEK, in Tink's
``KmsEnvelopeAead`` format.

``len(wrapped DEK) (4 bytes BE) || wrapped DEK || nonce (12) || ct || tag (16)``;
the DEK is the serialized ``AesGcmKey`` proto, wrapped with empty associated
data; the caller's context is the associated data of the DEK ciphertext only.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from prometheus_client import CollectorRegistry

from opskit._core.clock import Clock, resolve_clock
from opskit.pii._cipher import b64decode_strict, b64encode, utf8
from opskit.pii._context import Context, aad
from opskit.pii._errors import (
    DecryptionError,
    KeyNotFound,
    KeyWrapError,
    MalformedToken,
    PIIError,
)
from opskit.pii._fields import decrypt_fields, encrypt_fields
from opskit.pii._kek import KeyWrapper
from opskit.pii._keyring import KEY_SIZE, parse_aes_gcm_key, serialize_aes_gcm_key
from opskit.pii._metrics import ops_for

__all__ = ["ENVELOPE_MARKER", "EnvelopeCipher"]

#: The version marker every ``EnvelopeCipher.encrypt`` token starts with.
ENVELOPE_MARKER = "piienv1."
_MARKER_LEN = len(ENVELOPE_MARKER)
MAX_WRAPPED = 4096  # as Tink's KmsEnvelopeAead
_NONCE = 12
_MIN_PAYLOAD = _NONCE + 16
_urandom = os.urandom


class _Dek:
    __slots__ = ("aead", "created", "header", "uses")

    def __init__(self, aead: AESGCM, header: bytes, created: float) -> None:
        self.aead = aead
        self.header = header
        self.created = created
        self.uses = 0


class EnvelopeCipher:
    """Envelope encryption: a fresh DEK per message (or per ``dek_reuse`` window).

    ``kek`` is any :class:`KeyWrapper` (:class:`LocalKEK`, :class:`AwsKmsKEK`).
    ``dek_reuse=(max_uses, max_age_seconds)`` lets one DEK encrypt at most
    ``max_uses`` messages, none after ``max_age_seconds`` (the AWS Encryption
    SDK's caching manager); ``None`` wraps a new DEK per message. ``dek_cache``
    bounds the LRU of unwrapped DEKs (one KMS Decrypt per distinct DEK; 0 turns
    it off). Every KMS failure is a :class:`KeyWrapError`; no token is written
    without its wrapped key.
    """

    __slots__ = (
        "_cache",
        "_cache_size",
        "_clock",
        "_current",
        "_kms",
        "_lock",
        "_ops",
        "_reuse",
        "kek",
    )

    def __init__(
        self,
        kek: KeyWrapper,
        dek_reuse: tuple[int, float] | None = None,
        *,
        dek_cache: int = 1000,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if not isinstance(kek, KeyWrapper):
            raise TypeError("kek needs wrap(dek) and unwrap(wrapped)")
        if dek_reuse is not None:
            uses, age = dek_reuse
            if type(uses) is not int or not 1 <= uses <= 2**32:
                raise ValueError("dek_reuse max_uses is an integer from 1 to 2**32")
            if not isinstance(age, (int, float)) or not age > 0:
                raise ValueError("dek_reuse max_age_seconds is a positive number")
            dek_reuse = (uses, float(age))
        if type(dek_cache) is not int or dek_cache < 0:
            raise ValueError("dek_cache is a size >= 0")
        self.kek = kek
        self._reuse = dek_reuse
        self._cache_size = dek_cache
        self._cache: OrderedDict[bytes, AESGCM] = OrderedDict()
        self._clock = resolve_clock(clock)
        self._current: _Dek | None = None
        self._lock = threading.Lock()
        self._ops = ops_for(registry)
        self._kms = self._ops.kms

    # -- KMS ------------------------------------------------------------------------------

    def _call(self, op: str, fn: Any, arg: bytes) -> bytes:
        try:
            out = fn(arg)
        except PIIError:
            self._kms[(op, "rejected")] = self._kms.get((op, "rejected"), 0) + 1
            raise
        except Exception as exc:
            self._kms[(op, "error")] = self._kms.get((op, "error"), 0) + 1
            raise KeyWrapError(f"the key wrapper failed to {op}") from exc
        self._kms[(op, "ok")] = self._kms.get((op, "ok"), 0) + 1
        if not isinstance(out, (bytes, bytearray)):
            raise KeyWrapError(f"the key wrapper's {op} returned no bytes")
        return bytes(out)

    def _fresh(self) -> _Dek:
        key = secrets.token_bytes(KEY_SIZE)
        wrapped = self._call("wrap", self.kek.wrap, serialize_aes_gcm_key(key))
        if not 0 < len(wrapped) <= MAX_WRAPPED:
            raise KeyWrapError("the wrapped data key is empty or over 4096 bytes")
        aead = AESGCM(key)
        self._remember(wrapped, aead)
        return _Dek(aead, len(wrapped).to_bytes(4, "big") + wrapped, self._clock.monotonic())

    def _remember(self, wrapped: bytes, aead: AESGCM) -> None:
        if not self._cache_size:
            return
        with self._lock:
            self._cache[wrapped] = aead
            self._cache.move_to_end(wrapped)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _dek(self) -> _Dek:
        if self._reuse is None:
            dek = self._fresh()
            dek.uses = 1
            return dek
        max_uses, max_age = self._reuse
        with self._lock:
            current = self._current
            if (
                current is None
                or current.uses >= max_uses
                or self._clock.monotonic() - current.created >= max_age
            ):
                self._current = None
            else:
                current.uses += 1
                return current
        dek = self._fresh()  # outside the lock: a KMS call must not block decrypts
        with self._lock:
            dek.uses = 1
            if self._current is None:
                self._current = dek
        return dek

    def _unwrap(self, wrapped: bytes) -> AESGCM:
        if self._cache_size:
            with self._lock:
                aead = self._cache.get(wrapped)
                if aead is not None:
                    self._cache.move_to_end(wrapped)
                    return aead
        key = parse_aes_gcm_key(self._call("unwrap", self.kek.unwrap, wrapped))
        if key is None:
            raise DecryptionError()
        aead = AESGCM(key)
        self._remember(wrapped, aead)
        return aead

    # -- bytes ------------------------------------------------------------------------------

    def encrypt_bytes(self, data: bytes, context: Context = None) -> bytes:
        """``data`` in Tink's KMS envelope format, bound to ``context``."""
        ad = aad(context)
        dek = self._dek()
        nonce = _urandom(_NONCE)
        return dek.header + nonce + dek.aead.encrypt(nonce, data, ad)

    def decrypt_bytes(self, ciphertext: bytes, context: Context = None) -> bytes:
        """The plaintext of :meth:`encrypt_bytes` output (or of Tink's ``KmsEnvelopeAead``)."""
        try:
            return self._decrypt_bytes(ciphertext, aad(context))
        except (MalformedToken, KeyNotFound, DecryptionError) as exc:
            self._ops.failed(exc)  # plain integers: never changes the outcome
            raise

    def _decrypt_bytes(self, ciphertext: bytes, ad: bytes) -> bytes:
        if not isinstance(ciphertext, (bytes, bytearray, memoryview)):
            raise TypeError("decrypt_bytes takes bytes")
        raw = bytes(ciphertext)
        if len(raw) < 4:
            raise MalformedToken()
        n = int.from_bytes(raw[:4], "big")
        if not 0 < n <= MAX_WRAPPED or len(raw) - 4 - n < _MIN_PAYLOAD:
            raise MalformedToken()
        aead = self._unwrap(raw[4 : 4 + n])
        payload = raw[4 + n :]
        try:
            return aead.decrypt(payload[:_NONCE], payload[_NONCE:], ad)
        except InvalidTag:
            raise DecryptionError() from None

    # -- str tokens -------------------------------------------------------------------------

    def encrypt(self, value: str, context: Context = None) -> str:
        """``value`` as an ASCII token: :data:`ENVELOPE_MARKER` + unpadded base64url."""
        if not isinstance(value, str):
            raise TypeError("encrypt takes str; use encrypt_bytes for bytes")
        return ENVELOPE_MARKER + b64encode(self.encrypt_bytes(value.encode("utf-8"), context))

    def decrypt(self, token: str, context: Context = None) -> str:
        ad = aad(context)
        if not isinstance(token, str):
            raise TypeError("decrypt takes a str token; use decrypt_bytes for bytes")
        try:
            if not token.startswith(ENVELOPE_MARKER):
                raise MalformedToken()
            return utf8(self._decrypt_bytes(b64decode_strict(token[_MARKER_LEN:]), ad))
        except (MalformedToken, KeyNotFound, DecryptionError) as exc:
            self._ops.failed(exc)  # plain integers: never changes the outcome
            raise

    def encrypt_fields(
        self, record: Mapping[str, Any], fields: Sequence[str], context: Context = None
    ) -> dict[str, Any]:
        """As :meth:`PIICipher.encrypt_fields`."""
        return encrypt_fields(self.encrypt, self.encrypt_bytes, record, fields, context)

    def decrypt_fields(
        self, record: Mapping[str, Any], fields: Sequence[str], context: Context = None
    ) -> dict[str, Any]:
        """As :meth:`PIICipher.decrypt_fields`."""
        return decrypt_fields(self.decrypt, self.decrypt_bytes, record, fields, context)

    def __repr__(self) -> str:
        return f"EnvelopeCipher({self.kek!r}, dek_reuse={self._reuse!r})"
