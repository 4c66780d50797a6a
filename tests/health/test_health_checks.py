"""Built-in checks against real components: redis-server, SQLite, local HTTP and TCP servers."""

from __future__ import annotations

import asyncio
import enum
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import create_async_engine

from health._helpers import closed_port, tcp_listener, upstream
from opskit.breaker import CircuitBreaker
from opskit.health import Status, checks
from opskit.testing import ManualClock

pytestmark = pytest.mark.timeout(60)


# -- redis ------------------------------------------------------------------------------


@pytest.mark.redis
def test_redis_ping_through_an_outage(make_health: Any, restartable_redis: Any) -> None:
    client = restartable_redis.client(socket_connect_timeout=1, socket_timeout=1)
    h = make_health(cache_ttl=0)
    h.add("redis", checks.redis_ping(client), timeout=5, groups={"readiness"})
    report = h.run_sync(group="readiness")
    assert report.status is Status.PASS
    assert (
        report.to_health_json()["checks"]["redis:responseTime"][0]["componentType"] == "datastore"
    )
    restartable_redis.stop()
    down = h.run_sync()
    assert down.status is Status.FAIL and down.http_status == 503
    assert down.checks["redis"].output == "ConnectionError"
    restartable_redis.start()
    assert h.run_sync().status is Status.PASS
    restartable_redis.kill()
    assert h.run_sync().checks["redis"].status is Status.FAIL
    restartable_redis.start()
    assert h.run_sync().status is Status.PASS
    client.close()


@pytest.mark.redis
async def test_redis_ping_asyncio_client(make_health: Any, aredis_client: Any) -> None:
    check = checks.redis_ping(aredis_client)
    assert check.is_async
    h = make_health()
    h.add("redis", check)
    assert (await h.run()).status is Status.PASS


@pytest.mark.redis
@pytest.mark.cluster
def test_redis_ping_cluster_client(make_health: Any, cluster_client: Any) -> None:
    h = make_health()
    h.add("redis", checks.redis_ping(cluster_client))
    assert h.run_sync().status is Status.PASS


@pytest.mark.redis
@pytest.mark.cluster
async def test_redis_ping_async_cluster_client(make_health: Any, acluster_client: Any) -> None:
    h = make_health()
    h.add("redis", checks.redis_ping(acluster_client))
    assert (await h.run()).status is Status.PASS


def test_redis_ping_refuses_a_non_client() -> None:
    with pytest.raises(TypeError, match="Redis client"):
        checks.redis_ping(object())


# -- sqlalchemy ------------------------------------------------------------------------


def test_sqlalchemy_sqlite_returns_its_connections(make_health: Any, tmp_path: Path) -> None:
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    h = make_health(cache_ttl=0)
    h.add("db", checks.sqlalchemy(engine), timeout=5)
    for _ in range(5):
        assert h.run_sync().status is Status.PASS
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    bad = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    h.add("bad", checks.sqlalchemy(bad), timeout=5)
    report = h.run_sync()
    assert report.checks["bad"].output == "OperationalError"
    assert report.checks["bad"].status is Status.FAIL
    broken = make_health()
    broken.add("q", checks.sqlalchemy(engine, "SELECT * FROM nowhere"))
    assert broken.run_sync().checks["q"].output == "OperationalError"
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    engine.dispose()
    bad.dispose()


