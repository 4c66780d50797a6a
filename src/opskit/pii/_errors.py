"""Typed failures of opskit.pii. Every message is fixed text: none echoes a
token, a key, a plaintext or which byte failed."""

from __future__ import annotations

from opskit import OpskitError

__all__ = [
    "DecryptionError",
    "KeyNotFound",
    "KeyWrapError",
    "KeyringError",
    "MalformedToken",
    "PIIError",
]


class PIIError(OpskitError):
    """Root of every error opskit.pii raises on purpose."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class MalformedToken(PIIError, ValueError):
    """Not a token of a known format: bad marker, non-canonical encoding, bad
    version byte, too short, or a legacy format with no legacy reader set up."""

    def __init__(self, message: str = "not a valid opskit.pii token") -> None:
        super().__init__(message)


class DecryptionError(PIIError):
    """The token is well formed but does not authenticate: a changed byte, the
    wrong context or the wrong key."""

    def __init__(self, message: str = "decryption failed") -> None:
        super().__init__(message)


class KeyNotFound(PIIError, LookupError):
    """The token names a key id the keyring does not hold (``key_id``)."""

    def __init__(self, key_id: int) -> None:
        super().__init__("the token's key id is not in the keyring")
        self.key_id = key_id

    def __reduce__(self) -> tuple[type[KeyNotFound], tuple[int]]:
        return (type(self), (self.key_id,))


class KeyringError(PIIError, ValueError):
    """A keyring could not be read or changed as asked (``key_id`` when one key is at fault)."""

    def __init__(self, message: str, *, key_id: int | None = None) -> None:
        super().__init__(message)
        self.key_id = key_id


class KeyWrapError(PIIError):
    """The key-encryption key could not wrap or unwrap a data key: the KMS could
    not be reached or refused the call. The cause is chained (``__cause__``)."""

    def __init__(self, message: str = "the key wrapper failed") -> None:
        super().__init__(message)
