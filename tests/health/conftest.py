from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from opskit.health import HealthRegistry
from opskit.testing import ManualClock


@pytest.fixture
def metrics() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


@pytest.fixture
def make_health(metrics: CollectorRegistry) -> Iterator[object]:
    made: list[HealthRegistry] = []

    def make(**kwargs: object) -> HealthRegistry:
        kwargs.setdefault("registry", metrics)
        kwargs.setdefault("clock", ManualClock())
        # Checks meant to answer get 10 s: a loaded machine must not turn them into timeouts.
        kwargs.setdefault("default_timeout", 10.0)
        h = HealthRegistry(**kwargs)  # type: ignore[arg-type]
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()