async def test_sqlalchemy_async_engine(make_health: Any, tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    check = checks.sqlalchemy(engine)
    assert check.is_async
    h = make_health(cache_ttl=0)
    h.add("db", check, timeout=5)
    for _ in range(3):
        assert (await h.run()).status is Status.PASS
    assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    await engine.dispose()


def test_sqlalchemy_refuses_a_non_engine() -> None:
    with pytest.raises(TypeError, match="Engine or AsyncEngine"):
        checks.sqlalchemy("sqlite://")


def test_health_imports_without_the_extras() -> None:
    code = (
        "import sys; sys.modules['sqlalchemy'] = None; sys.modules['httpx'] = None\n"
        "from opskit.health import HealthRegistry, checks\n"
        "h = HealthRegistry(); h.add('disk', checks.disk_free('/'))\n"
        "try:\n    import opskit.health.sqlalchemy\nexcept ImportError as e:\n    print(e)\n"
        "try:\n    checks.sqlalchemy(object())\nexcept ImportError as e:\n    print(e)\n"
        "try:\n    checks.http('http://x/')\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert len(lines) == 3, out
    assert "pip install 'opskit[sqlalchemy]'" in lines[0]
    assert "pip install 'opskit[sqlalchemy]'" in lines[1]
    assert "pip install 'opskit[httpx]'" in lines[2]


# -- http -------------------------------------------------------------------------------


def test_http_against_a_real_server(make_health: Any) -> None:
    with upstream() as (base, app):
        h = make_health(cache_ttl=0)
        h.add("ok", checks.http(f"{base}/ok"))
        h.add("err", checks.http(f"{base}/err"), critical=False)
        h.add("err-expected", checks.http(f"{base}/err", expect=range(500, 600)))
        h.add("body-ok", checks.http(f"{base}/ok", body=lambda text: text == "OK"))
        h.add("body-bad", checks.http(f"{base}/ok", body=lambda text: "healthy" in text),
              critical=False)  # fmt: skip
        h.add("hang", checks.http(f"{base}/hang", timeout=30), timeout=0.2)
        report = h.run_sync()
        assert app.hanging.is_set()
        port = base.rsplit(":", 1)[1]
        c = report.checks
        assert c["ok"].status is Status.PASS and c["ok"].observed_unit == "ms"
        assert c["err"].status is Status.WARN
        assert c["err"].output == f"HTTP 500 from http://127.0.0.1:{port}/err"
        assert c["err-expected"].status is Status.PASS
        assert c["body-ok"].status is Status.PASS
        assert c["body-bad"].output == f"unexpected body from http://127.0.0.1:{port}/ok (HTTP 200)"
        assert c["hang"].status is Status.FAIL and c["hang"].output == "timed out after 0.2 s"
        assert report.status is Status.FAIL
        app.release.set()


def test_http_never_shows_userinfo_query_or_fragment(make_health: Any) -> None:
    with upstream() as (base, _):
        secret_url = base.replace("http://", "http://admin:hunter2@") + "/err?token=abc#frag"
        h = make_health()
        h.add("api", checks.http(secret_url))
        h.add("down", checks.http(f"http://u:pw@127.0.0.1:{closed_port()}/x?k=v"))
        report = h.run_sync()
        text = str(report.to_health_json(detail=True))
        assert "hunter2" not in text and "token" not in text and "frag" not in text
        assert "pw" not in text and "k=v" not in text
        assert report.checks["api"].output.endswith("/err")  # type: ignore[union-attr]
        assert report.checks["down"].output == "ConnectError"


async def test_http_with_an_async_client(make_health: Any) -> None:
    with upstream() as (base, _):
        async with httpx.AsyncClient() as client:
            check = checks.http(f"{base}/ok", client=client, body=lambda t: t == "OK")
            assert check.is_async
            h = make_health()
            h.add("ok", check)
            h.add("err", checks.http(f"{base}/err", client=client))
            report = await h.run()
            assert report.checks["ok"].status is Status.PASS
            assert report.checks["err"].status is Status.FAIL


def test_http_bad_arguments() -> None:
    with pytest.raises(ValueError, match="http"):
        checks.http("ftp://files.example/x")
    with pytest.raises(ValueError, match="http"):
        checks.http("not a url")
    with pytest.raises(ValueError, match=r"http\(s\) URL, not 'ftp://h/p'"):
        checks.http("ftp://user:secret@h/p?q=1")


# -- tcp --------------------------------------------------------------------------------


async def test_tcp_against_a_listener_and_a_closed_port(make_health: Any) -> None:
    with tcp_listener() as port:
        h = make_health()
        h.add("smtp", checks.tcp("127.0.0.1", port))
        h.add("gone", checks.tcp("127.0.0.1", closed_port()), critical=False)
        report = await h.run()
    assert report.checks["smtp"].status is Status.PASS
    assert report.checks["gone"].status is Status.WARN
    assert report.checks["gone"].output == "ConnectionRefusedError"


def test_tcp_bad_arguments() -> None:
    with pytest.raises(ValueError, match="port"):
        checks.tcp("localhost", 0)
    with pytest.raises(ValueError, match="host"):
        checks.tcp("", 80)


# -- disk, breaker, call ------------------------------------------------------------------


def test_disk_free(make_health: Any, tmp_path: Path) -> None:
    h = make_health()
    h.add("ok", checks.disk_free(str(tmp_path), warn_below=0.0, fail_below=0.0))
    h.add("warn", checks.disk_free(str(tmp_path), warn_below=1.0, fail_below=0.0))
    h.add("fail", checks.disk_free(str(tmp_path), warn_below=1.0, fail_below=1.0))
    h.add("missing", checks.disk_free(str(tmp_path / "nope")), critical=False)
    report = h.run_sync()
    assert [report.checks[n].status for n in ("ok", "warn", "fail", "missing")] == [
        Status.PASS, Status.WARN, Status.FAIL, Status.WARN,
    ]  # fmt: skip
    assert report.checks["missing"].output == "FileNotFoundError"
    assert report.checks["ok"].measurement == "utilization"
    with pytest.raises(ValueError, match="fail_below"):
        checks.disk_free("/", warn_below=0.01, fail_below=0.5)
    with pytest.raises(ValueError, match="warn_below"):
        checks.disk_free("/", warn_below=2)


def test_breaker_with_a_real_circuit_breaker(make_health: Any) -> None:
    clock = ManualClock()
    payments = CircuitBreaker("payments", consecutive_failures=1, minimum_calls=1, open_for=10.0,
                              clock=clock, registry=CollectorRegistry())  # fmt: skip
    h = make_health(cache_ttl=0)
    h.add("payments-breaker", checks.breaker(payments))
    h.add("payments-soft", checks.breaker(payments), critical=False)

    def statuses() -> tuple[Status, Status]:
        r = h.run_sync()
        return r.checks["payments-breaker"].status, r.checks["payments-soft"].status

    assert statuses() == (Status.PASS, Status.PASS)

    def boom() -> None:
        raise RuntimeError("down")

    with pytest.raises(RuntimeError):
        payments.call(boom)
    assert str(payments.state) == "open"
    assert statuses() == (Status.FAIL, Status.WARN)
    clock.advance(10.0)
    probing, release = threading.Event(), threading.Event()

    def probe() -> None:
        probing.set()
        release.wait(10)

    prober = threading.Thread(target=payments.call, args=(probe,))
    prober.start()
    try:
        assert probing.wait(10)
        assert str(payments.state) == "half_open"
        assert statuses() == (Status.WARN, Status.WARN)
    finally:
        release.set()
        prober.join(10)
    assert statuses() == (Status.PASS, Status.PASS)  # the probe succeeded: closed
    payments.force_open()
    assert statuses() == (Status.FAIL, Status.WARN)
    payments.close()


def test_breaker_duck_typed_states(make_health: Any) -> None:
    class S(enum.Enum):
        OPEN = "OPEN"
        CLOSED = "CLOSED"

    class B:
        state: Any = "closed"

    b = B()
    h = make_health(cache_ttl=0)
    h.add("b", checks.breaker(b))
    for state, want in [("closed", Status.PASS), ("half-open", Status.WARN), (S.OPEN, Status.FAIL),
                        (S.CLOSED, Status.PASS), ("FORCED_OPEN", Status.FAIL)]:  # fmt: skip
        b.state = state
        assert h.run_sync().checks["b"].status is want, state
    with pytest.raises(TypeError, match=r"\.state"):
        checks.breaker(object())


async def test_call_sync_and_async(make_health: Any) -> None:
    h = make_health()

    async def good() -> None:
        return None

    def bad() -> None:
        raise KeyError("k")

    h.add("good", checks.call(good))
    h.add("bad", checks.call(bad), critical=False)
    h.add("lambda", checks.call(lambda: None))
    report = await h.run()
    assert report.checks["good"].status is Status.PASS
    assert report.checks["lambda"].status is Status.PASS
    assert report.checks["bad"].status is Status.WARN and report.checks["bad"].output == "KeyError"
    with pytest.raises(TypeError):
        checks.call(42)  # type: ignore[arg-type]


@pytest.mark.redis
async def test_redis_frozen_times_out_without_piling_up_threads(
    make_health: Any, restartable_redis: Any
) -> None:
    client = restartable_redis.client(socket_connect_timeout=30, socket_timeout=30)
    assert client.ping()
    h = make_health(cache_ttl=0)
    h.add("redis", checks.redis_ping(client), timeout=0.2)
    proc = restartable_redis.proc
    proc.send_signal(signal.SIGSTOP)  # frozen: connections stay open, nothing answers
    try:
        first = await h.run()
        hung = h._entries["redis"].flight
        for _ in range(3):
            report = await h.run()
            assert report.checks["redis"].output == "timed out after 0.2 s"
            assert h._entries["redis"].flight is hung  # the same call, never a second one
        assert first.status is Status.FAIL and h.thread_count == 1
    finally:
        proc.send_signal(signal.SIGCONT)
    assert hung is not None
    await asyncio.wrap_future(hung)  # the frozen PING completes once the server thaws
    h._entries["redis"].timeout = 10.0  # the new PING must not race a 0.2 s timeout
    assert (await h.run()).status is Status.PASS
    client.close()
