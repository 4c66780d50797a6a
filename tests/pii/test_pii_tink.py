"""Interop with the real tink package, both ways: keysets and AEAD ciphertexts."""

from __future__ import annotations

import json

import pytest
import tink
from tink import aead

from opskit.pii import DecryptionError, Keyring, PIICipher
from opskit.pii._context import aad
from pii._pii import tink_aead, tink_handle, tink_json

CTX = {"tenant": "acme", "field": "phone"}


def test_tink_reads_opskit_keysets_and_decrypts_opskit_bytes() -> None:
    ring = Keyring.generate().add_key()
    pii = PIICipher(ring)
    ct = pii.encrypt_bytes(b"+41 79 123 45 67", context=CTX)
    primitive = tink_aead(ring.to_tink_json())
    ad = json.dumps(CTX, sort_keys=True, separators=(",", ":")).encode()
    assert primitive.decrypt(ct, ad) == b"+41 79 123 45 67"
    with pytest.raises(tink.TinkError):
        primitive.decrypt(ct, b'{"tenant":"other"}')
    # Tink's view of the keyset: same ids, same primary.
    info = tink_handle(ring.to_tink_json()).keyset_info()
    assert info.primary_key_id == ring.primary_id
    assert sorted(k.key_id for k in info.key_info) == sorted(ring.key_ids)


def test_tink_decrypts_a_token_under_a_non_primary_key() -> None:
    ring = Keyring.generate()
    old = PIICipher(ring)
    token = old.encrypt("alice@example.com", context=CTX)
    ring2 = ring.add_key()
    ring3 = ring2.promote(ring2.newest_id)
    raw = PIICipher(ring3)._raw(token)
    assert tink_aead(ring3.to_tink_json()).decrypt(raw, aad(CTX)) == b"alice@example.com"


def test_opskit_reads_tink_keysets_and_decrypts_tink_output() -> None:
    handle = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)
    text = tink_json(handle)
    ring = Keyring.from_tink_json(text)
    assert ring.primary_id == handle.keyset_info().primary_key_id
    primitive = handle.primitive(aead.Aead)
    ad = aad(CTX)
    for plaintext in (b"", b"x", b"+41 79 123 45 67", bytes(range(256)) * 4):
        ct = primitive.encrypt(plaintext, ad)
        assert len(ct) == 5 + 12 + len(plaintext) + 16
        assert PIICipher(ring).decrypt_bytes(ct, context=CTX) == plaintext
        with pytest.raises(DecryptionError):
            PIICipher(ring).decrypt_bytes(ct, context={"tenant": "other"})


def test_wire_format_is_tinks() -> None:
    ring = Keyring.generate()
    ct = PIICipher(ring).encrypt_bytes(b"abc")
    assert len(ct) == 36  # 3-byte plaintext -> 36 bytes, as the field notes say
    assert ct[0] == 1 and int.from_bytes(ct[1:5], "big") == ring.primary_id


def test_opskit_written_keyset_survives_tink_rewrite() -> None:
    ring = Keyring.generate().add_key()
    rewritten = tink_json(tink_handle(ring.to_tink_json()))
    assert Keyring.from_tink_json(rewritten) == ring


def test_tink_keyset_with_several_keys_and_rotation() -> None:
    handle = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)
    text = tink_json(handle)
    ring = Keyring.from_tink_json(text).add_key()
    ring = ring.promote(ring.newest_id)
    # Tink encrypts under the new primary; opskit decrypts; both directions.
    primitive = tink_aead(ring.to_tink_json())
    ct = primitive.encrypt(b"v", b"")
    assert int.from_bytes(ct[1:5], "big") == ring.newest_id
    assert PIICipher(ring).decrypt_bytes(ct) == b"v"
    old_ct = handle.primitive(aead.Aead).encrypt(b"w", b"")
    assert PIICipher(ring).needs_rotation(old_ct)
    assert primitive.decrypt(PIICipher(ring).rotate(old_ct), b"") == b"w"
