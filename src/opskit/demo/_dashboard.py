"""The demo's front page: a live dashboard, and the JSON endpoint it refreshes from.

``GET /`` is a plain HTML/JS page (``static/dashboard.html``, no build step,
nothing fetched from elsewhere). It polls ``GET /ops/state.json`` each second
and keeps the last minutes of it for small charts. The document holds every
demo breaker's state and calls, each limiter's decisions and the caller's
headroom, retry outcomes, webhook verdicts, tenancy outcomes, pii operations, each
http client's calls and attempts by outcome
and the health report, read from the demo's ``CollectorRegistry`` (what
``/metrics`` serves), the rate limiters (a peek, which consumes nothing), the
health endpoint (called in process) and the status codes of each part's
answers.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from opskit._core.asgi import ASGIApp, Message, Receive, Scope, Send, send_response
from opskit._core.clock import Clock, resolve_clock

if TYPE_CHECKING:
    from opskit.demo._app import Part

__all__ = ["REFRESH_SECONDS", "STATE_PATH", "Dashboard"]

STATE_PATH = "/ops/state.json"
REFRESH_SECONDS = 1.0


def _page_template() -> str:
    return resources.files("opskit.demo").joinpath("static/dashboard.html").read_text("utf-8")


class Dashboard:
    """Counts the answers of each part, and builds the page and the state document."""

    def __init__(
        self, parts: Sequence[Part], registry: CollectorRegistry, clock: Clock | None = None
    ) -> None:
        self.clock = resolve_clock(clock)
        self.parts = list(parts)
        self.registry = registry
        #: prefix -> status code -> answers sent by that part
        self.statuses: dict[str, dict[str, int]] = {p.prefix: {} for p in self.parts}
        self.started = self.clock.monotonic()
        #: the demo retry policy's outcomes, read from /retry/flaky's answers (the part
        #: builds a policy per request and closes it, so its metrics do not stay)
        self.retry = {"first_try": 0, "recovered": 0, "gave_up": 0}

    # -- wrapping the parts -----------------------------------------------------------

    def observe(self, prefix: str, app: ASGIApp) -> ASGIApp:
        """``app``, counting the status code of each response it starts."""
        counts = self.statuses.setdefault(prefix, {})

        async def observed(scope: Scope, receive: Receive, send: Send) -> None:
            status = 0
            body: list[bytes] = []

            async def counting_send(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    code = str(status)
                    counts[code] = counts.get(code, 0) + 1
                elif message["type"] == "http.response.body" and sum(map(len, body)) < 4096:
                    body.append(message.get("body", b""))
                await send(message)

            await app(scope, receive, counting_send)
            if scope.get("path") == "/retry/flaky":
                self._retry_outcome(status, b"".join(body))

        return observed

    def _retry_outcome(self, status: int, body: bytes) -> None:
        if status == 503:
            self.retry["gave_up"] += 1
        elif status == 200:
            try:
                attempts = json.loads(body).get("attempts")
            except (ValueError, AttributeError):
                return
            self.retry["first_try" if attempts == 1 else "recovered"] += 1

    # -- the page ---------------------------------------------------------------------

    def page(self, version: str) -> bytes:
        rows = "".join(
            f"<li><a href='{html.escape(p.prefix)}'>{html.escape(p.prefix)}</a> "
            f"&mdash; {html.escape(p.title)}"
            + "".join(f"<br><code>{html.escape(m)} {html.escape(u)}</code>" for m, u, _ in p.checks)
            + "</li>"
            for p in self.parts
        )
        text = (
            _page_template()
            .replace("{{version}}", html.escape(version))
            .replace("{{parts}}", rows)
            .replace("{{state_path}}", STATE_PATH)
            .replace("{{refresh_ms}}", str(int(REFRESH_SECONDS * 1000)))
        )
        return text.encode()

    # -- the state document -----------------------------------------------------------

    def _samples(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in self.registry.collect():
            for s in family.samples:
                if s.name.startswith("opskit_"):
                    out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
        return out

    def _headroom(self, client_ip: str | None) -> dict[str, dict[str, Any]]:
        """Per limiter of the demo's rate-limit middleware: what the caller has left."""
        out: dict[str, dict[str, Any]] = {}
        if client_ip is None:
            return out
        for part in self.parts:
            core = getattr(part.app, "core", None)
            for limiter in getattr(core, "limiters", []):
                peek = getattr(limiter, "peek", None)
                if peek is None:
                    continue
                # The demo's two rules are keyed by IP (ratelimit's "ip:" key), the API one
                # only when no X-API-Key is sent: the page sends none.
                d = peek("ip:" + client_ip)  # what one more hit would get, not counted
                out[limiter.name] = {"limit": d.limit,
                                     "remaining": d.remaining + 1 if d.allowed else 0,
                                     "retry_after": round(d.retry_after, 1)}  # fmt: skip
        return out

    async def _health(self) -> dict[str, Any] | None:
        """The health+json report of the demo's ``/health``, asked in process."""
        part = next((p for p in self.parts if p.prefix == "/health"), None)
        if part is None:
            return None
        status, body = await _call(part.app, "GET", "/health")
        try:
            doc: dict[str, Any] = json.loads(body)
        except ValueError:
            return {"status": "fail", "http_status": status}
        checks = {
            key.split(":")[0]: (entries[0].get("status", "?") if entries else "?")
            for key, entries in doc.get("checks", {}).items()
        }
        return {"status": doc.get("status"), "http_status": status, "checks": checks}

    async def state(self, client_ip: str | None) -> dict[str, Any]:
        samples = self._samples()

        def by(name: str, key: str, value_label: str) -> dict[str, dict[str, float]]:
            out: dict[str, dict[str, float]] = {}
            for labels, value in samples.get(name, []):
                out.setdefault(labels.get(key, ""), {})[labels.get(value_label, "")] = value
            return out

        breakers = []
        states = by("opskit_breaker_state", "name", "state")
        calls = by("opskit_breaker_calls_total", "name", "outcome")
        for name, flags in sorted(states.items()):
            state = next((s for s, v in flags.items() if v == 1), "unknown")
            breakers.append({"name": name, "state": state, "calls": calls.get(name, {})})
        headroom = self._headroom(client_ip)
        http_calls = by("opskit_http_requests_total", "client", "outcome")
        attempts = by("opskit_http_attempts_total", "client", "outcome")
        limiters = [
            {"name": name, "decisions": decisions, "headroom": headroom.get(name)}
            for name, decisions in sorted(
                by("opskit_ratelimit_decisions_total", "name", "decision").items()
            )
        ]
        return {
            "time": self.clock.time(),  # the charts' x axis: wall time, read through the clock
            "uptime": round(self.clock.monotonic() - self.started, 1),
            "refresh_seconds": REFRESH_SECONDS,
            "breakers": breakers,
            "limiters": limiters,
            "retry": dict(self.retry),
            "webhooks": by("opskit_webhook_verifications_total", "scheme", "result"),
            "tenancy": by("opskit_tenancy_requests_total", "", "outcome").get("", {}),
            "pii": by("opskit_pii_operations_total", "op", "key_id"),
            "http": {
                client: {"calls": outcomes, "attempts": attempts.get(client, {})}
                for client, outcomes in sorted(http_calls.items())
            },
            "health": await self._health(),
            "statuses": self.statuses,
        }

    async def serve_state(self, scope: Scope, send: Send) -> None:
        client = scope.get("client")
        doc = await self.state(client[0] if client else None)
        await send_response(
            send, 200, json.dumps(doc).encode(), content_type="application/json",
            headers=[("Cache-Control", "no-store")],
        )  # fmt: skip


async def _call(app: ASGIApp, method: str, path: str) -> tuple[int, bytes]:
    """One in-process request to ``app``: its status and body."""
    status = 0
    chunks: list[bytes] = []
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    scope: Scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
                    "query_string": b"", "headers": [], "client": ("127.0.0.1", 0),
                    "root_path": "", "scheme": "http", "http_version": "1.1",
                    "asgi": {"version": "3.0"}}  # fmt: skip
    await app(scope, receive, send)
    return status, b"".join(chunks)
