"""``opskit health URL`` against a live server, as Docker HEALTHCHECK would run it."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest

from _servers import run_asgi
from health._helpers import closed_port
from opskit.health import CheckResult, Status
from opskit.health.asgi import HealthEndpoints

pytestmark = pytest.mark.timeout(60)


def opskit_health(*args: str) -> tuple[int, list[str]]:
    out = subprocess.run([sys.executable, "-m", "opskit.cli", "health", *args],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    return out.returncode, out.stdout.splitlines()


def test_cli_against_a_live_server(make_health: Any) -> None:
    h = make_health(cache_ttl=0, default_timeout=30)
    state = {"db": Status.PASS}
    release = threading.Event()
    h.add("db", lambda: CheckResult(state["db"]), groups={"readiness"})
    h.add("slow", lambda: release.wait(30), groups={"hang"})
    app = HealthEndpoints(h, detail="/health")
    try:
        with run_asgi(app) as base:
            code, lines = opskit_health(f"{base}/readyz", "--timeout", "10")
            assert code == 0 and len(lines) == 1
            assert lines[0].startswith(f"pass HTTP 200 from {base}/readyz in ")
            state["db"] = Status.WARN
            code, lines = opskit_health(f"{base}/readyz", "--timeout", "10")
            assert code == 0 and lines[0].startswith("warn HTTP 200")
            state["db"] = Status.FAIL
            code, lines = opskit_health(f"{base}/readyz", "--timeout", "10")
            assert code == 1 and lines[0].startswith("fail HTTP 503")
            secret = base.replace("http://", "http://ops:pa55@") + "/health?token=t0k"
            code, lines = opskit_health(secret, "--timeout", "0.5")  # /health runs "slow": hangs
            assert code == 1 and len(lines) == 1
            assert lines == [f"fail timeout: no answer within 0.5 s from {base}/health"]
            code, lines = opskit_health(f"{base}/livez", "--timeout", "10")
            assert code == 0 and lines[0].startswith("pass HTTP 200")
            code, lines = opskit_health(f"{base}/nowhere", "--timeout", "10")
            assert code == 1 and lines[0].startswith("fail HTTP 404")
    finally:
        release.set()


def test_cli_without_a_server_and_bad_urls() -> None:
    code, lines = opskit_health(f"http://127.0.0.1:{closed_port()}/livez")
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith("fail no answer (ConnectionRefusedError)")
    code, lines = opskit_health("ftp://u:p@files/x")
    assert code == 2 and lines == [
        "error: need an http(s) URL and a positive --timeout, not 'ftp://files/x'"
    ]
