"""What the endpoints answer, shared by the ASGI and WSGI adapters (no I/O here).

- liveness: from the process alone, never a check: 200 ``{"status": "pass"}``;
- readiness: the ``readiness`` group (every check when no check declares it);
  503 ``{"status": "fail"}`` once the registry is draining;
- detail: every check; ``render(report)`` may replace the body.

Every answer is ``application/health+json`` with ``Cache-Control: max-age``
(``cache_ttl`` rounded down); ``HEAD`` gets the headers of ``GET``; any other
method 405 with ``Allow: GET, HEAD``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from opskit._core.http import PROBLEM_CONTENT_TYPE, problem_json
from opskit._core.telemetry import get_logger
from opskit.health._registry import HealthRegistry, _positive
from opskit.health._report import CONTENT_TYPE, HealthReport

__all__ = ["Answer", "Endpoints"]

_log = get_logger("health")
Kind = Literal["live", "ready", "detail"]
Answer = tuple[int, list[tuple[str, str]], bytes]
READINESS = "readiness"


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str).encode()


class Endpoints:
    def __init__(
        self,
        health: HealthRegistry,
        *,
        live: str | None,
        ready: str | None,
        detail: str | None,
        show_details: Literal["never", "always"] | Callable[[Any], bool],
        render: Callable[[HealthReport], Any] | None,
        refresh: float | None = None,
    ) -> None:
        if not isinstance(health, HealthRegistry):
            raise TypeError(f"HealthEndpoints needs a HealthRegistry, not {type(health).__name__}")
        if show_details not in ("never", "always") and not callable(show_details):
            raise ValueError(
                f"show_details must be 'never', 'always' or a callable, not {show_details!r}"
            )
        if render is not None and not callable(render):
            raise ValueError("render must be a callable(report) -> dict")
        self.refresh = None if refresh is None else _positive("refresh", refresh)
        self.health = health
        self.paths: dict[str, Kind] = {}
        for kind, path in (("live", live), ("ready", ready), ("detail", detail)):
            if path is None:
                continue
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"the {kind} path must start with '/', not {path!r}")
            if path in self.paths:
                raise ValueError(f"the path {path!r} is given twice")
            self.paths[path] = kind  # type: ignore[assignment]
        self.show_details = show_details
        self.render = render
        self.cache_control = f"max-age={int(health.cache_ttl)}"
        ident = {
            k: v
            for k, v in (
                ("version", health.version),
                ("releaseId", health.release_id),
                ("serviceId", health.service),
            )
            if v is not None
        }
        self._live = {False: _dumps({"status": "pass"}), True: _dumps({"status": "pass", **ident})}
        self._drained = {
            False: _dumps({"status": "fail"}),
            True: _dumps({"status": "fail", **ident, "output": "draining"}),
        }
        self._not_allowed = problem_json(405, detail="health endpoints answer GET and HEAD")

    def headers(self, content_type: str, length: int) -> list[tuple[str, str]]:
        return [
            ("Content-Type", content_type),
            ("Content-Length", str(length)),
            ("Cache-Control", self.cache_control),
        ]

    def details(self, request: Any) -> bool:
        policy = self.show_details
        if policy == "always":
            return True
        if policy == "never":
            return False
        try:
            return bool(policy(request))
        except Exception as exc:  # a broken policy shows nothing
            _log.warning("health.details_policy_failed", error=type(exc).__name__)
            return False

    def not_allowed(self) -> Answer:
        headers = self.headers(PROBLEM_CONTENT_TYPE, len(self._not_allowed))
        headers.append(("Allow", "GET, HEAD"))
        return 405, headers, self._not_allowed

    def group(self, kind: Kind) -> str | None:
        """The group a run for ``kind`` covers (liveness runs nothing)."""
        if kind == "ready" and READINESS in self.health.groups:
            return READINESS
        return None

    def live(self, detail: bool) -> Answer:
        body = self._live[detail]
        return 200, self.headers(CONTENT_TYPE, len(body)), body

    def drained(self, detail: bool) -> Answer:
        body = self._drained[detail]
        return 503, self.headers(CONTENT_TYPE, len(body)), body

    def report(self, kind: Kind, report: HealthReport, detail: bool) -> Answer:
        body: bytes | None = None
        if kind == "detail" and self.render is not None:
            try:
                body = _dumps(self.render(report))
            except Exception as exc:  # a broken render falls back to the standard body
                _log.error("health.render_failed", error=type(exc).__name__)
        if body is None:
            body = report.body(detail)
        return report.http_status, self.headers(CONTENT_TYPE, len(body)), body
