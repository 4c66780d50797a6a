"""The demo part: a token, a rotation, a redacted line; its self-test passes."""

from __future__ import annotations

import json

import httpx
from prometheus_client import CollectorRegistry

from opskit.demo._app import build_app
from opskit.demo._pii import PHONE, demo_part


async def test_demo_part_shows_a_token_a_rotation_and_a_redacted_line() -> None:
    registry = CollectorRegistry()
    app = build_app([demo_part(registry)], registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://demo") as c:
        page = (await c.get("/pii")).json()
        assert page["token"].startswith("pii1.") and page["decrypted"] == PHONE
        assert page["under_another_tenant"] == "DecryptionError"
        assert page["rotation"]["needs_rotation_before"] is True
        assert page["rotation"]["needs_rotation_after"] is False
        line = json.loads(page["redacted_log_line"])
        assert line["email"] == "***" and PHONE not in line["event"] and "***" in line["event"]
        assert line["note"] == "paid with ***"
        assert (await c.get("/pii/self-test")).json() == {"ok": True}
        assert (await c.get("/pii/nowhere")).status_code == 404
        metrics = (await c.get("/metrics")).text
        assert 'opskit_pii_operations_total{key_id="' in metrics and 'op="rotate"' in metrics
