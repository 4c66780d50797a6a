"""Keyring: generation, the two JSON forms, rotation steps, refusals."""

from __future__ import annotations

import base64
import json
import pickle

import pytest

from opskit.pii import Keyring, KeyringError
from pii._pii import key_bytes


def test_generate_has_one_primary_key_with_a_uint32_id() -> None:
    ring = Keyring.generate()
    assert ring.key_ids == (ring.primary_id,)
    assert 0 < ring.primary_id < 2**31
    assert ring.newest_id == ring.primary_id
    assert len(key_bytes(ring.to_json())[0]) == 32
    assert Keyring.generate() != ring


def test_json_round_trip_and_documented_shape() -> None:
    ring = Keyring.generate().add_key()
    doc = json.loads(ring.to_json())
    assert doc["primary"] == ring.primary_id
    assert set(doc["keys"]) == {str(k) for k in ring.key_ids}
    for value in doc["keys"].values():
        assert len(base64.b64decode(value, validate=True)) == 32
    again = Keyring.from_json(ring.to_json())
    assert again == ring
    assert again.key_ids == ring.key_ids
    assert again.newest_id == ring.newest_id


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = Keyring.generate()
    monkeypatch.setenv("OPSKIT_PII_KEYRING_TEST", ring.to_json())
    assert Keyring.from_env("OPSKIT_PII_KEYRING_TEST") == ring
    monkeypatch.delenv("OPSKIT_PII_KEYRING_TEST")
    with pytest.raises(KeyringError, match="OPSKIT_PII_KEYRING_TEST"):
        Keyring.from_env("OPSKIT_PII_KEYRING_TEST")


def test_add_promote_retire_return_new_keyrings() -> None:
    ring = Keyring.generate()
    first = ring.primary_id
    two = ring.add_key()
    assert ring.key_ids == (first,)  # unchanged: immutable values
    new = two.newest_id
    assert new != first and two.primary_id == first
    assert two.key_ids == (first, new)
    three = two.promote(new)
    assert three.primary_id == new and two.primary_id == first
    four = three.retire(first)
    assert four.key_ids == (new,) and four.primary_id == new
    with pytest.raises(KeyringError) as err:
        four.retire(new)
    assert err.value.key_id == new
    with pytest.raises(KeyringError):
        four.promote(12345)
    with pytest.raises(KeyringError):
        four.retire(12345)


def test_repr_shows_ids_only() -> None:
    ring = Keyring.generate().add_key()
    text = repr(ring) + str(ring)
    assert str(ring.primary_id) in text
    for key in key_bytes(ring.to_json()):
        assert base64.b64encode(key).decode() not in text
        assert key.hex() not in text
    with pytest.raises(TypeError):
        pickle.dumps(ring)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"primary": 1}',
        '{"primary": 1, "keys": {}}',
        '{"primary": 2, "keys": {"1": "' + base64.b64encode(b"k" * 32).decode() + '"}}',
        '{"primary": 1, "keys": {"1": "' + base64.b64encode(b"k" * 16).decode() + '"}}',
        '{"primary": 1, "keys": {"1": "%%%"}}',
        '{"primary": 1, "keys": {"-1": "' + base64.b64encode(b"k" * 32).decode() + '"}}',
        '{"primary": 4294967296, "keys": {"4294967296": "'
        + base64.b64encode(b"k" * 32).decode()
        + '"}}',
        '{"primary": "1", "keys": {"1": "' + base64.b64encode(b"k" * 32).decode() + '"}}',
    ],
)
def test_bad_keyring_json_is_a_keyring_error(text: str) -> None:
    with pytest.raises(KeyringError) as err:
        Keyring.from_json(text)
    assert base64.b64encode(b"k" * 32).decode() not in str(err.value)


def _tink_entry(kid: int, **over: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "keyData": {
            "typeUrl": "type.googleapis.com/google.crypto.tink.AesGcmKey",
            "value": base64.b64encode(b"\x1a\x20" + b"k" * 32).decode(),
            "keyMaterialType": "SYMMETRIC",
        },
        "status": "ENABLED",
        "keyId": kid,
        "outputPrefixType": "TINK",
    }
    for k, v in over.items():
        if k in ("typeUrl", "value", "keyMaterialType"):
            entry["keyData"][k] = v  # type: ignore[index]
        else:
            entry[k] = v
    return entry


def test_tink_json_accepts_explicit_version_zero() -> None:
    value = base64.b64encode(b"\x08\x00\x1a\x20" + b"k" * 32).decode()
    text = json.dumps({"primaryKeyId": 7, "key": [_tink_entry(7, value=value)]})
    ring = Keyring.from_tink_json(text)
    assert ring.primary_id == 7 and key_bytes(ring.to_json()) == [b"k" * 32]


@pytest.mark.parametrize(
    "over",
    [
        {"typeUrl": "type.googleapis.com/google.crypto.tink.AesCtrHmacAeadKey"},
        {"value": base64.b64encode(b"\x1a\x10" + b"k" * 16).decode()},  # AES-128
        {"value": base64.b64encode(b"\x08\x01\x1a\x20" + b"k" * 32).decode()},  # version 1
        {"value": base64.b64encode(b"\x1a\x20" + b"k" * 32 + b"\x10\x01").decode()},
        {"keyMaterialType": "REMOTE"},
        {"outputPrefixType": "RAW"},
        {"outputPrefixType": "LEGACY"},
        {"status": "DISABLED"},
        {"status": "DESTROYED"},
    ],
)
def test_tink_keys_of_other_kinds_are_refused_naming_the_key(over: dict[str, object]) -> None:
    text = json.dumps({"primaryKeyId": 7, "key": [_tink_entry(7), _tink_entry(4242, **over)]})
    with pytest.raises(KeyringError, match="4242") as err:
        Keyring.from_tink_json(text)
    assert err.value.key_id == 4242


def test_tink_json_duplicate_ids_and_missing_primary_are_refused() -> None:
    with pytest.raises(KeyringError):
        Keyring.from_tink_json(json.dumps({"primaryKeyId": 7, "key": [_tink_entry(7)] * 2}))
    with pytest.raises(KeyringError):
        Keyring.from_tink_json(json.dumps({"primaryKeyId": 8, "key": [_tink_entry(7)]}))
    with pytest.raises(KeyringError):
        Keyring.from_tink_json("{}")


def test_tink_json_round_trip() -> None:
    ring = Keyring.generate().add_key()
    assert Keyring.from_tink_json(ring.to_tink_json()) == ring
    doc = json.loads(ring.to_tink_json())
    assert doc["primaryKeyId"] == ring.primary_id
    assert [k["keyId"] for k in doc["key"]] == list(ring.key_ids)
    assert all(base64.b64decode(k["keyData"]["value"])[:2] == b"\x1a\x20" for k in doc["key"])
