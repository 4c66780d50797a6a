"""The async transport's cheap paths decide as the general ones do: the timer wheel
fires what ``loop.call_at`` fires, when it fires it; the breaker's decorator path
records what ``call_async`` records."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from opskit.breaker import CircuitBreaker, CountWindow
from opskit.http import AsyncResilientTransport, AttemptTimeout, Hedge
from opskit.http._timers import Wheel


class _Handle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The part of an event loop a Wheel uses, on a time moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[[], object], _Handle]] = []
        self._seq = itertools.count()
        self.errors: list[dict[str, Any]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> _Handle:
        handle = _Handle()
        heapq.heappush(self._heap, (when, next(self._seq), callback, handle))
        return handle

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        self.errors.append(context)

    def advance(self, to: float) -> None:
        while self._heap and self._heap[0][0] <= to:
            when, _, callback, handle = heapq.heappop(self._heap)
            if not handle.cancelled:
                self.now = max(self.now, when)
                callback()
        self.now = max(self.now, to)


# An operation: arm a timer `delay` from now, cancel timer number `i` (if armed), or
# let `dt` pass. A fired callback may arm another timer (as a hedge's tick does).
ops = st.lists(
    st.one_of(
        st.tuples(st.just("arm"), st.sampled_from([0.5, 1.0, 2.0, 0.25, 3.0]), st.booleans()),
        st.tuples(st.just("cancel"), st.integers(0, 40), st.booleans()),
        st.tuples(st.just("pass"), st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.5]), st.booleans()),
    ),
    max_size=60,
)


def _run(operations: list[tuple[str, Any, bool]], wheeled: bool) -> dict[int, float]:
    loop = FakeLoop()
    wheel = Wheel(loop)  # type: ignore[arg-type]
    fired: dict[int, float] = {}
    timers: list[Any] = []

    def arm(delay: float, chain: bool) -> None:
        n = len(timers)

        def callback() -> None:
            fired[n] = loop.now
            if chain:  # re-arm from inside a callback
                arm(delay, False)

        when = loop.time() + delay
        timers.append(wheel.call_at(when, callback) if wheeled else loop.call_at(when, callback))

    for op, value, chain in operations:
        if op == "arm":
            arm(value, chain)
        elif op == "cancel" and value < len(timers):
            timers[value].cancel()
        elif op == "pass":
            loop.advance(loop.now + value)
    loop.advance(loop.now + 100.0)
    assert loop.errors == []
    return fired


@settings(max_examples=300, deadline=None)
@given(ops)
def test_the_wheel_fires_what_call_at_fires_when_it_fires_it(
    operations: list[tuple[str, Any, bool]],
) -> None:
    assert _run(operations, wheeled=True) == _run(operations, wheeled=False)


def test_a_failing_callback_goes_to_the_loops_handler_and_the_rest_still_fire() -> None:
    loop = FakeLoop()
    wheel = Wheel(loop)  # type: ignore[arg-type]
    fired: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    wheel.call_at(1.0, boom)
    wheel.call_at(1.0, lambda: fired.append("after"))
    loop.advance(2.0)
    assert fired == ["after"]
    assert [type(e["exception"]) for e in loop.errors] == [RuntimeError]
    assert len(wheel) == 0


def test_cancelled_timers_are_dropped_when_the_loop_timer_runs() -> None:
    loop = FakeLoop()
    wheel = Wheel(loop)  # type: ignore[arg-type]
    for i in range(100):
        wheel.call_at(1.0 + i / 1000, lambda: None).cancel()
    assert len(wheel) == 100
    loop.advance(1.0)
    assert len(wheel) == 0


# -- on a real loop ----------------------------------------------------------------------


def test_attempt_timeouts_fire_on_each_loop_that_uses_the_transport() -> None:
    """The transport keeps wheels per loop: a second asyncio.run still times out."""

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")  # pragma: no cover

    async def ok(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    async def one(t: AsyncResilientTransport, path: str) -> Any:
        async with httpx.AsyncClient(transport=t) as client:
            try:
                return (await client.get(f"http://upstream.test/{path}")).status_code
            except AttemptTimeout as exc:
                return exc

    def handler(request: httpx.Request) -> Any:
        return hang(request) if request.url.path == "/hang" else ok(request)

    t = AsyncResilientTransport(httpx.MockTransport(handler), attempt_timeout=0.05,
                                hedge=Hedge(after=10), registry=CollectorRegistry())  # fmt: skip
    for _ in range(2):
        assert asyncio.run(one(t, "ok")) == 200
        assert isinstance(asyncio.run(one(t, "hang")), AttemptTimeout)


# -- the breaker: the decorator's closed path vs call_async -------------------------------

outcomes = st.lists(st.sampled_from([200, 404, 429, 500, 503, "reset"]), max_size=40)


@settings(max_examples=60, deadline=None)
@given(outcomes, st.sampled_from([None, 2, 3]))
def test_the_breaker_records_what_call_async_records(
    sequence: list[int | str], consecutive: int | None
) -> None:
    def breaker(name: str) -> CircuitBreaker:
        return CircuitBreaker(name, window=CountWindow(6), minimum_calls=4, failure_rate=0.5,
                              consecutive_failures=consecutive, open_for=1000,
                              registry=CollectorRegistry())  # fmt: skip

    async def reply(what: int | str, request: httpx.Request) -> httpx.Response:
        if what == "reset":
            raise httpx.ReadError("reset", request=request)
        return httpx.Response(int(what))

    async def go() -> None:
        ours, theirs = breaker("ours"), breaker("theirs")
        current: list[int | str] = [200]

        async def handler(request: httpx.Request) -> httpx.Response:
            return await reply(current[0], request)

        t = AsyncResilientTransport(httpx.MockTransport(handler), breaker=ours,
                                    registry=CollectorRegistry())  # fmt: skip
        async with httpx.AsyncClient(transport=t) as client:
            for what in sequence:
                current[0] = what
                request = httpx.Request("GET", "http://upstream.test/")
                with contextlib.suppress(Exception):  # a transport error, CircuitOpenError
                    await client.get("http://upstream.test/")

                async def exchange(
                    what: int | str = what, request: httpx.Request = request
                ) -> httpx.Response:
                    response = await reply(what, request)
                    if response.status_code >= 500:
                        raise httpx.HTTPStatusError("5xx", request=request, response=response)
                    return response

                with contextlib.suppress(Exception):
                    await theirs.call_async(exchange)
                a, b = ours.snapshot(), theirs.snapshot()
                assert (a.state, a.calls, a.failures, a.consecutive_failures) == (
                    b.state, b.calls, b.failures, b.consecutive_failures
                )  # fmt: skip

    asyncio.run(go())


@pytest.mark.parametrize("hosts", [["a.test"], ["a.test", "b.test", "a.test"]])
async def test_breaker_for_each_host_gets_its_own_guarded_exchange(hosts: list[str]) -> None:
    made: dict[str, CircuitBreaker] = {}

    def breaker_for(host: str) -> CircuitBreaker:
        made[host] = CircuitBreaker(host, consecutive_failures=1, registry=CollectorRegistry())
        return made[host]

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500 if request.url.host == "a.test" else 200)

    t = AsyncResilientTransport(httpx.MockTransport(handler), breaker_for=breaker_for,
                                registry=CollectorRegistry())  # fmt: skip
    async with httpx.AsyncClient(transport=t) as client:
        for host in hosts:
            with contextlib.suppress(Exception):
                await client.get(f"http://{host}/")
    assert made["a.test"].snapshot().state.value == "open"
    if "b.test" in made:
        assert made["b.test"].snapshot().state.value == "closed"


async def test_a_builtin_timeout_error_from_the_inner_transport_is_an_attempt_timeout() -> None:
    """As before the timeout was inlined: the inner transport's own TimeoutError."""

    async def handler(request: httpx.Request) -> httpx.Response:
        raise TimeoutError

    t = AsyncResilientTransport(httpx.MockTransport(handler), attempt_timeout=5.0,
                                registry=CollectorRegistry())  # fmt: skip
    async with httpx.AsyncClient(transport=t) as client:
        with pytest.raises(AttemptTimeout):
            await client.get("http://upstream.test/")
