"""opskit.http's public surface, argument checks, and the retry rule as a property
(in-process, on httpx.MockTransport)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import opskit.http
from opskit import OpskitError
from opskit.breaker import CircuitBreaker, TimeWindow
from opskit.http import (
    AsyncResilientTransport,
    AttemptTimeout,
    Hedge,
    ResilientTransport,
    TotalTimeout,
    standard,
)
from opskit.retry import Retry, RetryBudget, backoff
from opskit.testing import ManualClock


def test_public_names_are_pinned() -> None:
    assert opskit.http.__all__ == [
        "ResilientTransport",
        "AsyncResilientTransport",
        "Hedge",
        "standard",
        "TotalTimeout",
        "AttemptTimeout",
        "HttpError",
        "RETRY_STATUSES",
        "RETRY_METHODS",
        "RETRY_AFTER_STATUSES",
    ]
    assert frozenset({408, 429, 500, 502, 503, 504}) == opskit.http.RETRY_STATUSES
    methods = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}
    assert methods == opskit.http.RETRY_METHODS


def test_timeouts_are_httpx_timeouts_and_opskit_errors() -> None:
    for cls in (TotalTimeout, AttemptTimeout):
        assert issubclass(cls, httpx.TimeoutException) and issubclass(cls, OpskitError)
    req = httpx.Request("GET", "https://api.example/v1/charge?key=sk_live_x")
    e = TotalTimeout("stripe", "api.example", 20, request=req)
    assert e.request is req and "sk_live_x" not in str(e) and "20s" in str(e)


def test_import_without_httpx_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['httpx'] = None\n"
        "try:\n import opskit.http\nexcept ImportError as e:\n print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "opskit[httpx]" in out.stdout


def test_standard_follows_the_dotnet_standard_handler() -> None:
    kw = standard("stripe", registry=CollectorRegistry())
    assert kw["total_timeout"] == 30 and kw["attempt_timeout"] == 10 and kw["limiter"] is None
    retry, breaker = kw["retry"], kw["breaker"]
    assert isinstance(retry, Retry) and retry.attempts == 4 and retry.name == "stripe"
    assert retry.retryable(httpx.ConnectError("x")) and not retry.retryable(ValueError())
    assert retry.backoff.initial == 2.0 and retry.backoff.jitter != "none"
    assert isinstance(breaker, CircuitBreaker)
    assert (breaker.failure_rate, breaker.minimum_calls, breaker.open_for) == (0.1, 100, 5.0)
    assert isinstance(breaker.window, TimeWindow)
    for cls in (ResilientTransport, AsyncResilientTransport):
        t = cls(**standard("s", registry=CollectorRegistry()))
        assert "total_timeout=30" in repr(t) and "attempt_timeout=10" in repr(t)
        t.close()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"total_timeout": 0}, "total_timeout"),
        ({"attempt_timeout": float("nan")}, "attempt_timeout"),
        ({"name": ""}, "name"),
        ({"retry_statuses": {700}}, "retry_statuses"),
        ({"retry_methods": "GET"}, "retry_methods"),
        ({"retry": "three times"}, "retry"),
        ({"limiter": object()}, "limiter"),
        (
            {
                "breaker": CircuitBreaker("x", registry=CollectorRegistry()),
                "breaker_for": lambda h: None,
            },
            "not both",
        ),
        ({"hedge": 0.3}, "hedge"),
    ],
)
def test_bad_arguments_are_refused_clearly(kw: dict[str, Any], message: str) -> None:
    for cls in (ResilientTransport, AsyncResilientTransport):
        with pytest.raises(ValueError, match=message):
            cls(registry=CollectorRegistry(), **kw)


def test_the_wrong_inner_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="AsyncBaseTransport"):
        AsyncResilientTransport(httpx.HTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="BaseTransport"):
        ResilientTransport(httpx.AsyncHTTPTransport())  # type: ignore[arg-type]


def test_hedge_arguments() -> None:
    assert Hedge() == Hedge(0.3, 1) and repr(Hedge(0.5, 2)) == "Hedge(after=0.5, max_extra=2)"
    with pytest.raises(ValueError, match="after"):
        Hedge(after=0)
    with pytest.raises(ValueError, match="max_extra"):
        Hedge(max_extra=0)


def test_breaker_for_must_return_a_breaker() -> None:
    t = ResilientTransport(httpx.MockTransport(lambda r: httpx.Response(200)),
                           breaker_for=lambda host: None, registry=CollectorRegistry())  # type: ignore[arg-type,return-value]  # fmt: skip
    with httpx.Client(transport=t) as c, pytest.raises(TypeError, match="CircuitBreaker"):
        c.get("http://x/")


def test_an_empty_budget_stops_the_retries() -> None:
    clock = ManualClock()
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503)

    budget = RetryBudget(ratio=0.1, min_per_second=0, clock=clock)
    retry = Retry("b", on=httpx.TransportError, attempts=5, budget=budget, clock=clock,
                  registry=CollectorRegistry())  # fmt: skip
    t = ResilientTransport(httpx.MockTransport(handler), retry=retry, registry=CollectorRegistry())
    with httpx.Client(transport=t) as c:
        assert c.get("http://x/").status_code == 503
    assert calls == [1]


statuses = st.lists(st.sampled_from([200, 201, 404, 429, 500, 502, 503]), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(seq=statuses, method=st.sampled_from(["GET", "PUT", "POST", "PATCH"]),
       keyed=st.booleans(), attempts=st.integers(1, 5))  # fmt: skip
def test_attempts_follow_the_idempotency_rule(
    seq: list[int], method: str, keyed: bool, attempts: int
) -> None:
    """The transport makes attempts until a status not in retry_statuses, the
    policy's attempts, or the method rule stops it; the caller gets the last response."""
    served: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status = seq[min(len(served), len(seq) - 1)]
        served.append(status)
        return httpx.Response(status)

    clock = ManualClock()
    retry = Retry(
        "p",
        on=httpx.TransportError,
        attempts=attempts,
        backoff=backoff.constant(1.0),
        clock=clock,
        registry=CollectorRegistry(),
    )
    t = ResilientTransport(httpx.MockTransport(handler), retry=retry, registry=CollectorRegistry())
    headers = {"Idempotency-Key": "k"} if keyed else {}
    with httpx.Client(transport=t) as c:
        r = c.request(method, "http://x/", headers=headers, content=b"body")
    may = keyed or method in ("GET", "PUT")
    expected = 1
    if may:
        while expected < attempts and served[expected - 1] in opskit.http.RETRY_STATUSES:
            expected += 1
    assert len(served) == expected
    assert r.status_code == served[-1]
    assert clock.sleeps == [1.0] * (expected - 1)
    t.close()
