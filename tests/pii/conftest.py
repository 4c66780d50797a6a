"""A real KMS endpoint for the pii tests: moto's standalone server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pii._pii import free_port, kms_client


@pytest.fixture(scope="session")
def kms_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def kms(kms_endpoint: str) -> Any:
    return kms_client(kms_endpoint)


@pytest.fixture
def kms_key(kms: Any) -> str:
    return str(kms.create_key(Description="opskit pii test")["KeyMetadata"]["Arn"])
