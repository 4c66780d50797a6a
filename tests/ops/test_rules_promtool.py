"""The generated rule file under promtool: ``check rules``, and ``test rules`` per alert.

Each alert has a case that fires (labels and rendered annotations checked) and
a near miss that stays silent, on synthetic series of one job.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ops._helpers import require_tool
from opskit.ops import Thresholds, alerts, rules_yaml

JOB = {"job": "api"}
A = {**JOB, "instance": "a:1"}


def s(metric: str, values: str, **labels: str) -> dict[str, str]:
    lab = ", ".join(f'{k}="{v}"' for k, v in {**A, **labels}.items())
    return {"series": f"{metric}{{{lab}}}", "values": values}


def s_job(metric: str, values: str, **labels: str) -> dict[str, str]:
    lab = ", ".join(f'{k}="{v}"' for k, v in {**JOB, **labels}.items())
    return {"series": f"{metric}{{{lab}}}", "values": values}


# alert -> (input series, eval time, the labels of each alert that fires (beyond
# alertname and severity) with its rendered summary), for the firing case and the near miss.
Case = tuple[list[dict[str, str]], str, list[tuple[dict[str, str], str]]]

SOLE = Thresholds(breaker_sole=("payments", "geo.v2"))

CASES: dict[str, dict[str, Any]] = {
    "OpskitBreakerOpen": {
        "fire": (
            [
                s("opskit_breaker_state", "1x10", name="search", state="open"),
                # a breaker whose probes keep failing, open and half-open in turn
                s("opskit_breaker_state", "1 0 1 0 1 0 1", name="geo", state="open"),
                s("opskit_breaker_state", "0 1 0 1 0 1 0", name="geo", state="half_open"),
            ],
            "3m",
            [
                ({**A, "name": "search"}, "Breaker search on a:1 has been open for 1m"),
                ({**A, "name": "geo"}, "Breaker geo on a:1 has been open for 1m"),
            ],
        ),
        "silent": (
            [
                s("opskit_breaker_state", "0 0 1 0 0", name="search", state="open"),
                s("opskit_breaker_state", "0 0 0 1 1", name="search", state="closed"),
                s("opskit_breaker_state", "1x10", name="manual", state="forced_open"),
            ],
            "3m",
            [],
        ),
    },
    "OpskitBreakerOpenSoleDependency": {
        "thresholds": SOLE,
        "fire": (
            [s("opskit_breaker_state", "1x10", name="payments", state="open")],
            "3m",
            [
                (
                    {**A, "name": "payments"},
                    "Breaker payments on a:1 has been open for 1m; "
                    "it is its dependency's only path",
                )
            ],
        ),
        "silent": (
            [s("opskit_breaker_state", "1x10", name="search", state="open"),
             # the dot of geo.v2 matches a dot only
             s("opskit_breaker_state", "1x10", name="geoXv2", state="open")],
            "3m",
            [],
        ),
    },
    "OpskitBreakerFlapping": {
        "fire": (
            [s("opskit_breaker_transitions_total", "0 1 1 2 2 3 3 3 3 3 3",
               name="search", from_state="closed", to_state="open")],
            "10m",
            [({**A, "name": "search"}, "Breaker search on a:1 opened 3 times from closed in 10m")],
        ),
        "silent": (
            [
                s("opskit_breaker_transitions_total", "0 1 1 2 2 2 2 2 2 2 2",
                  name="search", from_state="closed", to_state="open"),
                # re-opening after failed probes is not flapping
                s("opskit_breaker_transitions_total", "0+1x10",
                  name="search", from_state="half_open", to_state="open"),
            ],
            "10m",
            [],
        ),
    },
    "OpskitBreakerStoreErrors": {
        "fire": (
            [s("opskit_breaker_store_errors_total", "0+1x10", name="search")],
            "10m",
            [({**A, "name": "search"}, "Breaker search on a:1 met 5 Redis errors in 5m")],
        ),
        "silent": (
            [s("opskit_breaker_store_errors_total", "0 0 0 0 0 0 0 0 1 1 2", name="search")],
            "10m",
            [],
        ),
    },
    "OpskitRetryExhausted": {
        "fire": (
            [
                s("opskit_retry_calls_total", "0+60x20", name="charge", outcome="first_try"),
                s("opskit_retry_calls_total", "0+12x20", name="charge", outcome="exhausted"),
            ],
            "15m",
            [({**A, "name": "charge"},
              "Retry policy charge on a:1: 16.67% of calls give up")],
        ),
        "silent": (
            [
                # 9.09% give up: just under 10%
                s("opskit_retry_calls_total", "0+60x20", name="charge", outcome="first_try"),
                s("opskit_retry_calls_total", "0+6x20", name="charge", outcome="exhausted"),
                # errors that are not retried (failed) are not giving up
                s("opskit_retry_calls_total", "0+60x20", name="refund", outcome="first_try"),
                s("opskit_retry_calls_total", "0+30x20", name="refund", outcome="failed"),
            ],
            "15m",
            [],
        ),
    },
    "OpskitRetryBudgetExhausted": {
        "fire": (
            [s("opskit_retry_calls_total", "0+6x20", name="charge", outcome="budget_exhausted")],
            "15m",
            [({**A, "name": "charge"},
              "Retry policy charge on a:1: the retry budget refuses retries for 5m")],
        ),
        "silent": (
            [
                s("opskit_retry_calls_total", "0x20", name="charge", outcome="budget_exhausted"),
                s("opskit_retry_calls_total", "0+60x20", name="charge", outcome="exhausted"),
            ],
            "15m",
            [],
        ),
    },
    "OpskitRateLimitStoreErrors": {
        "fire": (
            [s("opskit_ratelimit_store_errors_total", "0+1x10", name="login")],
            "10m",
            [({**A, "name": "login"}, "Limiter login on a:1 met 5 store errors in 5m")],
        ),
        "silent": (
            [s("opskit_ratelimit_store_errors_total", "0 0 0 0 0 0 0 0 1 1 2", name="login")],
            "10m",
            [],
        ),
    },
    "OpskitRateLimitFailOpen": {
        "fire": (
            [s("opskit_ratelimit_fail_open_total", "0+1x10", name="login")],
            "10m",
            [({**A, "name": "login"}, "Limiter login on a:1 let 5 requests through "
                                      "unchecked in 5m")],
        ),
        # the near miss: the store fails but the policy is not allow (local, deny)
        "silent": (
            [s("opskit_ratelimit_fail_open_total", "0x10", name="login"),
             s("opskit_ratelimit_store_errors_total", "0+1x10", name="login")],
            "10m",
            [],
        ),
    },
    "OpskitRateLimitSpike": {
        "fire": (
            [s("opskit_ratelimit_decisions_total", "0+6x60 366+60x15",
               name="login", decision="limited")],
            "75m",
            [({**JOB, "name": "login"},
              "Limiter login (api) refuses 1 requests/s, far above its last hour")],
        ),
        "silent": (
            # the same 1/s, but up from 0.4/s: a rise of 2.5 times (the hour before
            # averages 0.5/s with the rise's first minutes), below the factor of 3
            [s("opskit_ratelimit_decisions_total", "0+24x60 1440+60x15",
               name="login", decision="limited"),
             s("opskit_ratelimit_decisions_total", "0+6000x75", name="login", decision="allowed"),
             # a steep rise of a trickle stays under the floor of 0.1/s
             s("opskit_ratelimit_decisions_total", "0x60 0+3x15", name="api", decision="limited")],
            "75m",
            [],
        ),
    },
    "OpskitWebhookSignatureMismatch": {
        "fire": (
            [s("opskit_webhook_verifications_total", "0+2x10",
               scheme="stripe", result="signature_mismatch")],
            "10m",
            [({**A, "scheme": "stripe"},
              "10 webhooks of stripe on a:1 failed their signature check in 5m")],
        ),
        "silent": (
            [s("opskit_webhook_verifications_total", "0+1x10",
               scheme="stripe", result="signature_mismatch"),
             s("opskit_webhook_verifications_total", "0+50x10",
               scheme="stripe", result="malformed_header")],
            "10m",
            [],
        ),
    },
    "OpskitWebhookReplay": {
        "fire": (
            [s("opskit_webhook_verifications_total", "0+1x10",
               scheme="github", result="replay_detected")],
            "10m",
            [({**A, "scheme": "github"}, "5 replayed webhooks of github on a:1 in 5m")],
        ),
        "silent": (
            [s("opskit_webhook_verifications_total", "0 0 0 0 0 0 0 0 1 2 3",
               scheme="github", result="replay_detected")],
            "10m",
            [],
        ),
    },
    "OpskitWebhookReplayStoreDown": {
        "fire": (
            [s("opskit_webhook_verifications_total", "0 0 0 0 0 1 1 1 1 1 1",
               scheme="github", result="replay_store_unavailable")],
            "6m",
            [({**A, "scheme": "github"},
              "The replay store of github on a:1 is unavailable")],
        ),
        "silent": (
            [s("opskit_webhook_verifications_total", "0x10",
               scheme="github", result="replay_store_unavailable"),
             s("opskit_webhook_verifications_total", "0+9x10", scheme="github", result="ok")],
            "6m",
            [],
        ),
    },
    "OpskitPIIKeyNearingNonceBudget": {
        "interval": "1h",
        "fire": (
            [s("opskit_pii_operations_total", "0+3000000x400", op="encrypt", key_id="1"),
             s("opskit_pii_operations_total", "0+3000000x400", op="encrypt", key_id="legacy")],
            "400h",
            [({"key_id": "1"}, "PII key 1 encrypted 1.08G values in 15d: rotate it")],
        ),
        "silent": (
            [s("opskit_pii_operations_total", "0+2900000x400", op="encrypt", key_id="2"),
             s("opskit_pii_operations_total", "0+9000000x400", op="decrypt", key_id="2")],
            "400h",
            [],
        ),
    },
    "OpskitPIIUnwrapFailures": {
        "fire": (
            [s("opskit_pii_key_wrapper_calls_total", "0 0 0 0 0 1 1 1 1 1 1",
               op="unwrap", outcome="error")],
            "6m",
            [(A, "a:1: 1 data keys failed to unwrap in 5m")],
        ),
        "silent": (
            [s("opskit_pii_key_wrapper_calls_total", "0+100x10", op="unwrap", outcome="ok")],
            "6m",
            [],
        ),
    },
    "OpskitPIIDecryptFailures": {
        "fire": (
            [s("opskit_pii_decrypt_failures_total", "0 0 0 0 0 1 1 1 1 1 1",
               reason="key_not_found"),
             s("opskit_pii_decrypt_failures_total", "0x10", reason="malformed")],
            "6m",
            [({**A, "reason": "key_not_found"},
              "a:1: 1 PII decryptions failed (key_not_found) in 5m")],
        ),
        # the near miss: many decryptions, no failure (and an old failure out of the window)
        "silent": (
            [s("opskit_pii_decrypt_failures_total", "1x20", reason="decryption_failed"),
             s("opskit_pii_operations_total", "0+100x20", op="decrypt", key_id="1")],
            "20m",
            [],
        ),
    },
    "OpskitTenantLookupFailing": {
        "fire": (
            [s("opskit_tenancy_requests_total", "0+1x10", outcome="lookup_failed")],
            "10m",
            [(A, "a:1: 5 tenant lookups failed in 5m")],
        ),
        "silent": (
            [s("opskit_tenancy_requests_total", "0 0 0 0 0 0 0 0 0 1 2", outcome="lookup_failed")],
            "10m",
            [],
        ),
    },
    "OpskitUnknownTenantSpike": {
        "fire": (
            [s("opskit_tenancy_requests_total", "0+60x20", outcome="resolved"),
             s("opskit_tenancy_requests_total", "0+30x20", outcome="unknown")],
            "15m",
            [(A, "a:1: 33.33% of requests name an unknown tenant")],
        ),
        "silent": (
            [s("opskit_tenancy_requests_total", "0+60x20", outcome="resolved"),
             s("opskit_tenancy_requests_total", "0+3x20", outcome="unknown")],
            "15m",
            [],
        ),
    },
    "OpskitHealthCheckFailing": {
        "fire": (
            [s("opskit_health_check_status", "1 1 0x10", check="db"),
             s("opskit_health_status", "1 1 0x10", group="readiness")],
            "5m",
            [({**A, "check": "db"}, "Health check db on a:1 has failed for 2m")],
        ),
        "silent": (
            # a non-critical check failing: the report warns, it does not fail
            [s("opskit_health_check_status", "1 1 0x10", check="queue"),
             s("opskit_health_status", "1 1 0.5x10", group="all")],
            "5m",
            [],
        ),
    },
    "OpskitHealthCheckDegraded": {
        "fire": (
            [s("opskit_health_check_status", "1 0.5x15", check="disk"),
             s("opskit_health_status", "1 0.5x15", group="all")],
            "13m",
            [({**A, "check": "disk"}, "Health check disk on a:1 has not passed for 10m")],
        ),
        "silent": (
            [s("opskit_health_check_status", "1 0.5x15", check="disk"),
             s("opskit_health_status", "1 0.5x15", group="all")],
            "9m",
            [],
        ),
    },
    "OpskitNotReady": {
        "fire": (
            [s("opskit_health_status", "0x10", group="readiness"),
             s_job("opskit_health_status", "1x10", instance="b:1", group="readiness")],
            "3m",
            [(A, "a:1 has not been ready for 2m")],
        ),
        "silent": (
            [s("opskit_health_status", "1 0 1 0 1 0", group="readiness"),
             s("opskit_health_status", "0x10", group="liveness-extra")],
            "5m",
            [],
        ),
    },
    "OpskitNoInstanceReady": {
        "fire": (
            [s("opskit_health_status", "0x10", group="readiness"),
             s_job("opskit_health_status", "0x10", instance="b:1", group="readiness")],
            "3m",
            [(JOB, "No instance of api has been ready for 2m")],
        ),
        "silent": (
            [s("opskit_health_status", "0x10", group="readiness"),
             s_job("opskit_health_status", "1x10", instance="b:1", group="readiness")],
            "3m",
            [],
        ),
    },
    "OpskitHTTPAttemptErrors": {
        "fire": (
            [s("opskit_http_attempts_total", "0+60x20", client="payments", outcome="ok"),
             s("opskit_http_attempts_total", "0+12x20", client="payments", outcome="timeout")],
            "15m",
            [({**A, "client": "payments"},
              "HTTP client payments on a:1: 16.67% of attempts fail")],
        ),
        "silent": (
            # 9.09% fail: just under 10%; cancelled attempts (a hedge's loser) are not failures
            [s("opskit_http_attempts_total", "0+60x20", client="payments", outcome="ok"),
             s("opskit_http_attempts_total", "0+6x20", client="payments", outcome="error"),
             s("opskit_http_attempts_total", "0+60x20", client="search", outcome="ok"),
             s("opskit_http_attempts_total", "0+30x20", client="search", outcome="cancelled")],
            "15m",
            [],
        ),
    },
    "OpskitHTTPHedgeRate": {
        "fire": (
            [s("opskit_http_requests_total", "0+60x20", client="search", outcome="ok"),
             s("opskit_http_requests_total", "0+30x20", client="search", outcome="hedged")],
            "15m",
            [({**A, "client": "search"},
              "HTTP client search on a:1: 33.33% of calls are answered by a hedge")],
        ),
        "silent": (
            [s("opskit_http_requests_total", "0+60x20", client="search", outcome="ok"),
             s("opskit_http_requests_total", "0+6x20", client="search", outcome="hedged")],
            "15m",
            [],
        ),
    },
    "OpskitTelemetryErrors": {
        "fire": (
            [s("opskit_telemetry_errors_total", "0 0 0 0 0 1 1 1 1 1 1", kind="log")],
            "10m",
            [({**A, "kind": "log"}, "a:1: 1 opskit log calls failed in 10m")],
        ),
        "silent": ([s("opskit_telemetry_errors_total", "0x10", kind="log")], "10m", []),
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool", "prometheus")


def _write_rules(tmp: Path, t: Thresholds) -> Path:
    path = tmp / "opskit-rules.yml"
    path.write_text(rules_yaml(t))
    return path


def test_check_rules_default_and_configured(promtool: str, tmp_path: Path) -> None:
    odd = Thresholds(breaker_sole=("pay.ments", "geo-v2", "a(b)"), health_readiness_group="ready")
    for t in (Thresholds(), SOLE, odd):
        path = _write_rules(tmp_path, t)
        out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                             text=True, timeout=60, check=False)  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert "SUCCESS" in out.stdout + out.stderr


def test_every_alert_has_a_case() -> None:
    names = {a.name for a in alerts(SOLE)}
    assert names == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_alert_fires_and_stays_silent(promtool: str, tmp_path: Path, name: str) -> None:
    case = CASES[name]
    t: Thresholds = case.get("thresholds", Thresholds())
    rules = _write_rules(tmp_path, t)
    alert = next(a for a in alerts(t) if a.name == name)
    link = f"{t.runbook_base}#{name.lower()}"
    tests = []
    for kind in ("fire", "silent"):
        series, at, expected = case[kind]
        exp = [
            {
                "exp_labels": {**labels, "severity": alert.severity},
                "exp_annotations": {
                    "summary": summary,
                    "description": alert.description,
                    "runbook": link,
                    "runbook_url": link,
                },
            }
            for labels, summary in expected
        ]
        assert (kind == "fire") == bool(exp)
        tests.append({
            "name": f"{name} {kind}",
            "interval": case.get("interval", "1m"),
            "input_series": series,
            "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": exp}],
        })  # fmt: skip
    spec = tmp_path / "test.yml"
    # JSON is YAML: promtool reads it as its unit-test file.
    every = case.get("interval", "1m")  # evaluating each minute of 400 hours takes minutes
    spec.write_text(json.dumps({"rule_files": [rules.name], "evaluation_interval": every,
                                "tests": tests}))  # fmt: skip
    out = subprocess.run([promtool, "test", "rules", spec.name], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
