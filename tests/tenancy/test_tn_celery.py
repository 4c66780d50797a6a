"""connect_celery with a real worker (celery.contrib.testing) on the test Redis."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.signals import task_prerun
from structlog.testing import capture_logs

from opskit.tenancy import current_tenant, get_tenant, tenant_scope, to_headers
from opskit.tenancy.celery import connect_celery

pytestmark = [
    pytest.mark.redis,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning"),
]

seen: list[tuple[str, str | None]] = []  # (task, tenant id) as the worker saw them
between: list[str | None] = []  # the worker thread's tenant before each task's scope


def who() -> str | None:
    t = current_tenant()
    return None if t is None else t.id


def make_app(url: str) -> Celery:
    app = Celery("opskit-tenancy-tests", broker=url, backend=url, set_as_current=False)
    app.conf.update(task_acks_late=False, broker_connection_retry_on_startup=True,
                    worker_hijack_root_logger=False, result_expires=60)  # fmt: skip

    @app.task(name="tn.whoami")
    def whoami() -> str | None:
        seen.append(("whoami", who()))
        return who()

    @app.task(name="tn.fails")
    def fails() -> None:
        seen.append(("fails", who()))
        raise ValueError("task failed")

    @app.task(name="tn.retries", bind=True, max_retries=3)
    def retries(self: Any) -> int:
        seen.append(("retries", who()))
        if self.request.retries < 2:
            raise self.retry(countdown=0)
        return int(self.request.retries)

    @app.task(name="tn.fan_out")
    def fan_out() -> str | None:
        seen.append(("fan_out", who()))
        # Publishing from inside a task carries the task's tenant on.
        whoami.delay()
        return who()

    def before_ours(task: Any = None, **_: Any) -> None:
        if not task.request.is_eager:  # eager runs in the caller's scope, on purpose
            between.append(who())

    # Connected before connect_celery's receivers, so it runs first: what a task
    # would see if the worker thread kept anything from the previous one.
    task_prerun.connect(before_ours, weak=False)
    connect_celery(app)
    return app


@pytest.fixture(scope="module")
def celery_app(redis_server: Any) -> Iterator[Celery]:
    url = redis_server.url.rsplit("/", 1)[0] + "/7"
    app = make_app(url)
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=20):
        yield app


@pytest.fixture(autouse=True)
def clear_seen() -> Iterator[None]:
    seen.clear()
    between.clear()
    yield
    assert set(between) <= {None}, between


def test_the_tenant_is_carried_and_cleared_after(celery_app: Celery) -> None:
    whoami = celery_app.tasks["tn.whoami"]
    with tenant_scope("acme"):
        assert whoami.delay().get(timeout=20) == "acme"
    # Published outside a scope, on the same worker thread right after: none.
    assert whoami.delay().get(timeout=20) is None
    with tenant_scope("globex"):
        assert whoami.delay().get(timeout=20) == "globex"
    assert seen == [("whoami", "acme"), ("whoami", None), ("whoami", "globex")]


def test_never_inherited_after_a_failure(celery_app: Celery) -> None:
    with tenant_scope("acme"), pytest.raises(ValueError, match="task failed"):
        celery_app.tasks["tn.fails"].delay().get(timeout=20)
    assert celery_app.tasks["tn.whoami"].delay().get(timeout=20) is None
    assert seen == [("fails", "acme"), ("whoami", None)]


def test_every_attempt_of_a_retried_task_sees_its_tenant(celery_app: Celery) -> None:
    with tenant_scope("initech"):
        assert celery_app.tasks["tn.retries"].delay().get(timeout=30) == 2
    assert celery_app.tasks["tn.whoami"].delay().get(timeout=20) is None
    assert seen == [("retries", "initech")] * 3 + [("whoami", None)]


def test_many_interleaved_tenants(celery_app: Celery) -> None:
    whoami = celery_app.tasks["tn.whoami"]
    results = []
    for i in range(60):
        tenant = None if i % 4 == 0 else f"t{i}"
        with tenant_scope(tenant):
            results.append((tenant, whoami.delay()))
    assert [(t, r.get(timeout=30)) for t, r in results] == [(t, t) for t, _ in results]


def test_publishing_inside_a_task_carries_its_tenant(celery_app: Celery) -> None:
    with tenant_scope("acme"):
        assert celery_app.tasks["tn.fan_out"].delay().get(timeout=20) == "acme"
    # The child was published by the worker from inside the task's scope.
    assert celery_app.tasks["tn.whoami"].delay().get(timeout=20) is None  # a barrier
    assert ("whoami", "acme") in seen and seen[0] == ("fan_out", "acme")


def test_a_malformed_id_is_never_entered(celery_app: Celery) -> None:
    whoami = celery_app.tasks["tn.whoami"]
    with capture_logs() as logs:
        assert whoami.apply_async(headers={"x-opskit-tenant": "bad id\r\n"}).get(timeout=20) is None
    assert any(e["event"] == "tenancy.celery_invalid_tenant" for e in logs)
    assert all("bad id" not in str(e) for e in logs)
    # An explicit, valid header outside a scope is honoured.
    assert whoami.apply_async(headers={"x-opskit-tenant": "acme"}).get(timeout=20) == "acme"


def test_eager_keeps_the_callers_scope(celery_app: Celery) -> None:
    whoami = celery_app.tasks["tn.whoami"]
    with tenant_scope("acme"):
        assert whoami.apply().get() == "acme"
        assert get_tenant().id == "acme"
        assert to_headers() == {"x-opskit-tenant": "acme"}
    assert whoami.apply().get() is None
    assert current_tenant() is None


def test_imports_without_celery_and_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['celery'] = None\n"
        "import opskit.tenancy.celery as m\n"
        "try:\n    m.connect_celery(object())\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "opskit[celery]" in out.stdout
