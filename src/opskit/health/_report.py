"""A run's report and its ``application/health+json`` rendering.

The rendering follows draft-inadarei-api-health-check-06: lowercase
``status``; ``version``, ``releaseId``, ``serviceId``; ``output`` only when the
status is not pass; ``checks`` keyed ``"{name}:{measurement}"``, each an array
with one object per node (here always one). Fields without a value are
omitted, never ``null``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

from opskit.health._status import CheckResult, Status

__all__ = ["CONTENT_TYPE", "HealthReport", "iso_time"]

CONTENT_TYPE = "application/health+json"


def iso_time(epoch: float) -> str:
    """ISO 8601 in UTC with milliseconds: ``2026-12-01T18:21:56.123Z``."""
    stamp = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HealthReport:
    """The aggregated result of one run of a group of checks.

    ``status``: any ``FAIL`` entry (only critical checks produce one) makes it
    ``FAIL``; else any ``WARN`` makes it ``WARN``; else ``PASS``. ``checks`` maps
    each check's name to its entry, whose status already reflects ``critical``
    (a failing non-critical check reads ``WARN``).
    """

    __slots__ = (
        "_bodies",
        "_output",
        "checks",
        "group",
        "release_id",
        "service",
        "status",
        "time",
        "version",
    )

    def __init__(
        self,
        checks: Mapping[str, CheckResult],
        *,
        group: str | None = None,
        time: float | None = None,
        service: str | None = None,
        version: str | None = None,
        release_id: str | None = None,
        status: Status | None = None,
        output: str | None = None,
    ) -> None:
        self.checks: Mapping[str, CheckResult] = dict(checks)
        self.status: Status = (
            max((r.status for r in self.checks.values()), default=Status.PASS)
            if status is None
            else Status(status)
        )
        self._output = output
        self.group = group
        self.time = time
        self.service = service
        self.version = version
        self.release_id = release_id
        self._bodies: dict[bool, bytes] = {}

    @property
    def http_status(self) -> int:
        """503 when the status is ``FAIL``, else 200."""
        return 503 if self.status is Status.FAIL else 200

    @property
    def output(self) -> str | None:
        """Which checks are not passing, worst first (``"db: fail; stripe: warn"``)."""
        if self._output is not None:
            return self._output
        bad = sorted(
            ((name, r.status) for name, r in self.checks.items() if r.status is not Status.PASS),
            key=lambda item: (-item[1].rank, item[0]),
        )
        return "; ".join(f"{name}: {status.value}" for name, status in bad) or None

    def to_health_json(self, detail: bool = True) -> dict[str, Any]:
        """The health+json document; with ``detail=False`` only ``{"status": ...}``."""
        doc: dict[str, Any] = {"status": self.status.value}
        if not detail:
            return doc
        if self.version is not None:
            doc["version"] = self.version
        if self.release_id is not None:
            doc["releaseId"] = self.release_id
        if self.service is not None:
            doc["serviceId"] = self.service
        output = self.output
        if output is not None:
            doc["output"] = output
        if self.checks:
            doc["checks"] = {
                f"{name}:{result.measurement or 'responseTime'}": [_entry(result)]
                for name, result in self.checks.items()
            }
        return doc

    def body(self, detail: bool) -> bytes:
        """:meth:`to_health_json` as compact UTF-8 JSON, rendered once per report."""
        body = self._bodies.get(detail)
        if body is None:
            body = json.dumps(
                self.to_health_json(detail), separators=(",", ":"), ensure_ascii=False,
                default=str,
            ).encode()  # fmt: skip
            self._bodies[detail] = body
        return body

    def __repr__(self) -> str:
        return f"<HealthReport {self.status.value} group={self.group!r} checks={len(self.checks)}>"


def _entry(result: CheckResult) -> dict[str, Any]:
    entry: dict[str, Any] = {"status": result.status.value}
    if result.component_id is not None:
        entry["componentId"] = result.component_id
    if result.component_type is not None:
        entry["componentType"] = result.component_type
    if result.observed_value is not None:
        entry["observedValue"] = result.observed_value
        if result.observed_unit is not None:
            entry["observedUnit"] = result.observed_unit
    if result.time is not None:
        entry["time"] = iso_time(result.time)
    if result.status is not Status.PASS:
        output = result.output
        if result.message:
            output = f"{output}: {result.message}" if output else result.message
        if output:
            entry["output"] = output
    return entry
