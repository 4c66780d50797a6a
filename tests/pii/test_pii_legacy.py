"""Migration: hand-rolled hex iv:tag:ct AES-GCM and Fernet tokens decrypt and rotate."""

from __future__ import annotations

import os

import pytest
from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from opskit.pii import (
    DecryptionError,
    Keyring,
    LegacyFernet,
    LegacyGCM,
    MalformedToken,
    PIICipher,
)
from pii._pii import assert_no_leak

CTX = {"tenant": "acme", "field": "phone"}
HEX_KEY = os.urandom(32).hex()


def hand_rolled(key_hex: str, text: str, iv_len: int = 16) -> str:
    """What services wrote: AES-256-GCM, 16-byte IV, no AAD, hex iv:tag:ct."""
    iv = os.urandom(iv_len)
    enc = Cipher(algorithms.AES(bytes.fromhex(key_hex)), modes.GCM(iv)).encryptor()
    ct = enc.update(text.encode()) + enc.finalize()
    return f"{iv.hex()}:{enc.tag.hex()}:{ct.hex()}"


def test_hand_rolled_tokens_decrypt_ignore_context_and_rotate() -> None:
    pii = PIICipher(Keyring.generate(), legacy=[LegacyGCM(HEX_KEY)])
    old = hand_rolled(HEX_KEY, "+41 79 123 45 67")
    assert pii.needs_rotation(old)
    assert pii.decrypt(old) == "+41 79 123 45 67"
    assert pii.decrypt(old, context=CTX) == "+41 79 123 45 67"  # no AAD to check
    assert pii.decrypt(hand_rolled(HEX_KEY, "")) == ""
    assert pii.decrypt(hand_rolled(HEX_KEY.upper(), "x", iv_len=12).upper()) == "x"
    new = pii.rotate(old, context=CTX)
    assert not pii.needs_rotation(new)
    assert pii.decrypt(new, context=CTX) == "+41 79 123 45 67"
    with pytest.raises(DecryptionError):
        pii.decrypt(new, context={"tenant": "globex", "field": "phone"})  # now bound


def test_raw_key_bytes_and_bad_keys() -> None:
    raw = bytes.fromhex(HEX_KEY)
    assert (
        PIICipher(Keyring.generate(), legacy=[LegacyGCM(raw)]).decrypt(hand_rolled(HEX_KEY, "y"))
        == "y"
    )
    for bad in ("ab" * 31, "zz" * 32, b"short", 42):
        with pytest.raises(ValueError, match="64-character hex"):
            LegacyGCM(bad)  # type: ignore[arg-type]


def test_tampered_or_wrong_key_legacy_is_a_decryption_error() -> None:
    pii = PIICipher(Keyring.generate(), legacy=[LegacyGCM(HEX_KEY)])
    old = hand_rolled(HEX_KEY, "secret")
    iv, tag, ct = old.split(":")
    flipped = f"{iv}:{tag}:{ct[:-1]}{'0' if ct[-1] != '0' else '1'}"
    with pytest.raises(DecryptionError):
        pii.decrypt(flipped)
    with pytest.raises(DecryptionError):
        pii.decrypt(hand_rolled(os.urandom(32).hex(), "secret"))


def test_legacy_without_readers_is_malformed() -> None:
    pii = PIICipher(Keyring.generate())
    old = hand_rolled(HEX_KEY, "x")
    with pytest.raises(MalformedToken):
        pii.decrypt(old)
    with pytest.raises(MalformedToken):
        pii.needs_rotation(old)
    with pytest.raises(MalformedToken):
        pii.rotate(old)
    with pytest.raises(MalformedToken):
        pii.decrypt(Fernet(Fernet.generate_key()).encrypt(b"x").decode())


def test_fernet_tokens_under_any_key_decrypt_and_rotate() -> None:
    keys = [Fernet.generate_key() for _ in range(3)]
    multi = MultiFernet([Fernet(k) for k in keys])
    tokens = [multi.encrypt(b"alice@example.com").decode(),
              Fernet(keys[2]).encrypt(b"bob@example.com").decode()]  # fmt: skip
    pii = PIICipher(Keyring.generate(), legacy=[LegacyGCM(HEX_KEY), LegacyFernet(keys)])
    assert [pii.decrypt(t) for t in tokens] == ["alice@example.com", "bob@example.com"]
    assert all(pii.needs_rotation(t) for t in tokens)
    moved = pii.rotate(tokens[1], context=CTX)
    assert pii.decrypt(moved, context=CTX) == "bob@example.com"
    assert not pii.needs_rotation(moved)
    str_keys = LegacyFernet([k.decode() for k in keys])
    assert PIICipher(Keyring.generate(), legacy=[str_keys]).decrypt(tokens[0]) == (
        "alice@example.com"
    )
    with pytest.raises(DecryptionError):
        PIICipher(Keyring.generate(), legacy=[LegacyFernet([Fernet.generate_key()])]).decrypt(
            tokens[0]
        )
    with pytest.raises(ValueError, match="Fernet"):
        LegacyFernet(["not a key"])
    with pytest.raises(ValueError, match="at least one"):
        LegacyFernet([])


def test_legacy_reprs_hide_keys() -> None:
    keys = [Fernet.generate_key()]
    texts = [repr(LegacyGCM(HEX_KEY)), repr(LegacyFernet(keys)),
             repr(PIICipher(Keyring.generate(), legacy=[LegacyGCM(HEX_KEY)]))]  # fmt: skip
    assert_no_leak(texts, [bytes.fromhex(HEX_KEY)])
    assert keys[0].decode() not in "".join(texts)
