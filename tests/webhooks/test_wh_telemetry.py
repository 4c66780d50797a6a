"""A broken log sink never changes a webhook verdict."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from _telemetry import SINKS, broken_logging, log_errors
from opskit.webhooks import GitHub, SignatureMismatch
from webhooks._wh import GH_BODY, GH_SECRET, GH_SIG


@pytest.mark.parametrize("sink", SINKS)
def test_verdicts_hold_when_the_rejection_log_fails(sink: str) -> None:
    scheme = GitHub(GH_SECRET, registry=CollectorRegistry())
    before = log_errors()
    with broken_logging(sink):
        assert scheme.verify(GH_BODY, {"X-Hub-Signature-256": GH_SIG}).body == GH_BODY
        with pytest.raises(SignatureMismatch):
            scheme.verify(GH_BODY + b"!", {"X-Hub-Signature-256": GH_SIG})
    assert log_errors() == before + 1  # the webhooks.rejected debug event
