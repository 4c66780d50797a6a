"""Helpers for the opskit.pii tests: Tink handles from keyset JSON, leak scanning."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
from collections.abc import Iterable
from typing import Any

import tink
from tink import aead, secret_key_access

aead.register()


def tink_handle(keyset_json: str) -> tink.KeysetHandle:
    return tink.json_proto_keyset_format.parse(keyset_json, secret_key_access.TOKEN)


def tink_json(handle: tink.KeysetHandle) -> str:
    return str(tink.json_proto_keyset_format.serialize(handle, secret_key_access.TOKEN))


def tink_aead(keyset_json: str) -> aead.Aead:
    return tink_handle(keyset_json).primitive(aead.Aead)


def secret_forms(secret: bytes) -> list[str]:
    """Text forms a leaked secret could take: hex, base64 (both alphabets), raw."""
    forms = [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode().rstrip("="),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
    ]
    with contextlib.suppress(UnicodeDecodeError):
        forms.append(secret.decode())
    return forms


def assert_no_leak(texts: Iterable[str], secrets: Iterable[bytes]) -> None:
    blob = "\n".join(texts)
    for secret in secrets:
        for form in secret_forms(secret):
            assert form not in blob, "a secret appeared in the scanned text"


def key_bytes(keyring_json: str) -> list[bytes]:
    return [base64.b64decode(v) for v in json.loads(keyring_json)["keys"].values()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kms_client(endpoint: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "kms",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, **config),
    )
