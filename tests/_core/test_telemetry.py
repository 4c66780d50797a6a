from __future__ import annotations

import structlog
from prometheus_client import CollectorRegistry, generate_latest

from opskit._core.telemetry import Metric, get_logger, publish


def _source(name: str, calls: list[int]):  # type: ignore[no-untyped-def]
    def collect():  # type: ignore[no-untyped-def]
        yield Metric("opskit_demo_calls_total", "counter", "Calls.", calls[0], {"name": name})
        yield Metric("opskit_demo_state", "gauge", "State.", 1, {"name": name})

    return collect


def test_counters_are_read_at_scrape_time() -> None:
    reg = CollectorRegistry()
    calls = [0]
    publish(_source("a", calls), reg)
    assert reg.get_sample_value("opskit_demo_calls_total", {"name": "a"}) == 0
    calls[0] += 41
    calls[0] += 1
    assert reg.get_sample_value("opskit_demo_calls_total", {"name": "a"}) == 42
    assert reg.get_sample_value("opskit_demo_state", {"name": "a"}) == 1


def test_two_instances_share_names_without_duplicate_errors_and_can_be_removed() -> None:
    reg = CollectorRegistry()
    a = publish(_source("a", [1]), reg)
    b = publish(_source("b", [2]), reg)
    text = generate_latest(reg).decode()
    assert text.count("# TYPE opskit_demo_calls_total counter") == 1
    assert 'opskit_demo_calls_total{name="a"} 1.0' in text
    assert 'opskit_demo_calls_total{name="b"} 2.0' in text
    a.remove()
    a.remove()  # idempotent
    assert not a.active and b.active
    assert reg.get_sample_value("opskit_demo_calls_total", {"name": "a"}) is None
    assert reg.get_sample_value("opskit_demo_calls_total", {"name": "b"}) == 2


def test_separate_registries_are_separate() -> None:
    r1, r2 = CollectorRegistry(), CollectorRegistry()
    publish(_source("x", [7]), r1)
    assert r1.get_sample_value("opskit_demo_calls_total", {"name": "x"}) == 7
    assert r2.get_sample_value("opskit_demo_calls_total", {"name": "x"}) is None


def test_logger_is_named_after_the_module() -> None:
    with structlog.testing.capture_logs() as logs:
        get_logger("breaker").warning("breaker.opened", name="payments")
    assert logs == [
        {"event": "breaker.opened", "name": "payments", "logger": "opskit.breaker",
         "log_level": "warning"}
    ]  # fmt: skip
