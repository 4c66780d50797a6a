"""The demo part: its page's signed curl command really verifies, once."""

from __future__ import annotations

import html
import re
import shlex

import httpx
from prometheus_client import CollectorRegistry

from opskit.demo._app import build_app
from opskit.demo._webhooks import demo_part


async def test_demo_curl_command_verifies_once() -> None:
    registry = CollectorRegistry()
    app = build_app([demo_part(registry)], registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://demo") as c:
        page = await c.get("/webhooks")
        assert page.status_code == 200 and "whsec_" in page.text
        pre = re.search(r"<pre>(curl .*?/receive.*?)</pre>", page.text, re.S)
        assert pre is not None
        args = shlex.split(html.unescape(pre.group(1)))
        headers = dict(args[i + 1].split(": ", 1) for i, a in enumerate(args) if a == "-H")
        body = args[args.index("--data-binary") + 1].encode()
        first = await c.post("/webhooks/receive", content=body, headers=headers)
        assert first.status_code == 200 and first.json()["verified"] is True
        again = await c.post("/webhooks/receive", content=body, headers=headers)
        assert again.status_code == 401 and again.json()["reason"] == "replay_detected"
        selftest = await c.get("/webhooks/self-test")
        assert selftest.json()["ok"] is True
        metrics = (await c.get("/metrics")).text
        assert 'opskit_webhook_verifications_total{result="ok",scheme="demo"}' in metrics
