"""The thresholds of the generated alerts: defaults, a YAML file, command-line flags.

Each field belongs to a module (``breaker_open_for`` is ``breaker.open_for`` in
the YAML file and ``--breaker-open-for`` on the command line). docs/operations.md
gives the reason for every default.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opskit import OpskitError

__all__ = ["ConfigError", "Thresholds"]

_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


class ConfigError(OpskitError, ValueError):
    """A threshold file or flag that cannot be used; the message says which and why."""


def _duration(default: str, help_: str) -> Any:
    return field(default=default, metadata={"kind": "duration", "help": help_})


def _number(default: float, help_: str, *, ratio: bool = False) -> Any:
    return field(default=default, metadata={"kind": "ratio" if ratio else "number", "help": help_})


def _count(default: int, help_: str) -> Any:
    return field(default=default, metadata={"kind": "count", "help": help_})


@dataclass(frozen=True)
class Thresholds:
    """Every parameter of ``opskit ops rules``; the defaults are explained in the docs."""

    # breaker
    breaker_open_for: str = _duration("1m", "how long a breaker stays open before it alerts")
    breaker_flap_opens: int = _count(3, "openings from closed that count as flapping")
    breaker_flap_window: str = _duration("10m", "the window those openings are counted in")
    breaker_sole: tuple[str, ...] = field(
        default=(),
        metadata={"kind": "names",
                  "help": "breakers that are their dependency's only one: open is critical"},
    )  # fmt: skip
    breaker_store_errors: int = _count(2, "store errors in 5 minutes above which it alerts")
    # retry
    retry_exhausted_ratio: float = _number(
        0.1, "share of calls that give up (exhausted or deadline) before it alerts", ratio=True
    )
    retry_budget_for: str = _duration("5m", "how long the budget refuses retries before it alerts")
    # ratelimit
    ratelimit_store_errors: int = _count(2, "store errors in 5 minutes above which it alerts")
    ratelimit_spike_factor: float = _number(3.0, "429s now over the hour before, as a factor")
    ratelimit_spike_min_rate: float = _number(0.1, "429s per second below which no spike alerts")
    # webhooks
    webhooks_mismatch: int = _count(5, "signature mismatches in 5 minutes above which it alerts")
    webhooks_replay: int = _count(3, "replays detected in 5 minutes above which it alerts")
    # pii
    pii_nonce_budget: int = _count(
        2**30, "encryptions under one key (in pii_nonce_window) that mean rotate it"
    )
    pii_nonce_window: str = _duration("15d", "the window encryptions are counted in")
    pii_unwrap_failures: int = _count(0, "key unwrap failures in 5 minutes above which it alerts")
    pii_decrypt_failures: int = _count(0, "decryption failures in 5 minutes above which it alerts")
    # tenancy
    tenancy_lookup_failures: int = _count(2, "tenant lookup failures in 5 minutes (above: alert)")
    tenancy_unknown_ratio: float = _number(
        0.1, "share of requests naming an unknown tenant", ratio=True
    )
    tenancy_unknown_min_rate: float = _number(0.1, "unknown-tenant requests/s below: no alert")
    # health
    health_critical_for: str = _duration("2m", "a failing critical check alerts after this")
    health_degraded_for: str = _duration("10m", "a warning or non-critical failure after this")
    health_readiness_group: str = field(
        default="readiness", metadata={"kind": "name", "help": "the readiness group's name"}
    )
    health_readiness_for: str = _duration("2m", "readiness failing alerts after this")
    # http
    http_error_ratio: float = _number(0.1, "share of attempts that fail, per client", ratio=True)
    http_hedge_ratio: float = _number(0.2, "share of calls answered by a hedge", ratio=True)
    http_min_rate: float = _number(0.05, "attempts/s below which the ratios do not alert")
    # shared
    retry_min_rate: float = _number(0.05, "calls/s below which the retry ratio does not alert")
    telemetry_errors: int = _count(
        0, "failed log/metrics calls in 10 minutes above which it alerts"
    )
    runbook_base: str = field(
        default="docs/operations.md",
        metadata={
            "kind": "name",
            "help": "where docs/operations.md is published; #<alert> is appended",
        },
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check(f.name, f.metadata["kind"], getattr(self, f.name))

    @classmethod
    def from_mapping(cls, doc: Any) -> Thresholds:
        """From the nested YAML shape: ``{"breaker": {"open_for": "2m"}, ...}``."""
        if doc is None:
            return cls()
        if not isinstance(doc, Mapping):
            raise ConfigError("the threshold file must be a mapping of module -> settings")
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for module, settings in doc.items():
            if module == "runbook_base":
                values["runbook_base"] = settings
                continue
            if not isinstance(settings, Mapping):
                raise ConfigError(f"{module!s:.40}: expected a mapping of settings")
            for key, value in settings.items():
                name = f"{module}_{key}"
                if name not in known:
                    raise ConfigError(f"unknown setting {module!s:.40}.{key!s:.40}")
                values[name] = _coerce(name, known[name].metadata["kind"], value)
        return cls(**values)

    def replace(self, **changes: Any) -> Thresholds:
        return dataclasses.replace(self, **changes)


def _coerce(name: str, kind: str, value: Any) -> Any:
    if kind == "names":
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if isinstance(value, (list, tuple)):
            return tuple(value)
        raise ConfigError(f"{name}: a list of names")
    if kind in ("number", "ratio") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _check(name: str, kind: str, value: Any) -> None:
    if kind == "duration":
        if not isinstance(value, str) or not _DURATION.match(value):
            raise ConfigError(f"{name}: a Prometheus duration such as 90s, 2m or 1h")
    elif kind == "count":
        if type(value) is not int or value < 0:
            raise ConfigError(f"{name}: a whole number >= 0")
    elif kind in ("number", "ratio"):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise ConfigError(f"{name}: a finite number >= 0")
        if kind == "ratio" and not 0 < value <= 1:
            raise ConfigError(f"{name}: a ratio in (0, 1]")
    elif kind == "names":
        if not isinstance(value, tuple) or not all(
            isinstance(v, str) and re.fullmatch(r"[^\"\\\n]{1,200}", v) for v in value
        ):
            raise ConfigError(f"{name}: names without quotes, backslashes or newlines")
    elif kind == "name" and (
        not isinstance(value, str) or not re.fullmatch(r"[^\"\\\n]{1,500}", value)
    ):
        raise ConfigError(f"{name}: a string without quotes, backslashes or newlines")
