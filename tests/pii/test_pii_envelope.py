"""EnvelopeCipher with LocalKEK and AwsKmsKEK (moto's real KMS HTTP server);
Tink's KmsEnvelopeAead reads what opskit writes, and back."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from tink import aead
from tink.integration import awskms

from opskit.pii import (
    ENVELOPE_MARKER,
    AwsKmsKEK,
    DecryptionError,
    EnvelopeCipher,
    KeyNotFound,
    Keyring,
    KeyWrapError,
    KeyWrapper,
    LocalKEK,
    MalformedToken,
    PIICipher,
)
from opskit.pii._context import aad
from opskit.testing import ManualClock
from pii._pii import assert_no_leak, free_port, key_bytes, kms_client, tink_aead

CTX = {"tenant": "acme", "field": "tax_id"}
TEMPLATE = aead.aead_key_templates.AES256_GCM


class Counting:
    """A KeyWrapper that delegates to a real one and counts the calls."""

    def __init__(self, inner: KeyWrapper) -> None:
        self.inner = inner
        self.wraps = 0
        self.unwraps = 0

    def wrap(self, dek: bytes) -> bytes:
        self.wraps += 1
        return self.inner.wrap(dek)

    def unwrap(self, wrapped: bytes) -> bytes:
        self.unwraps += 1
        return self.inner.unwrap(wrapped)


def test_local_round_trip_and_format() -> None:
    ring = Keyring.generate()
    env = EnvelopeCipher(LocalKEK(ring))
    token = env.encrypt("756.1234.5678.97", context=CTX)
    assert token.startswith(ENVELOPE_MARKER)
    assert env.decrypt(token, context=CTX) == "756.1234.5678.97"
    ct = env.encrypt_bytes(b"abc", context=CTX)
    n = int.from_bytes(ct[:4], "big")
    wrapped = ct[4 : 4 + n]
    assert n == 5 + 12 + 34 + 16  # Tink wire format of the 34-byte AesGcmKey proto
    dek_proto = PIICipher(ring).decrypt_bytes(wrapped)  # wrapped with empty associated data
    assert dek_proto[:2] == b"\x1a\x20" and len(dek_proto) == 34
    assert len(ct) == 4 + n + 12 + 3 + 16
    with pytest.raises(DecryptionError):
        env.decrypt(token, context={"tenant": "globex", "field": "tax_id"})
    with pytest.raises(MalformedToken):
        env.decrypt(PIICipher(ring).encrypt("x"))  # not an envelope token


def test_every_bit_flip_of_an_envelope_is_rejected() -> None:
    env = EnvelopeCipher(LocalKEK(Keyring.generate()), dek_cache=0)
    ct = env.encrypt_bytes(b"secret", context=CTX)
    for i in range(len(ct)):
        for bit in range(8):
            bad = bytearray(ct)
            bad[i] ^= 1 << bit
            with pytest.raises((MalformedToken, DecryptionError, KeyNotFound)):
                env.decrypt_bytes(bytes(bad), context=CTX)
    for n in range(len(ct)):
        with pytest.raises((MalformedToken, DecryptionError, KeyNotFound)):
            env.decrypt_bytes(ct[:n], context=CTX)


def test_tink_kms_envelope_reads_opskit_and_back_local_kek() -> None:
    ring = Keyring.generate()
    env = EnvelopeCipher(LocalKEK(ring))
    tink_env = aead.KmsEnvelopeAead(TEMPLATE, tink_aead(ring.to_tink_json()))
    ad = aad(CTX)
    ct = env.encrypt_bytes(b"4111 1111 1111 1111", context=CTX)
    assert tink_env.decrypt(ct, ad) == b"4111 1111 1111 1111"
    back = tink_env.encrypt(b"from tink", ad)
    assert env.decrypt_bytes(back, context=CTX) == b"from tink"
    with pytest.raises(DecryptionError):
        env.decrypt_bytes(back, context=None)


def test_without_reuse_one_wrap_per_encryption_and_one_unwrap_per_dek() -> None:
    kek = Counting(LocalKEK(Keyring.generate()))
    writer = EnvelopeCipher(kek)
    tokens = [writer.encrypt(f"v{i}") for i in range(5)]
    assert kek.wraps == 5
    reader = EnvelopeCipher(kek)
    for _ in range(3):
        assert [reader.decrypt(t) for t in tokens] == [f"v{i}" for i in range(5)]
    assert kek.unwraps == 5  # the LRU: one unwrap per distinct DEK


def test_dek_cache_is_bounded_and_can_be_off() -> None:
    kek = Counting(LocalKEK(Keyring.generate()))
    tokens = [EnvelopeCipher(kek).encrypt(f"v{i}") for i in range(4)]
    small = EnvelopeCipher(kek, dek_cache=2)
    for t in tokens * 2:
        small.decrypt(t)
    assert kek.unwraps == 8  # 4 DEKs cycling through 2 slots: every one evicted in time
    off = EnvelopeCipher(kek, dek_cache=0)
    kek.unwraps = 0
    off.decrypt(tokens[0])
    off.decrypt(tokens[0])
    assert kek.unwraps == 2


def test_dek_reuse_bounds_uses_and_age() -> None:
    clock = ManualClock()
    kek = Counting(LocalKEK(Keyring.generate()))
    env = EnvelopeCipher(kek, dek_reuse=(3, 60.0), clock=clock)
    headers = set()
    for _ in range(7):
        ct = env.encrypt_bytes(b"x")
        headers.add(ct[: 4 + int.from_bytes(ct[:4], "big")])
    assert kek.wraps == 3 and len(headers) == 3  # 3 + 3 + 1 messages
    clock.advance(59.9)
    env.encrypt_bytes(b"x")  # the third DEK had one use: a second one, still young
    assert kek.wraps == 3
    clock.advance(0.1)
    env.encrypt_bytes(b"x")  # 60 s old: not used again
    assert kek.wraps == 4
    with pytest.raises(ValueError, match="max_uses"):
        EnvelopeCipher(kek, dek_reuse=(0, 1.0))
    with pytest.raises(ValueError, match="max_uses"):
        EnvelopeCipher(kek, dek_reuse=(2**32 + 1, 1.0))
    with pytest.raises(ValueError, match="max_age"):
        EnvelopeCipher(kek, dek_reuse=(5, 0))


class Broken:
    def wrap(self, dek: bytes) -> bytes:
        raise ConnectionError("kms down")

    def unwrap(self, wrapped: bytes) -> bytes:
        raise ConnectionError("kms down")


def test_a_failing_wrapper_is_a_key_wrap_error_with_the_cause() -> None:
    env = EnvelopeCipher(Broken())
    with pytest.raises(KeyWrapError) as err:
        env.encrypt("x")
    assert isinstance(err.value.__cause__, ConnectionError)
    good = EnvelopeCipher(LocalKEK(Keyring.generate())).encrypt_bytes(b"x")
    with pytest.raises(KeyWrapError):
        env.decrypt_bytes(good)


def test_retired_kek_key_is_key_not_found_and_kek_rotation_keeps_old_deks() -> None:
    ring = Keyring.generate()
    old = EnvelopeCipher(LocalKEK(ring)).encrypt("x")
    ring2 = ring.add_key()
    ring2 = ring2.promote(ring2.newest_id)
    env = EnvelopeCipher(LocalKEK(ring2))
    assert env.decrypt(old) == "x"
    with pytest.raises(KeyNotFound):
        EnvelopeCipher(LocalKEK(ring2.retire(ring.primary_id))).decrypt(old)


# -- AWS KMS (moto's standalone server) ------------------------------------------------------


def test_aws_round_trip_through_a_real_kms_endpoint(kms: Any, kms_key: str) -> None:
    registry = CollectorRegistry()
    env = EnvelopeCipher(AwsKmsKEK(kms, kms_key), registry=registry)
    token = env.encrypt("alice@example.com", context=CTX)
    fresh = EnvelopeCipher(AwsKmsKEK(kms, "aws-kms://" + kms_key), registry=registry)
    assert fresh.decrypt(token, context=CTX) == "alice@example.com"
    with pytest.raises(DecryptionError):
        fresh.decrypt(token, context={"tenant": "globex"})
    calls = {
        (s.labels["op"], s.labels["outcome"]): s.value
        for f in registry.collect()
        for s in f.samples
        if s.name == "opskit_pii_key_wrapper_calls_total"
    }
    assert calls == {("wrap", "ok"): 1, ("unwrap", "ok"): 1}


def test_tink_awskms_envelope_reads_opskit_and_back(kms: Any, kms_key: str) -> None:
    uri = "aws-kms://" + kms_key
    remote = awskms.new_client(boto3_client=kms, key_uri=uri).get_aead(uri)
    tink_env = aead.KmsEnvelopeAead(TEMPLATE, remote)
    env = EnvelopeCipher(AwsKmsKEK(kms, kms_key))
    ad = aad(CTX)
    assert tink_env.decrypt(env.encrypt_bytes(b"from opskit", context=CTX), ad) == b"from opskit"
    assert env.decrypt_bytes(tink_env.encrypt(b"from tink", ad), context=CTX) == b"from tink"


def test_aws_dek_reuse_saves_kms_calls(kms: Any, kms_key: str) -> None:
    kek = Counting(AwsKmsKEK(kms, kms_key))
    env = EnvelopeCipher(kek, dek_reuse=(100, 300.0))
    tokens = [env.encrypt(f"v{i}") for i in range(10)]
    assert kek.wraps == 1
    reader = EnvelopeCipher(kek)
    assert [reader.decrypt(t) for t in tokens] == [f"v{i}" for i in range(10)]
    assert kek.unwraps == 1


def test_aws_tampered_wrapped_key_is_a_decryption_error(kms: Any, kms_key: str) -> None:
    env = EnvelopeCipher(AwsKmsKEK(kms, kms_key), dek_cache=0)
    ct = bytearray(env.encrypt_bytes(b"x"))
    ct[10] ^= 0x01
    with pytest.raises((DecryptionError, KeyWrapError)):
        env.decrypt_bytes(bytes(ct))


def test_aws_refused_call_is_a_key_wrap_error(kms: Any, kms_key: str) -> None:
    from botocore.exceptions import ClientError

    missing = kms_key[:-12] + "000000000000"  # no such key: KMS refuses (NotFoundException)
    env = EnvelopeCipher(AwsKmsKEK(kms, missing), dek_cache=0)
    with pytest.raises(KeyWrapError) as err:
        env.encrypt("y")
    assert isinstance(err.value.__cause__, ClientError)
    assert err.value.__cause__.response["Error"]["Code"] == "NotFoundException"
    token = EnvelopeCipher(AwsKmsKEK(kms, kms_key)).encrypt("x")
    with pytest.raises(KeyWrapError):  # moto answers AccessDenied for a key the blob is not under
        env.decrypt(token)


def test_aws_unreachable_kms_is_a_key_wrap_error() -> None:
    client = kms_client(f"http://127.0.0.1:{free_port()}", connect_timeout=1, read_timeout=1)
    arn = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    env = EnvelopeCipher(AwsKmsKEK(client, arn))
    with pytest.raises(KeyWrapError) as err:
        env.encrypt("x")
    assert err.value.__cause__ is not None
    assert str(err.value) == "KMS Encrypt failed"


def test_secrets_never_in_reprs_or_errors(kms: Any, kms_key: str) -> None:
    ring = Keyring.generate()
    local = EnvelopeCipher(LocalKEK(ring), dek_reuse=(10, 10.0))
    aws = EnvelopeCipher(AwsKmsKEK(kms, kms_key))
    texts = [repr(local), repr(aws), repr(local.kek), repr(aws.kek)]
    token = local.encrypt("super-secret-value", context=CTX)
    with pytest.raises(DecryptionError) as err:
        local.decrypt(token, context=None)
    texts += [str(err.value), repr(err.value)]
    assert_no_leak(texts, [*key_bytes(ring.to_json()), b"super-secret-value"])
    assert kms_key in repr(aws.kek)  # the ARN is not a secret


def test_aws_module_imports_without_boto3() -> None:
    code = (
        "import sys; sys.modules['botocore'] = None; sys.modules['botocore.exceptions'] = None\n"
        "from opskit.pii import AwsKmsKEK\n"
        "try:\n    AwsKmsKEK(object(), 'arn')\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ})  # fmt: skip
    assert "opskit[aws]" in out.stdout
    with pytest.raises(ValueError, match="ARN"):
        AwsKmsKEK(object(), "")


def test_dek_reuse_never_exceeds_max_uses_under_threads() -> None:
    import threading
    from collections import Counter

    kek = Counting(LocalKEK(Keyring.generate()))
    env = EnvelopeCipher(kek, dek_reuse=(7, 600.0))
    out: list[bytes] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [env.encrypt_bytes(b"x") for _ in range(50)]
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    uses = Counter(ct[: 4 + int.from_bytes(ct[:4], "big")] for ct in out)
    assert len(out) == 400 and max(uses.values()) <= 7
    assert kek.wraps == len(uses) >= 400 // 7
    assert all(env.decrypt_bytes(ct) == b"x" for ct in out)


def test_envelope_decrypt_failures_are_counted_once_by_reason() -> None:
    registry = CollectorRegistry()
    env = EnvelopeCipher(LocalKEK(Keyring.generate()), registry=registry)
    token = env.encrypt("alice@example.com", context=CTX)
    with pytest.raises(MalformedToken):
        env.decrypt("not a token")
    with pytest.raises(MalformedToken):
        env.decrypt_bytes(b"\x00\x00")
    with pytest.raises(DecryptionError):
        env.decrypt(token, context={"tenant": "globex"})  # decrypt_bytes inside: one count
    with pytest.raises(DecryptionError):
        env.decrypt_bytes(env.encrypt_bytes(b"x"), context=CTX)
    failures = {
        s.labels["reason"]: s.value
        for f in registry.collect()
        for s in f.samples
        if s.name == "opskit_pii_decrypt_failures_total"
    }
    assert failures == {"malformed": 2, "key_not_found": 0, "decryption_failed": 2}
