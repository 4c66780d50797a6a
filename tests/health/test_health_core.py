"""The model, the registry's concurrent runs under timeouts, cache and single flight."""

from __future__ import annotations

import asyncio
import contextvars
import re
import threading
from typing import Any

import jsonschema
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from health._schema import HEALTH_JSON
from opskit.health import CheckResult, HealthRegistry, HealthReport, Status, checks
from opskit.testing import ManualClock

pytestmark = pytest.mark.timeout(30)


# -- model ---------------------------------------------------------------------------


def test_status_order_and_encoding() -> None:
    assert Status.PASS < Status.WARN < Status.FAIL
    assert max([Status.WARN, Status.PASS, Status.FAIL]) is Status.FAIL
    assert [s.gauge for s in Status] == [1.0, 0.5, 0.0]
    assert str(Status.WARN) == "warn"
    assert CheckResult("warn").status is Status.WARN  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pass, warn or fail"):
        CheckResult("degraded")  # type: ignore[arg-type]


def test_empty_registry_passes(make_health: Any) -> None:
    report = make_health().run_sync()
    assert report.status is Status.PASS and report.http_status == 200
    assert report.to_health_json() == {"status": "pass"}


@pytest.mark.parametrize(
    ("value", "status"),
    [(None, Status.PASS), (True, Status.PASS), (False, Status.FAIL), (Status.WARN, Status.WARN),
     (CheckResult(Status.WARN, output="x"), Status.WARN), (42, Status.FAIL)],
)  # fmt: skip
async def test_return_values_become_results(make_health: Any, value: Any, status: Status) -> None:
    h = make_health()
    h.add("sync", lambda: value)

    async def async_check() -> Any:
        return value

    h.add("async", async_check)
    report = await h.run()
    assert report.checks["sync"].status is status
    assert report.checks["async"].status is status


# No deadline: each example runs its checks on the registry's thread pool, whose start-up
# time on a loaded machine is not what this property is about.
@settings(deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["pass", "warn", "fail", "raise"])),
                max_size=8))  # fmt: skip
def test_aggregation_rule(spec: list[tuple[bool, str]]) -> None:
    h = HealthRegistry(clock=ManualClock(), registry=CollectorRegistry(), default_timeout=10)
    try:
        for i, (critical, outcome) in enumerate(spec):

            def check(outcome: str = outcome) -> Status:
                if outcome == "raise":
                    raise RuntimeError("boom")
                return Status(outcome)

            h.add(f"c{i}", check, critical=critical)
        report = h.run_sync()
    finally:
        h.close()
    bad = {"fail", "raise"}
    if any(c and o in bad for c, o in spec):
        want = Status.FAIL
    elif any(o == "warn" or o in bad for _, o in spec):
        want = Status.WARN
    else:
        want = Status.PASS
    assert report.status is want
    assert report.http_status == (503 if want is Status.FAIL else 200)
    for i, (critical, outcome) in enumerate(spec):
        entry = report.checks[f"c{i}"].status
        if outcome in bad:
            assert entry is (Status.FAIL if critical else Status.WARN)


# -- configuration errors ----------------------------------------------------------------


def test_bad_configuration_names_it(make_health: Any) -> None:
    h = make_health()
    h.add("db", lambda: True)
    with pytest.raises(ValueError, match="'db' is already registered"):
        h.add("db", lambda: True)
    with pytest.raises(ValueError, match="'a:b'"):
        h.add("a:b", lambda: True)
    with pytest.raises(ValueError, match="timeout must be a positive"):
        h.add("x", lambda: True, timeout=0)
    with pytest.raises(ValueError, match="timeout must be a positive"):
        h.add("x", lambda: True, timeout=-1.0)
    with pytest.raises(ValueError, match="measurement"):
        h.add("x", lambda: True, measurement="a:b")
    with pytest.raises(ValueError, match="default_timeout"):
        HealthRegistry(default_timeout=0)
    with pytest.raises(ValueError, match="cache_ttl"):
        HealthRegistry(cache_ttl=-1)
    with pytest.raises(ValueError, match="max_workers"):
        HealthRegistry(max_workers=0)
    with pytest.raises(TypeError, match="callable"):
        h.add("y", 42)
    with pytest.raises(ValueError, match="reserved"):
        h.add("z", lambda: True, groups={"all"})


def test_groups(make_health: Any) -> None:
    h = make_health()
    calls: list[str] = []
    h.add("a", lambda: calls.append("a"))
    assert h.run_sync(group="readiness").checks.keys() == {"a"}  # no group declared: every check
    h.add("b", lambda: calls.append("b"), groups={"readiness"})
    assert h.run_sync(group="readiness").checks.keys() == {"b"}
    assert h.run_sync().checks.keys() == {"a", "b"}
    with pytest.raises(ValueError, match=r"'startup'.*declared: readiness"):
        h.run_sync(group="startup")


