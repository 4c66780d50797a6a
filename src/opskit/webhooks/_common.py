"""What every scheme shares: limits, bounded header reads, timestamps, secrets, MACs."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence
from typing import Any

from opskit._core.http import Headers
from opskit._core.telemetry import get_logger
from opskit.webhooks._errors import MalformedHeader, MissingHeader

__all__ = ["MAX_HEADER_BYTES", "MAX_SIGNATURES"]

#: At most this many characters of one header are looked at; more is malformed.
MAX_HEADER_BYTES = 8192
#: At most this many signatures in one header; more is malformed.
MAX_SIGNATURES = 16
#: How long ids are kept when there is no timestamp window (``tolerance=None``).
DEFAULT_REPLAY_WINDOW = 86400.0
_MAX_TIMESTAMP_DIGITS = 15
_MAX_ID_CHARS = 200
#: All that is stripped around a header value: HTTP's optional whitespace (RFC 9110
#: OWS), SP and HTAB. Any other character, whitespace or not, stays and is compared.
_OWS = " \t"

_log = get_logger("webhooks")

_c_hmac_new: Any
try:  # OpenSSL's HMAC object without the pure-Python wrapper: a third cheaper per copy.
    from _hashlib import hmac_new as _c_hmac_new
except ImportError:  # pragma: no cover - CPython without OpenSSL, or another runtime
    _c_hmac_new = None


def _new_mac(key: bytes, algorithm: str) -> Any:
    """A keyed HMAC object to ``.copy()`` per message (copying skips the key setup)."""
    if _c_hmac_new is not None:
        try:
            return _c_hmac_new(key, digestmod=algorithm)
        except (ValueError, TypeError):  # pragma: no cover - algorithm unknown to OpenSSL
            pass
    return hmac.new(key, digestmod=algorithm)


_TRANS_36 = bytes(x ^ 0x36 for x in range(256))
_TRANS_5C = bytes(x ^ 0x5C for x in range(256))


def _hmac_pads(key: bytes, algorithm: str) -> tuple[Any, Any]:
    """HMAC's inner and outer hash states after the padded key (RFC 2104).

    ``outer(inner.copy() + msg)`` is exactly ``hmac.new(key, msg, algorithm)``
    (a test checks it against :mod:`hmac`); copying two plain hash states is
    cheaper than copying an HMAC context, which matters on the fast paths.
    """
    block = hashlib.new(algorithm).block_size
    if len(key) > block:
        key = hashlib.new(algorithm, key).digest()
    key = key.ljust(block, b"\0")
    return (
        hashlib.new(algorithm, key.translate(_TRANS_36)),
        hashlib.new(algorithm, key.translate(_TRANS_5C)),
    )


_b64encode = binascii.b2a_base64


def _mac_digest(mac: Any, data: bytes) -> bytes:
    h = mac.copy()
    h.update(data)
    return bytes(h.digest())


def _header(headers: Any, lname: str, tname: str, scheme: str) -> str | None:
    """One header value (bounded), from a plain dict or a :class:`Headers`."""
    if type(headers) is dict:
        value = headers.get(lname)
        if value is None:
            value = headers.get(tname)
            if value is None:
                for k, v in headers.items():
                    if isinstance(k, bytes):
                        k = k.decode("latin-1")
                    if isinstance(k, str) and k.lower() == lname:
                        value = v
                        break
    else:
        value = headers.get(lname)
    if value is None:
        return None
    if not isinstance(value, str):
        if isinstance(value, bytes | bytearray):
            value = bytes(value).decode("latin-1")
        else:
            raise MalformedHeader(tname, "not a string", scheme=scheme)
    if len(value) > MAX_HEADER_BYTES:
        raise MalformedHeader(tname, f"longer than {MAX_HEADER_BYTES} bytes", scheme=scheme)
    return value


def _headers(headers: Any) -> Any:
    return headers if type(headers) is dict or isinstance(headers, Headers) else Headers.of(headers)


def _required(headers: Any, lname: str, tname: str, scheme: str) -> str:
    value = _header(headers, lname, tname, scheme)
    if not value:
        raise MissingHeader(tname, scheme=scheme)
    return value


def _timestamp(value: str, header: str, scheme: str) -> int:
    """The value as an int if it is only ASCII digits (nothing around them, not even OWS)."""
    if not (0 < len(value) <= _MAX_TIMESTAMP_DIGITS and value.isascii() and value.isdigit()):
        raise MalformedHeader(header, "timestamp is not a decimal integer", scheme=scheme)
    return int(value)


def _ascii(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def _body(body: Any) -> bytes:
    if type(body) is bytes:
        return body
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise TypeError(
        "webhooks are verified over the raw body bytes; pass the bytes you received, "
        f"not {type(body).__name__}"
    )


def _secret_bytes(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes | bytearray):
        key = bytes(secret)
    elif isinstance(secret, str):
        key = secret.encode("utf-8")
    else:
        raise TypeError("secrets are str or bytes")
    if not key:
        raise ValueError("a secret may not be empty")
    return key


def _secret_list(secrets: Any, what: str = "secrets") -> list[Any]:
    if isinstance(secrets, str | bytes):
        secrets = [secrets]
    items = list(secrets)
    if not items:
        raise ValueError(f"{what} may not be empty: give at least one")
    return items


def _any_match(expected: Sequence[bytes], provided: Sequence[bytes]) -> bool:
    """Compare every candidate in constant time; no early exit."""
    ok = False
    for e in expected:
        for p in provided:
            ok |= hmac.compare_digest(e, p)
    return ok


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()


def _env_list(var: str) -> list[str]:
    raw = os.environ.get(var)
    if raw is None:
        raise ValueError(f"environment variable {var} is not set")
    items = [s.strip() for s in raw.split(",") if s.strip()]
    if not items:
        raise ValueError(f"environment variable {var} holds no secret")
    return items
