"""Keyring: AES-256-GCM keys by uint32 id, one of them primary; an immutable value.

Two serialisations: opskit's own JSON (``{"primary": id, "keys": {"id": base64}}``)
and Tink's cleartext JSON keyset (AES256_GCM keys with the TINK output prefix),
so Tink in any language reads the same keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from opskit.pii._errors import KeyringError

__all__ = ["AES_GCM_TYPE_URL", "Keyring", "parse_aes_gcm_key", "serialize_aes_gcm_key"]

AES_GCM_TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmKey"
KEY_SIZE = 32
_MAX_ID = 2**32 - 1


def serialize_aes_gcm_key(key: bytes) -> bytes:
    """The ``AesGcmKey`` proto Tink writes for version 0: ``0x1a 0x20 || key``."""
    return b"\x1a\x20" + key


def parse_aes_gcm_key(value: bytes) -> bytes | None:
    """The 32 key bytes of a serialized ``AesGcmKey`` proto, or ``None``.

    Accepts field 1 (``version``, must be 0) and field 3 (``key_value``, 32
    bytes), each at most once; anything else (other fields, sizes, versions) is
    ``None``.
    """
    i, n = 0, len(value)
    key: bytes | None = None
    seen_version = False
    while i < n:
        tag = value[i]
        i += 1
        if tag == 0x08 and not seen_version:  # version, varint
            if i >= n or value[i] != 0:
                return None
            i += 1
            seen_version = True
        elif tag == 0x1A and key is None:  # key_value, length-delimited
            if i >= n or value[i] != KEY_SIZE or i + 1 + KEY_SIZE > n:
                return None
            key = bytes(value[i + 1 : i + 1 + KEY_SIZE])
            i += 1 + KEY_SIZE
        else:
            return None
    return key


def _new_id(taken: Iterable[int]) -> int:
    # 1 .. 2**31 - 1, as Tink Java draws them, so every Tink reader accepts the id.
    used = set(taken)
    while True:
        kid = secrets.randbelow(2**31 - 1) + 1
        if kid not in used:
            return kid


def _check_id(value: object) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_ID:
        raise KeyringError("key ids are integers from 0 to 2**32 - 1")
    return value


def _b64decode(text: object, key_id: int | None) -> bytes:
    if not isinstance(text, str):
        raise KeyringError("key material must be a standard base64 string", key_id=key_id)
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise KeyringError(f"key {key_id} is not valid standard base64", key_id=key_id) from None


def _loads(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        raise KeyringError("the keyring is not valid JSON") from None


class Keyring:
    """AES-256-GCM keys by uint32 id; :attr:`primary_id` encrypts, every key decrypts.

    Immutable: :meth:`add_key`, :meth:`promote` and :meth:`retire` return a new
    keyring. The repr shows ids only.
    """

    __slots__ = ("_aeads", "_keys", "_primary", "_slots")

    def __init__(self, keys: Mapping[int, bytes], primary_id: int) -> None:
        checked: dict[int, bytes] = {}
        for kid, key in keys.items():
            _check_id(kid)
            if not isinstance(key, bytes) or len(key) != KEY_SIZE:
                raise KeyringError(f"key {kid} is not 32 bytes (AES-256)", key_id=kid)
            checked[kid] = bytes(key)
        if not checked:
            raise KeyringError("a keyring holds at least one key")
        _check_id(primary_id)
        if primary_id not in checked:
            raise KeyringError(f"primary key {primary_id} is not in the keyring", key_id=primary_id)
        self._keys = checked
        self._primary = primary_id
        self._aeads = {kid: AESGCM(key) for kid, key in checked.items()}
        # (id, fingerprint): the nonce budget's counter slot for each key.
        self._slots = {
            kid: (kid, hashlib.sha256(b"opskit.pii.slot\x00" + key).digest()[:8])
            for kid, key in checked.items()
        }

    # -- construction -------------------------------------------------------------

    @classmethod
    def generate(cls) -> Keyring:
        """One random AES-256 key with a random id, primary."""
        kid = _new_id(())
        return cls({kid: secrets.token_bytes(KEY_SIZE)}, kid)

    @classmethod
    def from_env(cls, variable: str) -> Keyring:
        """The keyring JSON (:meth:`to_json`) held by environment variable ``variable``."""
        text = os.environ.get(variable)
        if not text:
            raise KeyringError(f"environment variable {variable} is not set or empty")
        return cls.from_json(text)

    @classmethod
    def from_json(cls, text: str | bytes) -> Keyring:
        """Read ``{"primary": id, "keys": {"id": "<standard base64 of 32 bytes>"}}``."""
        doc = _loads(text)
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict):
            raise KeyringError('keyring JSON needs "primary" and a "keys" object')
        primary = doc.get("primary")
        keys: dict[int, bytes] = {}
        for name, material in doc["keys"].items():
            if not (name.isascii() and name.isdigit()) or (name != "0" and name[0] == "0"):
                raise KeyringError("key ids are decimal integers from 0 to 2**32 - 1")
            kid = _check_id(int(name))
            keys[kid] = _b64decode(material, kid)
        if type(primary) is not int:
            raise KeyringError('"primary" must be an integer key id')
        return cls(keys, primary)

    @classmethod
    def from_tink_json(cls, text: str | bytes) -> Keyring:
        """Read a Tink cleartext JSON keyset of ENABLED AES-256-GCM keys with TINK prefix.

        Any other key type, size, status or prefix is refused with a
        :class:`KeyringError` naming the key id (disabled or destroyed keys are
        refused too, so that writing the keyring back never revives them).
        """
        doc = _loads(text)
        if not isinstance(doc, dict) or not isinstance(doc.get("key"), list):
            raise KeyringError('a Tink keyset needs "primaryKeyId" and a "key" list')
        keys: dict[int, bytes] = {}
        for entry in doc["key"]:
            if not isinstance(entry, dict):
                raise KeyringError("each Tink key is a JSON object")
            kid = _check_id(entry.get("keyId"))
            data = entry.get("keyData")
            if not isinstance(data, dict) or data.get("typeUrl") != AES_GCM_TYPE_URL:
                raise KeyringError(f"key {kid} is not an AesGcmKey", key_id=kid)
            if data.get("keyMaterialType") != "SYMMETRIC":
                raise KeyringError(f"key {kid} is not SYMMETRIC key material", key_id=kid)
            if entry.get("status") != "ENABLED":
                raise KeyringError(f"key {kid} is not ENABLED", key_id=kid)
            if entry.get("outputPrefixType") != "TINK":
                raise KeyringError(f"key {kid} does not use the TINK output prefix", key_id=kid)
            key = parse_aes_gcm_key(_b64decode(data.get("value"), kid))
            if key is None:
                raise KeyringError(f"key {kid} is not a version 0 AES-256-GCM key", key_id=kid)
            if kid in keys:
                raise KeyringError(f"key id {kid} appears twice", key_id=kid)
            keys[kid] = key
        primary = doc.get("primaryKeyId")
        if type(primary) is not int:
            raise KeyringError('"primaryKeyId" must be an integer key id')
        return cls(keys, primary)

    # -- serialisation --------------------------------------------------------------

    def to_json(self) -> str:
        """opskit's keyring JSON (holds the key bytes: store it as a secret)."""
        keys = {str(kid): base64.b64encode(key).decode() for kid, key in self._keys.items()}
        return json.dumps({"primary": self._primary, "keys": keys})

    def to_tink_json(self) -> str:
        """Tink's cleartext JSON keyset of the same keys (holds the key bytes)."""
        entries = [
            {
                "keyData": {
                    "typeUrl": AES_GCM_TYPE_URL,
                    "value": base64.b64encode(serialize_aes_gcm_key(key)).decode(),
                    "keyMaterialType": "SYMMETRIC",
                },
                "status": "ENABLED",
                "keyId": kid,
                "outputPrefixType": "TINK",
            }
            for kid, key in self._keys.items()
        ]
        return json.dumps({"primaryKeyId": self._primary, "key": entries})

    # -- rotation -------------------------------------------------------------------

    @property
    def primary_id(self) -> int:
        return self._primary

    @property
    def key_ids(self) -> tuple[int, ...]:
        """Every key id, in the order the keys were added (or read)."""
        return tuple(self._keys)

    @property
    def newest_id(self) -> int:
        """The id of the key added last (the last one read, for a loaded keyring)."""
        return next(reversed(self._keys))

    def add_key(self) -> Keyring:
        """A new keyring with one more random key, NOT primary (roll it out, then promote)."""
        keys = dict(self._keys)
        keys[_new_id(keys)] = secrets.token_bytes(KEY_SIZE)
        return Keyring(keys, self._primary)

    def promote(self, key_id: int) -> Keyring:
        """A new keyring whose primary is ``key_id`` (:class:`KeyringError` if unknown)."""
        if key_id not in self._keys:
            raise KeyringError(f"key {key_id} is not in the keyring", key_id=key_id)
        return Keyring(self._keys, key_id)

    def retire(self, key_id: int) -> Keyring:
        """A new keyring without ``key_id``; its tokens then raise ``KeyNotFound``.

        Retiring the primary or an unknown id is a :class:`KeyringError`.
        """
        if key_id not in self._keys:
            raise KeyringError(f"key {key_id} is not in the keyring", key_id=key_id)
        if key_id == self._primary:
            raise KeyringError(f"key {key_id} is the primary; promote another first", key_id=key_id)
        return Keyring({k: v for k, v in self._keys.items() if k != key_id}, self._primary)

    # -- internals --------------------------------------------------------------------

    def _aead(self, key_id: int) -> AESGCM | None:
        return self._aeads.get(key_id)

    def _slot(self, key_id: int) -> tuple[int, bytes]:
        return self._slots[key_id]

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Keyring):
            return NotImplemented
        if self._primary != other._primary or set(self._keys) != set(other._keys):
            return False
        mine = b"".join(self._keys[k] for k in sorted(self._keys))
        theirs = b"".join(other._keys[k] for k in sorted(other._keys))
        return hmac.compare_digest(mine, theirs)

    def __hash__(self) -> int:
        return hash((self._primary, frozenset(self._keys)))

    def __repr__(self) -> str:
        return f"Keyring(primary_id={self._primary}, key_ids={list(self._keys)})"

    def __reduce__(self) -> Any:
        raise TypeError("a Keyring is not pickled (it holds keys); use to_json()")
