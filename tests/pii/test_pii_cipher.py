"""PIICipher: tokens, context binding, rotation, fields, typed errors, telemetry."""

from __future__ import annotations

import base64
import json

import pytest
import structlog
from prometheus_client import CollectorRegistry

from opskit import OpskitError
from opskit.pii import (
    TOKEN_MARKER,
    DecryptionError,
    KeyNotFound,
    Keyring,
    MalformedToken,
    PIICipher,
    PIIError,
)
from pii._pii import assert_no_leak, key_bytes

CTX = {"tenant": "acme", "field": "phone"}
PHONE = "+41 79 123 45 67"


@pytest.fixture
def ring() -> Keyring:
    return Keyring.generate()


def test_round_trip_str_and_bytes(ring: Keyring) -> None:
    pii = PIICipher(ring)
    token = pii.encrypt(PHONE, context=CTX)
    assert token.startswith(TOKEN_MARKER) and token.isascii()
    assert pii.decrypt(token, context=CTX) == PHONE
    assert pii.decrypt(pii.encrypt("", context=None)) == ""
    assert pii.decrypt(pii.encrypt("ünïcødé ✓")) == "ünïcødé ✓"
    ct = pii.encrypt_bytes(b"\x00\xff", context=b"raw-ad")
    assert pii.decrypt_bytes(ct, context=b"raw-ad") == b"\x00\xff"
    assert pii.encrypt(PHONE, context=CTX) != token  # fresh nonce each time


def test_empty_context_forms_are_the_same_associated_data(ring: Keyring) -> None:
    pii = PIICipher(ring)
    token = pii.encrypt(PHONE)
    assert pii.decrypt(token, context={}) == PHONE
    assert pii.decrypt(token, context=b"") == PHONE


@pytest.mark.parametrize(
    "other",
    [{"tenant": "globex", "field": "phone"}, {"tenant": "acme", "field": "email"},
     {"tenant": "acme"}, None, b'{"field":"phone","tenant":"acme"} '],
)  # fmt: skip
def test_wrong_context_fails(ring: Keyring, other: object) -> None:
    pii = PIICipher(ring)
    token = pii.encrypt(PHONE, context=CTX)
    with pytest.raises(DecryptionError):
        pii.decrypt(token, context=other)  # type: ignore[arg-type]


def test_context_as_bytes_equals_its_canonical_json(ring: Keyring) -> None:
    pii = PIICipher(ring)
    token = pii.encrypt(PHONE, context=CTX)
    assert pii.decrypt(token, context=b'{"field":"phone","tenant":"acme"}') == PHONE
    uni = {"tenant": "zürich"}
    assert pii.decrypt(pii.encrypt("x", context=uni), context='{"tenant":"zürich"}'.encode()) == "x"


