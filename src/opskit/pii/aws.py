"""``AwsKmsKEK``: a KEK in AWS KMS, through a boto3 client (extra ``opskit[aws]``).

Calls ``Encrypt`` / ``Decrypt`` with no EncryptionContext, as Tink's ``awskms``
AEAD does for empty associated data, so Tink's ``KmsEnvelopeAead`` over
``aws-kms://<ARN>`` reads the data keys it wraps. Importable without boto3;
constructing one without it raises ``ImportError`` naming the extra.
"""

from __future__ import annotations

from typing import Any

from opskit.pii._errors import DecryptionError, KeyWrapError

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # pragma: no cover - exercised in a subprocess without boto3
    BotoCoreError = ClientError = None  # type: ignore[assignment,misc,unused-ignore]

__all__ = ["AwsKmsKEK"]

_URI_PREFIX = "aws-kms://"
# KMS answers these when the blob itself is wrong, not when KMS is unwell.
_BAD_CIPHERTEXT = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})


class AwsKmsKEK:
    """Wraps data keys with the KMS key ``key_arn`` (an ARN or an ``aws-kms://`` URI).

    ``client`` is a boto3 KMS client (``boto3.client("kms", ...)``). A blob KMS
    calls invalid is a :class:`DecryptionError`; any other failure (no route,
    throttling, access denied, disabled key) a :class:`KeyWrapError` with the
    botocore error chained.
    """

    __slots__ = ("client", "key_arn")

    def __init__(self, client: Any, key_arn: str) -> None:
        if ClientError is None:
            raise ImportError("AwsKmsKEK needs boto3: pip install 'opskit[aws]'")
        if not isinstance(key_arn, str) or not key_arn:
            raise ValueError("key_arn is the KMS key's ARN (or an aws-kms:// URI)")
        if key_arn.startswith(_URI_PREFIX):
            key_arn = key_arn[len(_URI_PREFIX) :]
        self.client = client
        self.key_arn = key_arn

    def wrap(self, dek: bytes) -> bytes:
        try:
            response = self.client.encrypt(KeyId=self.key_arn, Plaintext=dek)
            return bytes(response["CiphertextBlob"])
        except (BotoCoreError, ClientError) as exc:
            raise KeyWrapError("KMS Encrypt failed") from exc

    def unwrap(self, wrapped: bytes) -> bytes:
        try:
            response = self.client.decrypt(KeyId=self.key_arn, CiphertextBlob=wrapped)
            return bytes(response["Plaintext"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _BAD_CIPHERTEXT:
                raise DecryptionError() from None
            raise KeyWrapError("KMS Decrypt failed") from exc
        except BotoCoreError as exc:
            raise KeyWrapError("KMS Decrypt failed") from exc

    def __repr__(self) -> str:
        return f"AwsKmsKEK(key_arn={self.key_arn!r})"
