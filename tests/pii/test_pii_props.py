"""Properties (hypothesis): round trip; every bit flip and truncation rejected;
a context mismatch always fails."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from opskit.pii import DecryptionError, KeyNotFound, Keyring, MalformedToken, PIICipher, PIIError

RING = Keyring.generate()
PII = PIICipher(RING)
contexts = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=8), st.text(max_size=12), max_size=4),
    st.binary(max_size=24),
)


@given(st.text(max_size=200), contexts)
def test_round_trip(value: str, context: object) -> None:
    token = PII.encrypt(value, context=context)  # type: ignore[arg-type]
    assert PII.decrypt(token, context=context) == value  # type: ignore[arg-type]
    raw = PII.encrypt_bytes(value.encode(), context=context)  # type: ignore[arg-type]
    assert PII.decrypt_bytes(raw, context=context) == value.encode()  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(st.text(max_size=40), contexts)
def test_every_single_bit_flip_of_a_token_is_rejected(value: str, context: object) -> None:
    token = PII.encrypt(value, context=context)  # type: ignore[arg-type]
    data = token.encode()
    for i in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            try:
                text = flipped.decode()
            except UnicodeDecodeError:
                continue  # not a str at all; a column of text cannot hold it
            with pytest.raises((MalformedToken, DecryptionError, KeyNotFound)):
                PII.decrypt(text, context=context)  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=40), contexts)
def test_every_single_bit_flip_of_the_bytes_is_rejected(value: bytes, context: object) -> None:
    ct = PII.encrypt_bytes(value, context=context)  # type: ignore[arg-type]
    for i in range(len(ct)):
        for bit in range(8):
            flipped = bytearray(ct)
            flipped[i] ^= 1 << bit
            with pytest.raises((MalformedToken, DecryptionError, KeyNotFound)):
                PII.decrypt_bytes(bytes(flipped), context=context)  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(st.text(max_size=40), contexts)
def test_every_truncation_is_rejected(value: str, context: object) -> None:
    token = PII.encrypt(value, context=context)  # type: ignore[arg-type]
    for n in range(len(token)):
        with pytest.raises(PIIError):
            PII.decrypt(token[:n], context=context)  # type: ignore[arg-type]
    ct = PII.encrypt_bytes(value.encode(), context=context)  # type: ignore[arg-type]
    for n in range(len(ct)):
        with pytest.raises(PIIError):
            PII.decrypt_bytes(ct[:n], context=context)  # type: ignore[arg-type]


@given(st.text(max_size=40), contexts, contexts)
def test_context_mismatch_fails(value: str, a: object, b: object) -> None:
    from opskit.pii._context import aad

    assume(aad(a) != aad(b))
    token = PII.encrypt(value, context=a)  # type: ignore[arg-type]
    with pytest.raises(DecryptionError):
        PII.decrypt(token, context=b)  # type: ignore[arg-type]


@given(st.text(min_size=1, max_size=60))
def test_arbitrary_text_is_never_a_crash(text: str) -> None:
    with contextlib.suppress(PIIError):
        PII.decrypt(text)
    with contextlib.suppress(MalformedToken):
        PII.needs_rotation(text)


@given(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=5))
def test_associated_data_is_the_canonical_json_memo_or_not(context: dict[str, str]) -> None:
    import json

    from opskit.pii._context import aad

    want = (
        json.dumps(context, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        if context
        else b""
    )
    assert aad(context) == want
    assert aad(dict(reversed(list(context.items())))) == want
    assert aad(context) == want  # the remembered encoding


def test_unhashable_context_values_are_type_errors() -> None:
    with pytest.raises(TypeError):
        PII.encrypt("x", context={"tenant": ["acme"]})  # type: ignore[dict-item]


def test_strict_decoding_rejects_what_lenient_base64_accepts() -> None:
    from opskit.pii._cipher import b64decode_strict

    token = PII.encrypt("abcd")[len("pii1.") :]
    for bad in (token + "=", token + "==", token[:-1] + "+", "/" + token[1:], token + "\n",
                " " + token, token[:10] + "." + token[11:]):  # fmt: skip
        with pytest.raises(MalformedToken):
            b64decode_strict(bad)
    assert b64decode_strict(token) == PII._raw("pii1." + token)


small_contexts = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["tenant", "field"]), st.sampled_from(["a", "b"]), max_size=2),
)


@given(st.lists(st.tuples(small_contexts, small_contexts), min_size=1, max_size=12))
def test_the_remembered_context_never_stands_in_for_another(
    pairs: list[tuple[dict[str, str] | None, dict[str, str] | None]],
) -> None:
    # One cipher remembers the last context it saw: any sequence of contexts,
    # repeated or alternating, decrypts exactly when the two contexts agree.
    pii = PIICipher(RING)
    for enc_ctx, dec_ctx in pairs:
        token = pii.encrypt("v", context=enc_ctx)
        if (enc_ctx or None) == (dec_ctx or None):
            assert pii.decrypt(token, context=dec_ctx) == "v"
        else:
            with pytest.raises(DecryptionError):
                pii.decrypt(token, context=dec_ctx)