# -- concurrency and timeouts ---------------------------------------------------------


async def test_sync_checks_run_concurrently(make_health: Any) -> None:
    # Each waits until all ten have started: run one after another, they would deadlock.
    h = make_health(max_workers=10, default_timeout=10.0)
    barrier = threading.Barrier(10, timeout=10)
    for i in range(10):
        h.add(f"c{i}", lambda: barrier.wait() >= 0)
    report = await h.run()
    assert report.status is Status.PASS, report.to_health_json()
    assert h.thread_count == 10


async def test_async_checks_run_concurrently(make_health: Any) -> None:
    h = make_health(default_timeout=10.0)
    started = 0
    everyone = asyncio.Event()

    def make() -> Any:
        async def check() -> bool:
            nonlocal started
            started += 1
            if started == 10:
                everyone.set()
            await everyone.wait()
            return True

        return check

    for i in range(10):
        h.add(f"c{i}", make())
    report = await h.run()
    assert report.status is Status.PASS and started == 10


async def test_hung_sync_check_times_out_and_is_not_started_twice(make_health: Any) -> None:
    h = make_health(cache_ttl=0, max_workers=8)
    release = threading.Event()
    calls = 0

    def hangs() -> bool:
        nonlocal calls
        calls += 1
        release.wait(30)
        return True

    h.add("hung", hangs, timeout=0.05)
    h.add("fine", lambda: True)
    try:
        first = await h.run()
        assert first.checks["hung"].status is Status.FAIL
        assert first.checks["hung"].output == "timed out after 0.05 s"
        assert first.checks["fine"].status is Status.PASS
        assert first.status is Status.FAIL and first.http_status == 503
        second = await h.run()  # not blocked; waits for the same call, not a new one
        assert second.checks["hung"].output == "timed out after 0.05 s"
        assert second.checks["fine"].status is Status.PASS
        assert calls == 1
    finally:
        release.set()
    # once the hung call has returned, the next run starts a new one
    flight = h._entries["hung"].flight
    assert flight is not None
    await asyncio.wrap_future(flight)
    h._entries["hung"].timeout = 10.0  # the new call must not race a 50 ms timeout
    third = await h.run()
    assert third.checks["hung"].status is Status.PASS and calls == 2


def test_max_workers_defaults_to_one_per_sync_check_and_at_least_8(make_health: Any) -> None:
    h = make_health()
    assert h.max_workers == 8
    for i in range(12):
        h.add(f"s{i}", lambda: True)
        h.add(f"a{i}", checks.call(_async_true))
    assert h.max_workers == 12
    assert make_health(max_workers=3).max_workers == 3


async def _async_true() -> bool:
    return True


async def test_hung_checks_never_take_more_threads_than_max_workers(make_health: Any) -> None:
    h = make_health(cache_ttl=0, max_workers=2)
    release = threading.Event()
    for i in range(5):
        h.add(f"hung{i}", lambda: release.wait(30), timeout=0.05)
    try:
        for _ in range(3):
            report = await h.run()
            assert all(r.output == "timed out after 0.05 s" for r in report.checks.values())
            assert h.thread_count <= 2
    finally:
        release.set()


async def test_hung_async_check_times_out_and_is_cancelled(make_health: Any) -> None:
    h = make_health(cache_ttl=0)
    cancelled = asyncio.Event()

    async def hangs() -> bool:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return True  # pragma: no cover

    h.add("hung", hangs, timeout=0.05)
    h.add("fine", lambda: True)
    report = await h.run()
    assert report.checks["hung"].output == "timed out after 0.05 s"
    assert report.checks["fine"].status is Status.PASS
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_non_critical_timeout_warns(make_health: Any) -> None:
    h = make_health()
    release = threading.Event()
    h.add("slow", lambda: release.wait(30), timeout=0.05, critical=False)
    try:
        report = await h.run()
    finally:
        release.set()
    assert report.checks["slow"].status is Status.WARN
    assert report.status is Status.WARN and report.http_status == 200


async def test_sync_checks_see_the_callers_context(make_health: Any) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")
    h = make_health()
    seen: list[str] = []
    h.add("ctx", lambda: seen.append(var.get()))
    var.set("acme")
    await h.run()
    assert seen == ["acme"]


# -- errors and secrets ------------------------------------------------------------------


async def test_raising_checks_hide_messages_unless_details(make_health: Any) -> None:
    h = make_health()

    def broken() -> None:
        raise ConnectionError("cannot reach redis://:hunter2@cache.internal:6379/0?x=1 now")

    h.add("cache", broken)
    h.add("optional", broken, critical=False)
    report = await h.run()
    entry = report.checks["cache"]
    assert entry.status is Status.FAIL and entry.output == "ConnectionError"
    assert report.checks["optional"].status is Status.WARN
    hidden = report.to_health_json(detail=False)
    assert hidden == {"status": "fail"}
    shown = report.to_health_json(detail=True)
    out = shown["checks"]["cache:responseTime"][0]["output"]
    assert out == "ConnectionError: cannot reach redis://cache.internal:6379/0 now"
    assert "hunter2" not in str(shown) and "x=1" not in str(shown)