@pytest.mark.parametrize(
    "bad", ["tenant=acme", 3, ["tenant"], {"tenant": 1}, {1: "x"}, {"a": None}, 1.5]
)
def test_bad_context_is_a_type_error_on_both_sides(ring: Keyring, bad: object) -> None:
    pii = PIICipher(ring)
    token = pii.encrypt(PHONE)
    with pytest.raises(TypeError):
        pii.encrypt(PHONE, context=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pii.decrypt(token, context=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pii.encrypt_bytes(b"x", context=bad)  # type: ignore[arg-type]


def test_a_context_changed_after_use_is_read_again(ring: Keyring) -> None:
    # The cipher remembers a copy of the last context, never the caller's dict.
    pii = PIICipher(ring)
    ctx = dict(CTX)
    token = pii.encrypt(PHONE, context=ctx)
    ctx["tenant"] = "globex"
    with pytest.raises(DecryptionError):
        pii.decrypt(token, context=ctx)
    moved = pii.encrypt(PHONE, context=ctx)
    assert pii.decrypt(moved, context={"tenant": "globex", "field": "phone"}) == PHONE
    with pytest.raises(DecryptionError):
        pii.decrypt(moved, context=CTX)


def test_bad_contexts_stay_type_errors_after_a_good_one(ring: Keyring) -> None:
    pii = PIICipher(ring)
    token = pii.encrypt(PHONE, context=CTX)
    for bad in ({"tenant": 1, "field": "phone"}, {"tenant": ["acme"]}, "tenant=acme", 3):
        assert pii.decrypt(token, context=CTX) == PHONE
        with pytest.raises(TypeError):
            pii.decrypt(token, context=bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            pii.encrypt(PHONE, context=bad)  # type: ignore[arg-type]


class _RaisingEq:
    def __eq__(self, other: object) -> bool:
        raise ValueError("no comparing me")

    __hash__ = object.__hash__


def test_a_value_whose_comparison_raises_is_still_a_type_error(ring: Keyring) -> None:
    pii = PIICipher(ring)
    token = pii.encrypt(PHONE, context=CTX)  # CTX is now the remembered context
    bad = {"tenant": _RaisingEq(), "field": "phone"}
    with pytest.raises(TypeError):
        pii.encrypt(PHONE, context=bad)  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        pii.decrypt(token, context=bad)  # type: ignore[dict-item]


def test_any_mapping_equal_to_the_context_decrypts(ring: Keyring) -> None:
    from types import MappingProxyType

    pii = PIICipher(ring)
    token = pii.encrypt(PHONE, context=CTX)
    assert pii.decrypt(token, context=MappingProxyType(dict(CTX))) == PHONE
    assert pii.decrypt(pii.encrypt(PHONE, context=MappingProxyType(CTX)), context=CTX) == PHONE


def test_each_key_id_is_looked_up_on_its_own(ring: Keyring) -> None:
    # Tokens of two keys interleaved through one cipher; an unknown id and a bad
    # version byte stay errors however often they come, after the good ones.
    ring2 = ring.add_key()
    old, new = PIICipher(ring), PIICipher(ring2.promote(ring2.newest_id))
    reader = PIICipher(ring2)
    unknown = PIICipher(Keyring.generate()).encrypt(PHONE)
    raw = base64.urlsafe_b64decode(new.encrypt(PHONE)[len(TOKEN_MARKER) :] + "===")
    bad_version = TOKEN_MARKER + base64.urlsafe_b64encode(b"\x02" + raw[1:]).decode().rstrip("=")
    for _ in range(3):
        assert reader.decrypt(old.encrypt(PHONE)) == PHONE
        assert reader.decrypt(new.encrypt(PHONE)) == PHONE
        with pytest.raises(KeyNotFound):
            reader.decrypt(unknown)
        with pytest.raises(MalformedToken):
            reader.decrypt(bad_version)


def test_wrong_key_is_a_decryption_error_and_unknown_id_key_not_found(ring: Keyring) -> None:
    token = PIICipher(ring).encrypt(PHONE)
    other = Keyring.generate()
    with pytest.raises(KeyNotFound) as err:
        PIICipher(other).decrypt(token)
    assert err.value.key_id == ring.primary_id
    assert str(ring.primary_id) not in str(err.value)  # fixed text
    # Same id, different key bytes: the wrong key.
    forged = Keyring.from_json(
        json.dumps(
            {
                "primary": ring.primary_id,
                "keys": {str(ring.primary_id): base64.b64encode(b"z" * 32).decode()},
            }
        )
    )
    with pytest.raises(DecryptionError):
        PIICipher(forged).decrypt(token)


@pytest.mark.parametrize(
    "token",
    ["", "pii1", "pii1.", "pii2.AAAA", "hello", "pii1.AQ", "pii1.AQ==", "pii1.AQ+/",
     "pii1." + "A" * 60 + "!", "pii1." + "A" * 61, "pii1.ÄÄÄÄ",
     "pii1." + base64.urlsafe_b64encode(b"\x02" + b"\x00" * 40).decode().rstrip("=")],
)  # fmt: skip
def test_not_a_token_is_malformed(ring: Keyring, token: str) -> None:
    pii = PIICipher(ring)
    with pytest.raises(MalformedToken):
        pii.decrypt(token)
    with pytest.raises(MalformedToken):
        pii.needs_rotation(token)


def test_short_and_bad_version_bytes_are_malformed(ring: Keyring) -> None:
    pii = PIICipher(ring)
    ct = pii.encrypt_bytes(b"")
    assert len(ct) == 33
    with pytest.raises(MalformedToken):
        pii.decrypt_bytes(ct[:32])
    with pytest.raises(MalformedToken):
        pii.decrypt_bytes(b"\x00" + ct[1:])
    assert pii.decrypt_bytes(ct) == b""


def test_non_canonical_base64_is_rejected(ring: Keyring) -> None:
    pii = PIICipher(ring)
    token = pii.encrypt("abcd")  # 37 bytes -> 50 chars: the last one has 4 unused bits
    body = token[len(TOKEN_MARKER) :]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(body[-1])
    for low in range(1, 16):
        changed = body[:-1] + alphabet[last ^ low]
        with pytest.raises(MalformedToken):
            pii.decrypt(TOKEN_MARKER + changed)
    with pytest.raises(MalformedToken):
        pii.decrypt(token + "==")


def test_errors_are_typed_and_quiet(ring: Keyring) -> None:
    for cls in (DecryptionError, MalformedToken, KeyNotFound):
        assert issubclass(cls, PIIError) and issubclass(cls, OpskitError)
    pii = PIICipher(ring)
    token = pii.encrypt(PHONE, context=CTX)
    texts = []
    for attempt in (lambda: pii.decrypt(token, context={"tenant": "x"}),
                    lambda: pii.decrypt(token[:-3]),
                    lambda: PIICipher(Keyring.generate()).decrypt(token)):  # fmt: skip
        with pytest.raises(PIIError) as err:
            attempt()
        texts += [str(err.value), repr(err.value)]
        assert token[10:30] not in str(err.value)
    texts += [repr(ring), str(ring), repr(pii)]
    assert_no_leak(texts, [*key_bytes(ring.to_json()), PHONE.encode()])


def test_rotation_end_to_end() -> None:
    ring1 = Keyring.generate()
    old_id = ring1.primary_id
    pii1 = PIICipher(ring1)
    tokens = [pii1.encrypt(f"+41 79 000 00 {i:02}", context=CTX) for i in range(5)]
    raw = pii1.encrypt_bytes(b"blob", context=CTX)
    assert not pii1.needs_rotation(tokens[0]) and not pii1.needs_rotation(raw)

    ring2 = ring1.add_key()  # rolled out first: decrypts with it, still encrypts under old
    pii2 = PIICipher(ring2)
    assert pii2.decrypt(tokens[0], context=CTX) == "+41 79 000 00 00"
    assert not pii2.needs_rotation(pii2.encrypt("x"))
    assert pii2.rotate(tokens[0], context=CTX) == tokens[0]  # already under the primary

    ring3 = ring2.promote(ring2.newest_id)
    pii3 = PIICipher(ring3)
    assert all(pii3.needs_rotation(t) for t in tokens) and pii3.needs_rotation(raw)
    assert all(pii3.decrypt(t, context=CTX).startswith("+41") for t in tokens)
    moved = [pii3.rotate(t, context=CTX) for t in tokens]
    assert not any(pii3.needs_rotation(t) for t in moved)
    assert [pii3.decrypt(t, context=CTX) for t in moved] == [
        pii3.decrypt(t, context=CTX) for t in tokens
    ]
    assert pii3.rotate(moved[0], context=CTX) == moved[0]
    moved_raw = pii3.rotate(raw, context=CTX)
    assert isinstance(moved_raw, bytes) and pii3.decrypt_bytes(moved_raw, context=CTX) == b"blob"
    with pytest.raises(DecryptionError):
        pii3.rotate(tokens[1], context={"tenant": "other"})

    ring4 = ring3.retire(old_id)
    pii4 = PIICipher(ring4)
    assert pii4.decrypt(moved[0], context=CTX) == "+41 79 000 00 00"
    with pytest.raises(KeyNotFound):
        pii4.decrypt(tokens[0], context=CTX)
    assert pii4.needs_rotation(tokens[0])  # an id no longer in the keyring


def test_fields_bind_their_names() -> None:
    pii = PIICipher(Keyring.generate())
    record = {"id": 7, "phone": PHONE, "email": "a@example.com", "tax_id": None, "blob": b"\x01"}
    enc = pii.encrypt_fields(record, ["phone", "email", "tax_id", "missing", "blob"],
                             context={"tenant": "acme"})  # fmt: skip
    assert enc["id"] == 7 and enc["tax_id"] is None and "missing" not in enc
    assert enc["phone"] != PHONE and record["phone"] == PHONE  # a copy
    dec = pii.decrypt_fields(enc, ["phone", "email", "tax_id", "missing", "blob"],
                             context={"tenant": "acme"})  # fmt: skip
    assert dec == record
    assert pii.decrypt(enc["phone"], context={"tenant": "acme", "field": "phone"}) == PHONE
    swapped = {**enc, "phone": enc["email"], "email": enc["phone"]}
    with pytest.raises(DecryptionError):
        pii.decrypt_fields(swapped, ["phone"], context={"tenant": "acme"})
    with pytest.raises(DecryptionError):
        pii.decrypt_fields(enc, ["phone"], context={"tenant": "globex"})
    with pytest.raises(TypeError):
        pii.encrypt_fields({"n": 5}, ["n"])


def _samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    out = {}
    for fam in registry.collect():
        for s in fam.samples:
            if s.name == "opskit_pii_operations_total":
                out[(s.labels["op"], s.labels["key_id"])] = s.value
    return out


def test_operations_counter_one_per_call_and_shared_per_registry() -> None:
    registry = CollectorRegistry()
    ring = Keyring.generate()
    a = PIICipher(ring, registry=registry)
    b = PIICipher(ring, registry=registry)  # a second cipher adds to the same series
    kid = str(ring.primary_id)
    t = a.encrypt("x")
    b.encrypt_bytes(b"x")
    a.decrypt(t)
    b.rotate(t)
    with pytest.raises(DecryptionError):
        a.decrypt(t, context={"a": "b"})
    assert _samples(registry) == {("encrypt", kid): 2, ("decrypt", kid): 1, ("rotate", kid): 1}
    text = "".join(str(f) for f in registry.collect())
    assert_no_leak([text], key_bytes(ring.to_json()))


def test_nonce_budget_warns_once_per_key_and_process() -> None:
    ring = Keyring.generate()
    pii = PIICipher(ring, nonce_warn_at=3)
    with structlog.testing.capture_logs() as logs:
        for _ in range(6):
            pii.encrypt("x")
        PIICipher(ring, nonce_warn_at=3).encrypt_bytes(b"y")
    warned = [e for e in logs if e["event"] == "pii.key_nearing_limit"]
    assert len(warned) == 1
    assert warned[0]["key_id"] == ring.primary_id and warned[0]["log_level"] == "warning"
    assert pii.encryption_count() == 7
    assert_no_leak([repr(logs)], key_bytes(ring.to_json()))
    with pytest.raises(ValueError, match="nonce_warn_at"):
        PIICipher(ring, nonce_warn_at=0)


def _failures(registry: CollectorRegistry) -> dict[str, float]:
    return {
        s.labels["reason"]: s.value
        for fam in registry.collect()
        for s in fam.samples
        if s.name == "opskit_pii_decrypt_failures_total"
    }


def test_decrypt_failures_are_counted_by_bounded_reason() -> None:
    registry = CollectorRegistry()
    ring = Keyring.generate()
    pii = PIICipher(ring, registry=registry)
    assert _failures(registry) == {"malformed": 0, "key_not_found": 0, "decryption_failed": 0}
    token = pii.encrypt(PHONE, context=CTX)
    raw = pii.encrypt_bytes(b"x")
    # a token naming a key id the keyring does not hold: an attacker picks that id
    other = Keyring.generate()
    foreign = PIICipher(other, registry=CollectorRegistry()).encrypt("x")
    cases = [
        (MalformedToken, lambda: pii.decrypt("not a token")),
        (MalformedToken, lambda: pii.decrypt(TOKEN_MARKER + "!!")),
        (MalformedToken, lambda: pii.decrypt_bytes(b"\x01")),
        (MalformedToken, lambda: pii.rotate("not a token")),
        (KeyNotFound, lambda: pii.decrypt(foreign)),
        (DecryptionError, lambda: pii.decrypt(token, context={"tenant": "globex"})),
        (DecryptionError, lambda: pii.decrypt_bytes(raw, context=CTX)),
        (DecryptionError, lambda: pii.rotate(token)),  # no context: a different AAD
    ]
    for error, call in cases:
        with pytest.raises(error):
            call()
    with pytest.raises(TypeError):
        pii.decrypt(b"bytes")  # type: ignore[arg-type]  # a caller's bug, not a failure
    assert pii.decrypt(token, context=CTX) == PHONE
    assert _failures(registry) == {"malformed": 4, "key_not_found": 1, "decryption_failed": 3}
    labels = [s.labels for fam in registry.collect() for s in fam.samples]
    assert all(set(lab) == {"reason"} for lab in labels
               if "reason" in lab)  # fmt: skip  # no key id on a failure, ever
    assert str(other.primary_id) not in {v for lab in labels for v in lab.values()}
