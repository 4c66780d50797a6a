"""A failing log sink or metrics source is counted, warned about once, and never raised."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from _telemetry import SINKS, broken_logging, log_errors
from opskit._core import telemetry
from opskit._core.telemetry import Metric, get_logger, publish


@pytest.mark.parametrize("sink", SINKS)
def test_a_broken_sink_is_counted_not_raised(sink: str) -> None:
    log = get_logger("retry")
    before = log_errors()
    with broken_logging(sink):
        assert log.warning("retry.exhausted", name="x") is None
        assert log.bind(name="x").info("retry.scheduled") is None
        try:
            raise KeyError("k")
        except KeyError:
            assert log.exception("retry.failed") is None
    assert log_errors() == before + 3


def test_the_first_failure_warns_once_on_stderr_without_the_message(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telemetry, "_warned", False)
    with broken_logging("raising_processor"):
        get_logger("breaker").warning("breaker.opened")
        get_logger("breaker").warning("breaker.opened")
    err = capsys.readouterr().err
    assert err.count("opskit: a log call failed (RuntimeError)") == 1
    assert "opskit_telemetry_errors_total" in err
    assert "log shipper" not in err  # the sink's message may hold anything: never echoed


def test_a_raising_metrics_source_is_skipped_and_counted() -> None:
    reg = CollectorRegistry()

    def broken():  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")
        yield  # pragma: no cover

    def good():  # type: ignore[no-untyped-def]
        yield Metric("opskit_demo_calls_total", "counter", "Calls.", 5, {"name": "g"})

    publish(broken, reg)
    publish(good, reg)
    before = telemetry.telemetry_errors()["metrics"]
    text = generate_latest(reg).decode()
    assert 'opskit_demo_calls_total{name="g"} 5.0' in text
    assert telemetry.telemetry_errors()["metrics"] == before + 1
    assert reg.get_sample_value("opskit_telemetry_errors_total", {"kind": "metrics"}) == before + 2
    assert reg.get_sample_value("opskit_telemetry_errors_total", {"kind": "log"}) is not None


def test_instances_sharing_a_name_export_one_series_each() -> None:
    reg = CollectorRegistry()

    def source(calls: int, state: int):  # type: ignore[no-untyped-def]
        def collect():  # type: ignore[no-untyped-def]
            yield Metric("opskit_demo_calls_total", "counter", "Calls.", calls,
                         {"name": "api", "decision": "allowed"})  # fmt: skip
            # the same labels in another order are the same series
            yield Metric("opskit_demo_calls_total", "counter", "Calls.", 1,
                         {"decision": "denied", "name": "api"})  # fmt: skip
            yield Metric("opskit_demo_state", "gauge", "State.", state, {"name": "api"})

        return collect

    publish(source(1, 0), reg)
    publish(source(2, 1), reg)
    text = generate_latest(reg).decode()
    assert text.count('opskit_demo_calls_total{decision="allowed",name="api"}') == 1
    assert (
        reg.get_sample_value("opskit_demo_calls_total", {"name": "api", "decision": "allowed"}) == 3
    )  # counters are summed
    assert (
        reg.get_sample_value("opskit_demo_calls_total", {"name": "api", "decision": "denied"}) == 2
    )
    assert reg.get_sample_value("opskit_demo_state", {"name": "api"}) == 1  # gauges: the largest