async def test_a_check_whose_exception_cannot_be_printed(make_health: Any) -> None:
    class Odd(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    def broken() -> None:
        raise Odd

    h = make_health()
    h.add("odd", broken)
    report = await h.run()
    assert report.checks["odd"].output == "Odd" and report.checks["odd"].message is None


# -- cache and single flight -------------------------------------------------------------


async def test_cache_ttl_on_the_clock_keeps_the_time(make_health: Any) -> None:
    clock = ManualClock()
    h = make_health(cache_ttl=2.0, clock=clock)
    calls = 0

    def check() -> bool:
        nonlocal calls
        calls += 1
        return True

    h.add("c", check)
    first = await h.run()
    clock.advance(1.9)
    again = await h.run()
    assert again is first and calls == 1
    assert again.checks["c"].time == first.checks["c"].time == clock.time() - 1.9
    clock.advance(0.1)
    fresh = await h.run()
    assert fresh is not first and calls == 2
    assert h.run_sync() is fresh and calls == 2


async def test_hundred_concurrent_runs_run_each_check_once(make_health: Any) -> None:
    h = make_health(cache_ttl=2.0)
    release = asyncio.Event()
    started = asyncio.Event()
    calls = {"a": 0, "s": 0}

    async def a() -> bool:
        calls["a"] += 1
        started.set()
        await release.wait()
        return True

    def s() -> bool:
        calls["s"] += 1
        return True

    h.add("a", a)
    h.add("s", s)
    runs = asyncio.gather(*(h.run() for _ in range(100)))
    await started.wait()
    release.set()
    reports = await runs
    assert calls == {"a": 1, "s": 1}
    assert all(r is reports[0] for r in reports)


def test_hundred_threads_run_sync_each_check_once(make_health: Any) -> None:
    h = make_health(cache_ttl=2.0)
    release = threading.Event()
    calls = 0

    def check() -> bool:
        nonlocal calls
        calls += 1
        release.wait(10)
        return True

    h.add("c", check, timeout=10)
    reports: list[HealthReport] = []
    threads = [threading.Thread(target=lambda: reports.append(h.run_sync())) for _ in range(100)]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join(20)
    assert len(reports) == 100 and calls == 1
    assert all(r is reports[0] for r in reports)


async def test_groups_running_together_share_one_call(make_health: Any) -> None:
    h = make_health()
    release = threading.Event()
    started = threading.Event()
    calls = 0

    def check() -> bool:
        nonlocal calls
        calls += 1
        started.set()
        release.wait(10)
        return True

    h.add("db", check, groups={"readiness"}, timeout=10)
    both = asyncio.gather(h.run(), h.run(group="readiness"))
    assert await asyncio.to_thread(started.wait, 10)
    release.set()
    full, ready = await both
    assert calls == 1
    assert full.checks["db"].status is ready.checks["db"].status is Status.PASS


async def test_run_sync_refuses_a_running_loop(make_health: Any) -> None:
    with pytest.raises(RuntimeError, match="await run"):
        make_health().run_sync()


# -- health+json -----------------------------------------------------------------------


async def test_health_json_shape(make_health: Any) -> None:
    clock = ManualClock(wall_start=1_764_612_116.25)
    h = make_health(service="billing-api", version="1.4.2", release_id="1.4.2-abc", clock=clock)
    h.add("redis", lambda: True, component_type="datastore", component_id="cache-1")
    h.add("disk", checks.disk_free("/", warn_below=1.0, fail_below=0.0))

    @h.check("queue-depth", critical=False, groups={"readiness"}, measurement="depth")
    async def queue_depth() -> CheckResult:
        return CheckResult(Status.WARN, observed_value=812, observed_unit="jobs", output="backlog")

    def broken() -> None:
        raise OSError("disk on fire")

    h.add("legacy", broken, critical=False)
    doc = (await h.run()).to_health_json()
    jsonschema.validate(doc, HEALTH_JSON)
    assert doc["status"] == "warn"
    assert doc["version"] == "1.4.2" and doc["releaseId"] == "1.4.2-abc"
    assert doc["serviceId"] == "billing-api"
    assert doc["output"] == "disk: warn; legacy: warn; queue-depth: warn"
    assert set(doc["checks"]) == {
        "redis:responseTime", "disk:utilization", "queue-depth:depth", "legacy:responseTime",
    }  # fmt: skip
    redis_entry = doc["checks"]["redis:responseTime"][0]
    assert redis_entry == {
        "status": "pass", "componentId": "cache-1", "componentType": "datastore",
        "observedValue": 0.0, "observedUnit": "ms", "time": "2025-12-01T18:01:56.250Z",
    }  # fmt: skip
    queue = doc["checks"]["queue-depth:depth"][0]
    assert queue["observedValue"] == 812 and queue["observedUnit"] == "jobs"
    assert queue["output"] == "backlog"
    disk = doc["checks"]["disk:utilization"][0]
    assert disk["observedUnit"] == "percent" and 0 <= disk["observedValue"] <= 100
    assert re.fullmatch(r"\d+\.\d% free, below 100\.0%", disk["output"])
    assert doc["checks"]["legacy:responseTime"][0]["output"] == "OSError: disk on fire"
    assert "null" not in str((await h.run()).body(True))


def test_pass_report_has_no_output(make_health: Any) -> None:
    h = make_health(service="s")
    h.add("a", lambda: CheckResult(Status.PASS, output="all good"))
    doc = h.run_sync().to_health_json()
    jsonschema.validate(doc, HEALTH_JSON)
    assert "output" not in doc and "output" not in doc["checks"]["a:responseTime"][0]


# -- metrics and logs ----------------------------------------------------------------------


def test_metrics(make_health: Any, metrics: CollectorRegistry) -> None:
    h = make_health(cache_ttl=0)
    h.add("db", lambda: True, groups={"readiness"})
    h.add("q", lambda: Status.WARN)
    h.add("x", lambda: False, critical=False)
    h.run_sync()
    h.run_sync(group="readiness")

    def value(name: str, **labels: str) -> float | None:
        return metrics.get_sample_value(name, labels)

    assert value("opskit_health_check_status", check="db") == 1.0
    assert value("opskit_health_check_status", check="q") == 0.5
    assert value("opskit_health_check_status", check="x") == 0.5
    assert value("opskit_health_check_duration_seconds", check="db") == 0.0
    assert value("opskit_health_status", group="all") == 0.5
    assert value("opskit_health_status", group="readiness") == 1.0
    h.close()
    assert value("opskit_health_status", group="all") is None


def test_check_failed_is_logged_once_per_transition(make_health: Any) -> None:
    h = make_health(cache_ttl=0)
    outcomes = iter([False, False, True, True, False, False])
    h.add("db", lambda: next(outcomes))
    with structlog.testing.capture_logs() as logs:
        for _ in range(6):
            h.run_sync()
    events = [(e["event"], e.get("check")) for e in logs if e["event"].startswith("health.")]
    assert events == [
        ("health.check_failed", "db"),
        ("health.check_recovered", "db"),
        ("health.check_failed", "db"),
    ]


def test_first_result_failing_is_logged_without_secrets(make_health: Any) -> None:
    h = make_health()

    def broken() -> None:
        raise ConnectionError("https://user:pw@api.example/v1?key=sekrit")

    h.add("api", broken)
    with structlog.testing.capture_logs() as logs:
        h.run_sync()
    failed = [e for e in logs if e["event"] == "health.check_failed"]
    assert len(failed) == 1 and failed[0]["output"] == "ConnectionError"
    assert "sekrit" not in str(logs) and "pw@" not in str(logs)


# -- background refresh ------------------------------------------------------------------


async def test_refresh_runs_before_requests_and_requests_never_run_checks() -> None:
    h = HealthRegistry(cache_ttl=0, registry=CollectorRegistry())
    gate = asyncio.Event()
    started = asyncio.Event()
    calls = 0

    async def check() -> bool:
        nonlocal calls
        calls += 1
        started.set()
        await gate.wait()
        return True

    h.add("db", check, groups={"readiness"}, timeout=10)
    h.start_refresh(interval=3600)
    try:
        await started.wait()
        pending = await h.run(group="readiness")  # does not wait for the running check
        assert pending.status is Status.FAIL
        assert pending.to_health_json()["output"] == "no check has completed yet"
        gate.set()
        assert await asyncio.to_thread(h._refresher.ready.wait, 10)
        for _ in range(5):
            assert (await h.run()).status is Status.PASS
            assert (await h.run(group="readiness")).checks.keys() == {"db"}
        assert calls == 1
        with pytest.raises(RuntimeError, match="already running"):
            h.start_refresh()
    finally:
        await h.stop_refresh()
        h.close()
    assert not h.refreshing


def test_refresh_on_a_thread_without_a_loop() -> None:
    h = HealthRegistry(registry=CollectorRegistry(), default_timeout=10)
    ran = threading.Event()
    h.add("db", lambda: ran.set())
    h.start_refresh(interval=3600)
    try:
        assert ran.wait(10) and h._refresher.ready.wait(10)
        assert h.run_sync().status is Status.PASS
    finally:
        h.stop_refresh_sync()
        h.close()
