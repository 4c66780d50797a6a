"""copy_to_thread, TenantThreadPoolExecutor, and the plain executor trap they fix."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from opskit.tenancy import (
    Tenant,
    TenantThreadPoolExecutor,
    copy_to_thread,
    current_tenant,
    get_tenant,
    tenant_scope,
)


def seen() -> str | None:
    t = current_tenant()
    return None if t is None else t.id


def test_plain_executor_loses_the_tenant() -> None:
    """The trap (CPython #78195) the helpers exist for."""
    with ThreadPoolExecutor(1) as pool, tenant_scope("acme"):
        assert pool.submit(seen).result() is None


def test_copy_to_thread_carries_and_leaves_nothing() -> None:
    with tenant_scope("acme"):
        fn = copy_to_thread(seen)
    results: list[str | None] = []
    after: list[str | None] = []

    def thread_body() -> None:
        results.append(fn())
        results.append(fn())  # runs repeatedly
        after.append(seen())  # the thread's own context never got a tenant

    threads = [threading.Thread(target=thread_body) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["acme"] * 8 and after == [None] * 4
    assert current_tenant() is None


def test_copy_to_thread_in_several_threads_at_once() -> None:
    """One wrapper entered by several threads at the same moment (a shared Context
    would raise 'already entered')."""
    barrier = threading.Barrier(4)

    def wait_then_read() -> str:
        barrier.wait(5)
        return get_tenant().id

    with tenant_scope("acme"):
        fn = copy_to_thread(wait_then_read)
    with ThreadPoolExecutor(4) as pool:
        assert [f.result() for f in [pool.submit(fn) for _ in range(4)]] == ["acme"] * 4


def test_copy_to_thread_keeps_the_signature_and_isolates_calls() -> None:
    def change(x: int) -> int:
        """Doc."""
        with tenant_scope("globex"):
            pass
        tenant_scope("other").__enter__()  # left open on purpose: must not leak
        return x + 1

    with tenant_scope("acme"):
        fn = copy_to_thread(change)
    assert fn.__name__ == "change" and fn.__doc__ == "Doc."
    assert fn(1) == 2
    assert current_tenant() is None
    with tenant_scope("acme"):
        assert copy_to_thread(seen)() == "acme"


def test_executor_runs_each_callable_in_its_submitters_scope() -> None:
    with TenantThreadPoolExecutor(max_workers=2) as pool:
        futures = []
        for i in range(20):
            with tenant_scope(f"t{i}"):
                futures.append((f"t{i}", pool.submit(seen)))
        futures.append((None, pool.submit(seen)))
        assert all(f.result() == want for want, f in futures)
        with tenant_scope("acme"):
            assert list(pool.map(lambda _: seen(), range(5))) == ["acme"] * 5
        # Worker threads keep nothing between tasks.
        assert pool.submit(seen).result() is None


async def test_run_in_executor_with_the_tenant_executor() -> None:
    loop = asyncio.get_running_loop()
    with TenantThreadPoolExecutor(max_workers=2) as pool:
        async with tenant_scope(Tenant("acme", plan="pro")):
            t = await loop.run_in_executor(pool, current_tenant)
            assert t == Tenant("acme", plan="pro")
        assert await loop.run_in_executor(pool, current_tenant) is None
