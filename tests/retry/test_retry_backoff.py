from __future__ import annotations

import random
import statistics
from types import SimpleNamespace

import pytest

from opskit.retry import backoff


def test_schedules_without_jitter() -> None:
    e = backoff.exponential(initial=0.1, maximum=1.0, multiplier=2.0, jitter="none")
    assert [e.delay(n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert e.delay(10_000) == 1.0  # no overflow
    lin = backoff.linear(initial=1, increment=0.5, maximum=2.2)
    assert [lin.delay(n) for n in range(1, 5)] == [1.0, 1.5, 2.0, 2.2]
    assert backoff.constant(3).delay(9) == 3.0


@pytest.mark.parametrize("jitter", ["full", "equal", "none"])
def test_jitter_bounds_and_mean(jitter: backoff.Jitter) -> None:
    b = backoff.exponential(initial=1, maximum=100, jitter=jitter, rng=random.Random(7))
    for n, d in ((1, 1.0), (3, 4.0), (5, 16.0)):
        xs = [b.delay(n) for _ in range(4000)]
        lo, hi, mean = {"full": (0, d, d / 2), "equal": (d / 2, d, 3 * d / 4),
                        "none": (d, d, d)}[jitter]  # fmt: skip
        assert min(xs) >= lo and max(xs) <= hi
        assert statistics.fmean(xs) == pytest.approx(mean, rel=0.05)
        if jitter != "none":  # spread over the whole range, not a constant
            assert max(xs) - min(xs) > 0.9 * (hi - lo)


def test_decorrelated_jitter() -> None:
    b = backoff.exponential(initial=1, maximum=20, jitter="decorrelated", rng=random.Random(3))
    prev = 0.0
    seen = []
    for n in range(1, 2000):
        d = b.delay(n, prev)
        assert 1 <= d <= min(20, max(prev, 1) * 3)
        seen.append(d)
        prev = d
    assert max(seen) == pytest.approx(20, abs=2)  # climbs to the cap
    xs = [b.delay(1, 0.0) for _ in range(4000)]  # first wait: uniform(initial, 3*initial)
    assert statistics.fmean(xs) == pytest.approx(2.0, rel=0.05)


def test_seeded_rng_is_reproducible_and_tenacity_compatible() -> None:
    a = backoff.exponential(jitter="full", rng=random.Random(1))
    b = backoff.exponential(jitter="full", rng=random.Random(1))
    assert [a.delay(n) for n in range(1, 6)] == [b.delay(n) for n in range(1, 6)]
    c = backoff.constant(2.0)
    assert c(SimpleNamespace(attempt_number=1, upcoming_sleep=0.0)) == 2.0


@pytest.mark.parametrize(
    ("factory", "param"),
    [
        (lambda: backoff.exponential(initial=0), "initial"),
        (lambda: backoff.exponential(initial=-1), "initial"),
        (lambda: backoff.exponential(maximum=0.01, initial=1), "maximum"),
        (lambda: backoff.exponential(multiplier=0.5), "multiplier"),
        (lambda: backoff.exponential(jitter="wild"), "jitter"),  # type: ignore[arg-type]
        (lambda: backoff.constant(-1), "seconds"),
        (lambda: backoff.constant(float("nan")), "seconds"),
        (lambda: backoff.linear(increment=-1), "increment"),
        (lambda: backoff.linear(initial=5, maximum=1), "maximum"),
    ],
)
def test_invalid_backoff_names_the_parameter(factory: object, param: str) -> None:
    with pytest.raises(ValueError, match=param):
        factory()  # type: ignore[operator]
