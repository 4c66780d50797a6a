"""BlindIndex: stable across processes, normalisation, context, sizing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opskit.pii import BlindIndex

KEY = bytes(range(32))


def test_stable_across_processes() -> None:
    here = BlindIndex(KEY, name="users.email", bits=64, normalize=str.casefold)
    code = (
        "from opskit.pii import BlindIndex\n"
        "i = BlindIndex(bytes(range(32)), name='users.email', bits=64, normalize=str.casefold)\n"
        "print(i.compute('Alice@Example.com', context={'tenant': 'acme'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == here.compute("alice@example.com", context={"tenant": "acme"})
    assert len(out.stdout.strip()) == 16


def test_pinned_vector() -> None:
    # HKDF-SHA256(KEY, info=label+name) then HMAC over len(aad) || aad || value.
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    derived = HKDF(hashes.SHA256(), 32, None, b"opskit.pii.blind-index.v1:email").derive(KEY)
    ad = b'{"tenant":"acme"}'
    want = hmac.new(derived, len(ad).to_bytes(8, "big") + ad + b"bob", hashlib.sha256).digest()
    index = BlindIndex(KEY, name="email", bits=128)
    assert index.compute("bob", context={"tenant": "acme"}) == want[:16].hex()


def test_normalisation_name_context_and_key_separate_values() -> None:
    idx = BlindIndex(KEY, name="email", bits=32, normalize=str.casefold)
    a = idx.compute("Alice@Example.com")
    assert a == idx.compute("ALICE@EXAMPLE.COM") and len(a) == 8
    assert a != BlindIndex(KEY, name="email", bits=32).compute("Alice@Example.com")
    assert BlindIndex(KEY, name="email").compute("X") != BlindIndex(KEY, name="email").compute("x")
    assert idx.compute("a@b.c", context={"tenant": "acme"}) != idx.compute(
        "a@b.c", context={"tenant": "globex"}
    )
    assert BlindIndex(KEY, name="email").compute("v") != BlindIndex(KEY, name="phone").compute("v")
    other = BlindIndex(BlindIndex.generate_key(), name="email")
    assert other.compute("v") != BlindIndex(KEY, name="email").compute("v")


@given(st.text(max_size=30), st.sampled_from(range(16, 257, 8)))
def test_length_and_prefix_property(value: str, bits: int) -> None:
    long = BlindIndex(KEY, name="f", bits=256).compute(value)
    short = BlindIndex(KEY, name="f", bits=bits).compute(value)
    assert len(short) == bits // 4 and long.startswith(short)


@pytest.mark.parametrize("bits", [8, 15, 17, 264, 0, 32.0, True])
def test_bad_bits(bits: object) -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        BlindIndex(KEY, name="x", bits=bits)  # type: ignore[arg-type]


def test_bad_key_and_value() -> None:
    with pytest.raises(ValueError, match="32"):
        BlindIndex(b"short", name="x")
    with pytest.raises(TypeError):
        BlindIndex("k" * 32, name="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        BlindIndex(KEY, name="x").compute(5)  # type: ignore[arg-type]
    assert "00010203" not in repr(BlindIndex(KEY, name="x"))


@given(st.integers(1, 10**15), st.integers(1, 300))
def test_recommend_bits_follows_the_rule(rows: int, input_bits: int) -> None:
    bits = BlindIndex.recommend_bits(rows, input_bits)
    assert 16 <= bits <= 256 and bits % 8 == 0
    fits = [b for b in range(16, 257, 8) if 2 <= rows / 2 ** min(b, input_bits) <= rows**0.5]
    if fits:
        assert bits in fits
    else:
        assert bits == 16


def test_recommend_bits_examples() -> None:
    assert BlindIndex.recommend_bits(rows=1_000_000, input_bits=40) == 16
    assert BlindIndex.recommend_bits(rows=10**9, input_bits=40) == 24
    assert BlindIndex.recommend_bits(rows=10**12, input_bits=40) == 32
    assert BlindIndex.recommend_bits(rows=100, input_bits=40) == 16  # nothing fits
    with pytest.raises(ValueError, match="rows"):
        BlindIndex.recommend_bits(rows=0, input_bits=40)
