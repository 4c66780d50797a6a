"""The demo's live page in headless Chromium (one browser session), behind a real uvicorn.

It renders and shows each part's state; after a scripted failure of the demo
upstream the breaker tile shows ``open`` by the first refresh that started
after it; the page's buttons move the tiles. A screenshot is kept in
``build/test-artifacts/demo-dashboard.png`` (``OPSKIT_ARTIFACTS`` moves it).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from _redis import free_port
from ops._helpers import require_tool
from opskit.demo import build_app
from opskit.demo._dashboard import REFRESH_SECONDS, STATE_PATH
from opskit.demo._parts import default_parts
from opskit.ops import FAMILIES

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("OPSKIT_ARTIFACTS", ROOT / "build" / "test-artifacts"))
# Generous waits for a loaded 2-core machine: a wait ends as soon as its condition holds.
WAIT = 30.0


@pytest.fixture(scope="module")
def demo() -> Iterator[str]:
    registry = CollectorRegistry(auto_describe=True)
    app = build_app(default_parts(registry), registry)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:  # waiting for a real server to bind, not for time to pass
        assert thread.is_alive() and time.monotonic() < deadline, "demo did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = require_tool("chromium", "chromium")
    driver_path = require_tool("chromedriver", "chromium-driver")
    profile = tempfile.mkdtemp(prefix="opskit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1100", f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


def _updates(driver: Any) -> int:
    return int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-updates") or 0)


def _wait_updates(driver: Any, n: int) -> None:
    WebDriverWait(driver, WAIT, poll_frequency=0.05).until(lambda d: _updates(d) >= n)


def _text(driver: Any, css: str) -> str:
    """The element's text, read in one script (the page re-renders its tiles each refresh)."""
    return str(driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", css
    ))  # fmt: skip


def _attr(driver: Any, css: str, name: str) -> str:
    return str(driver.execute_script(
        "const e = document.querySelector(arguments[0]);"
        "return e ? e.getAttribute(arguments[1]) : '';", css, name
    ))  # fmt: skip


def test_live_page(demo: str, browser: Any) -> None:
    browser.get(demo + "/")
    _wait_updates(browser, 1)
    # It renders each part's state.
    assert browser.title == "opskit demo"
    for tile in ("breaker", "ratelimit", "retry", "webhooks", "health", "tenancy", "http"):
        assert browser.find_element(By.ID, f"tile-{tile}").is_displayed()
    payments = ".breaker[data-name='demo-payments']"
    assert _attr(browser, payments, "data-state") == "closed"
    assert _text(browser, "#health-status") == "pass"
    assert "3 of 3 left" in _text(browser, ".limiter[data-name='demo-login']")
    assert "/metrics" in browser.page_source and "/breaker/charge" in browser.page_source
    # Nothing is fetched from anywhere but the demo (the page works offline).
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert urls and all(u.startswith(demo) for u in urls), urls

    # A scripted failure of the upstream: the first refresh that starts after it shows open.
    for _ in range(3):
        assert _get(demo + "/breaker/charge?fail=1")[0] == 502
    seen = _updates(browser)
    # the refresh in flight may have started before the failure; the next one did not
    _wait_updates(browser, seen + 2)
    assert _attr(browser, payments, "data-state") == "open"
    assert "open" in _text(browser, payments + " .state")
    assert "failure 3" in _text(browser, payments)
    assert browser.execute_script("return REFRESH") == REFRESH_SECONDS * 1000

    # The page's buttons move the tiles.
    browser.find_element(By.CSS_SELECTOR, "button[data-action='burst-login']").click()
    WebDriverWait(browser, WAIT, poll_frequency=0.05).until(
        lambda d: "0 of 3 left" in _text(d, ".limiter[data-name='demo-login']")
    )
    assert "limited" in _text(browser, ".limiter[data-name='demo-login']")
    browser.find_element(By.CSS_SELECTOR, "button[data-action='break-db']").click()
    WebDriverWait(browser, WAIT, poll_frequency=0.05).until(
        lambda d: _text(d, "#health-status") == "fail"
    )
    assert "db fail" in _text(browser, "#health")
    browser.find_element(By.CSS_SELECTOR, "button[data-action='retry-gives-up']").click()
    WebDriverWait(browser, WAIT, poll_frequency=0.05).until(
        lambda d: _text(d, "#retry-gave-up") == "1 gave up"
    )
    browser.find_element(By.CSS_SELECTOR, "button[data-action='retry-recovers']").click()
    WebDriverWait(browser, WAIT, poll_frequency=0.05).until(
        lambda d: "recovered 1" in _text(d, "#retry")
    )
    browser.find_element(By.CSS_SELECTOR, "button[data-action='webhook-self-test']").click()
    WebDriverWait(browser, WAIT, poll_frequency=0.05).until(
        lambda d: "signature_mismatch 1" in _text(d, "#webhooks")
    )
    browser.find_element(By.CSS_SELECTOR, "button[data-action='tenant-unknown']").click()
    WebDriverWait(browser, WAIT, poll_frequency=0.05).until(
        lambda d: "unknown 1" in _text(d, "#tenancy")
    )
    assert _text(browser, "#http") == "no call yet"
    browser.find_element(By.CSS_SELECTOR, "button[data-action='http-recovers']").click()
    WebDriverWait(browser, WAIT, poll_frequency=0.05).until(
        lambda d: "retried 1" in _text(d, ".client[data-client='demo-upstream']")
    )
    assert "status 2" in _text(browser, ".client[data-client='demo-upstream']")  # two 503s
    assert "1 ok / 0 failed" in _text(browser, ".client[data-client='demo-upstream']")
    # the charts hold the refreshes seen so far
    assert int(_attr(browser, "#chart-breaker", "data-points")) >= 2
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-breaker polyline")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "demo-dashboard.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    browser.find_element(By.CSS_SELECTOR, "button[data-action='mend-db']").click()
    WebDriverWait(browser, WAIT, poll_frequency=0.05).until(
        lambda d: _text(d, "#health-status") == "pass"
    )

    # The demo's /metrics, every part exercised: each opskit family it serves is documented.
    status, body = _get(demo + "/metrics")
    assert status == 200
    served = {s.name for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}
    opskit = {n for n in served if n.startswith("opskit_")}
    assert opskit <= {f.name for f in FAMILIES}, sorted(opskit - {f.name for f in FAMILIES})
    assert len(opskit) >= 10
    doc = json.loads(_get(demo + STATE_PATH)[1])
    assert doc["statuses"]["/breaker"]["502"] >= 3
    assert doc["http"]["demo-upstream"]["calls"]["retried"] == 1
    assert doc["http"]["demo-upstream"]["attempts"] == {
        **dict.fromkeys(doc["http"]["demo-upstream"]["attempts"], 0),
        "status": 2,
        "ok": 1,
    }
