"""opskit.pii: AES-256-GCM field encryption with key ids, rotation, context binding,
envelope keys, blind indexes, log redaction and migration from older formats.

Speaks Tink's formats (cleartext JSON keysets, the AEAD wire format with the
TINK prefix, the KMS envelope format), so other languages read what it writes.
"""

from __future__ import annotations

from opskit.pii._blind import BlindIndex
from opskit.pii._cipher import TOKEN_MARKER, PIICipher
from opskit.pii._envelope import ENVELOPE_MARKER, EnvelopeCipher
from opskit.pii._errors import (
    DecryptionError,
    KeyNotFound,
    KeyringError,
    KeyWrapError,
    MalformedToken,
    PIIError,
)
from opskit.pii._kek import KeyWrapper, LocalKEK
from opskit.pii._keyring import Keyring
from opskit.pii._legacy import LegacyFernet, LegacyGCM, LegacyReader
from opskit.pii._redact import Redacted, RedactingFilter, redact_processor, redact_text
from opskit.pii.aws import AwsKmsKEK

__all__ = [
    "Keyring",
    "PIICipher",
    "TOKEN_MARKER",
    "EnvelopeCipher",
    "ENVELOPE_MARKER",
    "KeyWrapper",
    "LocalKEK",
    "AwsKmsKEK",
    "BlindIndex",
    "LegacyGCM",
    "LegacyFernet",
    "LegacyReader",
    "Redacted",
    "redact_processor",
    "RedactingFilter",
    "redact_text",
    "PIIError",
    "DecryptionError",
    "MalformedToken",
    "KeyNotFound",
    "KeyringError",
    "KeyWrapError",
]
