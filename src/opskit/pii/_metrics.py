"""``opskit_pii_operations_total{op,key_id}`` and the per-key nonce budget.

Counts are plain integers (no lock, no Prometheus call on the hot path), read
by one scrape-time source per registry: every cipher on a registry adds to the
same counts, so two ciphers never publish the same series twice. Labels are
bounded: ``op`` is encrypt, decrypt or rotate; ``key_id`` the decimal key id
(keys are few) or ``legacy``. Envelope ciphers add
``opskit_pii_key_wrapper_calls_total{op,outcome}`` (wrap/unwrap; ok, rejected, error).
Every cipher adds ``opskit_pii_decrypt_failures_total{reason}``: decrypt, decrypt_bytes
and rotate failures by :data:`FAILURE_REASONS` (never a key id: a token's key id is
attacker-controlled).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry

from opskit._core.telemetry import Metric, get_logger, publish
from opskit.pii._errors import DecryptionError, KeyNotFound, MalformedToken

__all__ = [
    "FAILURE_REASONS",
    "Ops",
    "budget_cell",
    "encryptions",
    "ops_for",
    "warn_nearing_limit",
]

log = get_logger("pii")

_HELP = "opskit.pii operations, by operation and key id."
_KMS_HELP = "Envelope key wrapper (KMS) calls, by operation (wrap, unwrap) and outcome."
_FAIL_HELP = "Decryptions that failed, by reason (malformed, key_not_found, decryption_failed)."
# The bounded reasons of a failed decryption, by the typed error raised.
FAILURE_REASONS = ("malformed", "key_not_found", "decryption_failed")


class Ops:
    """The operation counts of one registry: one ``[n]`` cell per (op, key label)."""

    __slots__ = ("__weakref__", "_lock", "counts", "failures", "kms", "publication")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counts: dict[tuple[str, str], list[int]] = {}
        self.kms: dict[tuple[str, str], int] = {}
        self.failures: dict[str, list[int]] = {reason: [0] for reason in FAILURE_REASONS}
        self._lock = threading.Lock()
        self.publication = publish(self._metrics, registry)

    def cell(self, op: str, key_label: str) -> list[int]:
        """The counter cell of ``(op, key_label)``: callers add to ``cell[0]``."""
        cell = self.counts.get((op, key_label))
        if cell is None:
            with self._lock:
                cell = self.counts.setdefault((op, key_label), [0])
        return cell

    def failed(self, exc: BaseException) -> None:
        """Count a failed decryption by its error's reason (plain integers, no lock)."""
        if isinstance(exc, KeyNotFound):
            self.failures["key_not_found"][0] += 1
        elif isinstance(exc, MalformedToken):
            self.failures["malformed"][0] += 1
        elif isinstance(exc, DecryptionError):
            self.failures["decryption_failed"][0] += 1

    def _metrics(self) -> Iterable[Metric]:
        for (op, key_id), cell in list(self.counts.items()):
            yield Metric("opskit_pii_operations_total", "counter", _HELP, cell[0],
                         {"op": op, "key_id": key_id})  # fmt: skip
        for (op, outcome), n in list(self.kms.items()):
            yield Metric("opskit_pii_key_wrapper_calls_total", "counter", _KMS_HELP, n,
                         {"op": op, "outcome": outcome})  # fmt: skip
        for reason, cell in self.failures.items():
            yield Metric("opskit_pii_decrypt_failures_total", "counter", _FAIL_HELP, cell[0],
                         {"reason": reason})  # fmt: skip


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
# keyrings that happen to share an id never share a budget; one [n] cell each.
_budgets: dict[tuple[int, bytes], list[int]] = {}
_warned: set[tuple[int, bytes]] = set()
_lock = threading.Lock()


def budget_cell(slot: tuple[int, bytes]) -> list[int]:
    """The process-wide encryption counter cell of ``slot``'s key."""
    cell = _budgets.get(slot)
    if cell is None:
        with _lock:
            cell = _budgets.setdefault(slot, [0])
    return cell


def warn_nearing_limit(slot: tuple[int, bytes], n: int, warn_at: int) -> None:
    """The ``pii.key_nearing_limit`` warning, once per key and process."""
    if slot in _warned:
        return
    with _lock:
        if slot in _warned:
            return
        _warned.add(slot)
    log.warning("pii.key_nearing_limit", key_id=slot[0], encryptions=n, warn_at=warn_at)


def encryptions(slot: tuple[int, bytes]) -> int:
    """Encryptions counted under ``slot``'s key in this process."""
    cell = _budgets.get(slot)
    return 0 if cell is None else cell[0]
