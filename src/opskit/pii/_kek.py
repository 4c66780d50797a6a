"""Key-encryption keys: the ``KeyWrapper`` protocol and ``LocalKEK``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry

from opskit.pii._cipher import PIICipher
from opskit.pii._keyring import Keyring

__all__ = ["KeyWrapper", "LocalKEK"]

_KEK_REGISTRY = CollectorRegistry(auto_describe=False)


@runtime_checkable
class KeyWrapper(Protocol):
    """Wraps and unwraps data keys. ``unwrap(wrap(dek)) == dek``.

    Raise :class:`DecryptionError` for a wrapped key that does not
    authenticate; any other failure (the KMS is down, refuses the call) is
    turned into :class:`KeyWrapError` by :class:`EnvelopeCipher`.
    """

    def wrap(self, dek: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes) -> bytes: ...


class LocalKEK:
    """A KEK held in a :class:`Keyring`: wraps in Tink's AEAD wire format, empty
    associated data (Tink's ``KmsEnvelopeAead`` over an AEAD of that keyset reads it).

    Rotating the KEK keyring works as for :class:`PIICipher`: old wrapped keys
    unwrap while their key is in the keyring.
    """

    __slots__ = ("_cipher",)

    def __init__(self, keyring: Keyring) -> None:
        # Wrapping is not field encryption: its counts go to a registry of its own
        # (the nonce budget of the KEK's keys is still counted and warned about).
        self._cipher = PIICipher(keyring, registry=_KEK_REGISTRY)

    @property
    def keyring(self) -> Keyring:
        return self._cipher.keyring

    def wrap(self, dek: bytes) -> bytes:
        return self._cipher.encrypt_bytes(dek, b"")

    def unwrap(self, wrapped: bytes) -> bytes:
        return self._cipher.decrypt_bytes(wrapped, b"")

    def __repr__(self) -> str:
        return f"LocalKEK({self._cipher.keyring!r})"
