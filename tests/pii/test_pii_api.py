"""The public API is pinned, and nothing secret reaches a log line."""

from __future__ import annotations

import logging

import pytest
import structlog

import opskit.pii
from opskit.pii import (
    DecryptionError,
    EnvelopeCipher,
    Keyring,
    KeyWrapError,
    LocalKEK,
    PIICipher,
    PIIError,
)
from pii._pii import assert_no_leak, key_bytes

ISSUE_NAMES = {
    "Keyring", "PIICipher", "EnvelopeCipher", "KeyWrapper", "LocalKEK", "AwsKmsKEK",
    "BlindIndex", "LegacyGCM", "LegacyFernet", "Redacted", "redact_processor", "RedactingFilter",
    "PIIError", "DecryptionError", "MalformedToken", "KeyNotFound", "KeyringError", "KeyWrapError",
}  # fmt: skip


def test_all_is_pinned() -> None:
    assert set(opskit.pii.__all__) >= ISSUE_NAMES
    assert set(opskit.pii.__all__) - ISSUE_NAMES == {
        "TOKEN_MARKER", "ENVELOPE_MARKER", "LegacyReader", "redact_text"}  # fmt: skip
    for name in opskit.pii.__all__:
        assert getattr(opskit.pii, name) is not None


class _Down:
    def wrap(self, dek: bytes) -> bytes:
        raise ConnectionError("down")

    def unwrap(self, wrapped: bytes) -> bytes:
        raise ConnectionError("down")


def test_no_key_or_plaintext_in_any_log_line(caplog: pytest.LogCaptureFixture) -> None:
    ring = Keyring.generate().add_key()
    secret = "+41 79 123 45 67"
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs:
        pii = PIICipher(ring, nonce_warn_at=1)
        token = pii.encrypt(secret, context={"tenant": "acme"})
        for _ in range(3):
            pii.encrypt(secret)
        with pytest.raises(DecryptionError):
            pii.decrypt(token, context={"tenant": "x"})
        pii.rotate(token, context={"tenant": "acme"})
        env = EnvelopeCipher(LocalKEK(ring), dek_reuse=(2, 60.0))
        env.decrypt(env.encrypt(secret))
        with pytest.raises(KeyWrapError):
            EnvelopeCipher(_Down()).encrypt(secret)
        with pytest.raises(PIIError):
            pii.decrypt(token[:-4])
    assert any(e["event"] == "pii.key_nearing_limit" for e in logs)
    texts = [repr(logs), caplog.text]
    assert_no_leak(texts, [*key_bytes(ring.to_json()), secret.encode()])
