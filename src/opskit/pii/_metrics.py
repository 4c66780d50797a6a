"""``opskit_pii_operations_total{op,key_id}`` and the per-key nonce budget.

Counts are plain integers (no lock, no Prometheus call on the hot path), read
by one scrape-time source per registry: every cipher on a registry adds to the
same counts, so two ciphers never publish the same series twice. Labels are
bounded: ``op`` is encrypt, decrypt or rotate; ``key_id`` the decimal key id
(keys are few) or ``legacy``. Envelope ciphers add
``opskit_pii_key_wrapper_calls_total{op,outcome}`` (wrap/unwrap; ok, rejected, error).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry

from opskit._core.telemetry import Metric, get_logger, publish

__all__ = ["Ops", "encryptions", "note_encryption", "ops_for"]

log = get_logger("pii")

_HELP = "opskit.pii operations, by operation and key id."
_KMS_HELP = "Envelope key wrapper (KMS) calls, by operation (wrap, unwrap) and outcome."


class Ops:
    """The operation counts of one registry: ``counts[(op, key_label)]``."""

    __slots__ = ("__weakref__", "counts", "kms", "publication")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.kms: dict[tuple[str, str], int] = {}
        self.publication = publish(self._metrics, registry)

    def _metrics(self) -> Iterable[Metric]:
        for (op, key_id), n in list(self.counts.items()):
            yield Metric("opskit_pii_operations_total", "counter", _HELP, n,
                         {"op": op, "key_id": key_id})  # fmt: skip
        for (op, outcome), n in list(self.kms.items()):
            yield Metric("opskit_pii_key_wrapper_calls_total", "counter", _KMS_HELP, n,
                         {"op": op, "outcome": outcome})  # fmt: skip


_ops: weakref.WeakKeyDictionary[CollectorRegistry, Ops] = weakref.WeakKeyDictionary()
_ops_lock = threading.Lock()


def ops_for(registry: CollectorRegistry | None) -> Ops:
    """The shared counts of ``registry`` (the global registry when ``None``)."""
    reg = REGISTRY if registry is None else registry
    with _ops_lock:
        ops = _ops.get(reg)
        if ops is None:
            ops = _ops[reg] = Ops(reg)
        return ops


# Encryptions per key in this process, keyed by (key id, key fingerprint) so two
# keyrings that happen to share an id never share a budget.
_encryptions: dict[tuple[int, bytes], int] = {}
_warned: set[tuple[int, bytes]] = set()
_warn_lock = threading.Lock()


def note_encryption(slot: tuple[int, bytes], warn_at: int) -> None:
    """Count one encryption under ``slot``'s key; warn once past ``warn_at``."""
    n = _encryptions.get(slot, 0) + 1
    _encryptions[slot] = n
    if n > warn_at and slot not in _warned:
        with _warn_lock:
            if slot in _warned:
                return
            _warned.add(slot)
        log.warning("pii.key_nearing_limit", key_id=slot[0], encryptions=n, warn_at=warn_at)


def encryptions(slot: tuple[int, bytes]) -> int:
    """Encryptions counted under ``slot``'s key in this process."""
    return _encryptions.get(slot, 0)
