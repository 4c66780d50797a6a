"""BlindIndex: a keyed, truncated hash of a normalised value, for equality lookups
on encrypted columns (CipherSweet's blind indexes).

HMAC-SHA256 under a key derived from ``index_key`` with HKDF-SHA256 and the
label ``opskit.pii.blind-index.v1:<name>``, over
``len(context AAD) (8 bytes BE) || context AAD || normalised value (UTF-8)``,
truncated to ``bits``, in hex. Independent of the encryption keys.
"""

from __future__ import annotations

import hmac
import math
import secrets
from collections.abc import Callable
from hashlib import sha256

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from opskit.pii._context import Context, aad

__all__ = ["BlindIndex"]

_LABEL = b"opskit.pii.blind-index.v1:"


def _check_bits(bits: object) -> int:
    if type(bits) is not int or not 16 <= bits <= 256 or bits % 8:
        raise ValueError("bits is a multiple of 8 from 16 to 256")
    return bits


class BlindIndex:
    """A blind index named ``name`` (one per table column), ``bits`` long.

    ``index_key``: at least 32 random bytes (:meth:`generate_key`), kept apart
    from the encryption keys. ``normalize`` (say ``str.casefold``) runs before
    hashing, so equal-after-normalising values share an index. Choose ``bits``
    with :meth:`recommend_bits`: too many bits make the index a unique
    fingerprint of each value; too few make every lookup return many rows.
    """

    __slots__ = ("_hmac", "_n", "bits", "name", "normalize")

    def __init__(
        self,
        index_key: bytes,
        *,
        name: str,
        bits: int = 32,
        normalize: Callable[[str], str] | None = None,
    ) -> None:
        if not isinstance(index_key, bytes):
            raise TypeError("index_key is bytes (BlindIndex.generate_key())")
        if len(index_key) < 32:
            raise ValueError("index_key needs at least 32 random bytes")
        if not isinstance(name, str) or not name:
            raise ValueError("name is a non-empty str (the table and column, say)")
        self.bits = _check_bits(bits)
        self.name = name
        self.normalize = normalize
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=_LABEL + name.encode("utf-8")
        ).derive(index_key)
        self._hmac = hmac.new(derived, digestmod=sha256)
        self._n = bits // 8

    @staticmethod
    def generate_key() -> bytes:
        """32 random bytes for ``index_key``."""
        return secrets.token_bytes(32)

    def compute(self, value: str, context: Context = None) -> str:
        """The index of ``value`` (normalised first) under ``context``, as hex."""
        if not isinstance(value, str):
            raise TypeError("compute takes str")
        if self.normalize is not None:
            value = self.normalize(value)
            if not isinstance(value, str):
                raise TypeError("normalize must return str")
        ad = aad(context)
        mac = self._hmac.copy()
        mac.update(len(ad).to_bytes(8, "big"))
        mac.update(ad)
        mac.update(value.encode("utf-8"))
        return mac.digest()[: self._n].hex()

    @staticmethod
    def recommend_bits(rows: int, input_bits: float) -> int:
        """``bits`` for a column of ``rows`` values with ``input_bits`` of entropy each.

        Keeps the expected coincidences per index value
        ``C = rows / 2**min(bits, input_bits)`` within ``2 <= C <= sqrt(rows)``
        (CipherSweet's rule: at least two rows share an index, so the index
        never singles out one value; at most sqrt(rows) rows per lookup). The
        largest such ``bits`` is returned (fewest false positives), never more
        than the input has entropy for; 16 when no ``bits`` fits.
        """
        if type(rows) is not int or rows < 1:
            raise ValueError("rows is a positive integer")
        if isinstance(input_bits, bool) or not isinstance(input_bits, (int, float)):
            raise TypeError("input_bits is a number")
        if not input_bits > 0 or math.isinf(input_bits):
            raise ValueError("input_bits is a positive, finite number")
        root = math.sqrt(rows)
        fits = [
            bits for bits in range(16, 257, 8) if 2 <= rows / 2 ** min(bits, input_bits) <= root
        ]
        if not fits:
            return 16
        cap = max(16, 8 * math.ceil(input_bits / 8))  # beyond it, more bits change nothing
        within = [b for b in fits if b <= cap]
        return max(within) if within else min(fits)

    def __repr__(self) -> str:
        return f"BlindIndex(name={self.name!r}, bits={self.bits})"
