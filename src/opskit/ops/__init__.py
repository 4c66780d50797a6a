"""opskit.ops: what opskit's metrics mean, ready to load.

:func:`rules_yaml` is a Prometheus rule file (per-instance recording rules and
alerts with ``severity``, ``summary`` and ``runbook``), its thresholds
:class:`Thresholds`; :func:`dashboard` is a Grafana dashboard (a row per
module, templated on ``job`` and ``instance``), built with Grafana's
grafana-foundation-sdk (the ``[ops]`` extra). ``opskit ops rules`` and
``opskit ops dashboard`` print them. docs/operations.md is the runbook.
"""

from __future__ import annotations

from typing import Any

from opskit.ops._config import ConfigError, Thresholds
from opskit.ops._families import FAMILIES, MODULES, Family
from opskit.ops._rules import Alert, alerts, rule_groups, rules_yaml

__all__ = [
    "Thresholds",
    "ConfigError",
    "rules_yaml",
    "rule_groups",
    "alerts",
    "Alert",
    "dashboard",
    "FAMILIES",
    "MODULES",
    "Family",
]


def dashboard(*, datasource: str = "prometheus", uid: str = "opskit") -> dict[str, Any]:
    """The Grafana dashboard as a JSON document (needs ``pip install 'opskit[ops]'``)."""
    from opskit.ops._dashboard import dashboard as build

    return build(datasource=datasource, uid=uid)
