"""The metric families opskit exports, by module: what the rules and the dashboard read.

This is the documented list (docs/operations.md shows it as a table). A test
builds a live instance of every primitive on a ``CollectorRegistry`` and checks
that each family named here, and each one a rule or a panel uses, is exported.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAMILIES", "MODULES", "Family"]


@dataclass(frozen=True)
class Family:
    """One exported metric family: ``name`` as scraped (counters end in ``_total``)."""

    name: str
    module: str
    kind: str  # "counter" or "gauge"
    labels: tuple[str, ...]
    help: str
    #: The PromQL a dashboard panel plots for it; ``$__rate_interval`` and the
    #: ``job`` / ``instance`` template variables are filled by Grafana.
    panel_expr: str
    legend: str
    unit: str = "short"


#: Module -> the title of its dashboard row.
MODULES: dict[str, str] = {
    "breaker": "Circuit breakers",
    "retry": "Retries",
    "ratelimit": "Rate limiting",
    "webhooks": "Webhooks",
    "pii": "PII encryption",
    "tenancy": "Tenancy",
    "health": "Health",
    "http": "HTTP clients",
    "telemetry": "opskit telemetry",
}

_SEL = 'job=~"$job", instance=~"$instance"'


def _rate(name: str, by: str) -> str:
    return f"sum by (instance, {by}) (rate({name}{{{_SEL}}}[$__rate_interval]))"


def _counter(name: str, module: str, labels: tuple[str, ...], unit: str, help: str) -> Family:
    """A counter whose panel plots its rate per instance and each of its labels."""
    legend = " ".join(["{{instance}}", *(f"{{{{{label}}}}}" for label in labels)])
    return Family(name, module, "counter", labels, help, _rate(name, ", ".join(labels)),
                  legend, unit)  # fmt: skip


FAMILIES: tuple[Family, ...] = (
    Family(
        "opskit_breaker_state", "breaker", "gauge", ("name", "state"),
        "1 for the breaker's current state, 0 for the others.",
        f'max by (instance, name, state) (opskit_breaker_state{{{_SEL}}}) == 1',
        "{{instance}} {{name}} {{state}}",
    ),
    _counter("opskit_breaker_calls_total", "breaker", ("name", "outcome"), "reqps",
             "Calls through the breaker, by outcome."),
    Family(
        "opskit_breaker_transitions_total", "breaker", "counter",
        ("name", "from_state", "to_state"), "State transitions.",
        "sum by (instance, name, to_state) "
        f"(increase(opskit_breaker_transitions_total{{{_SEL}}}[$__rate_interval]))",
        "{{instance}} {{name}} -> {{to_state}}",
    ),
    _counter("opskit_breaker_store_errors_total", "breaker", ("name",), "ops",
             "Redis errors met by the breaker's shared store."),
    _counter("opskit_retry_calls_total", "retry", ("name", "outcome"), "reqps",
             "Calls through a retry policy, by how they ended."),
    _counter("opskit_retry_retries_total", "retry", ("name",), "ops",
             "Retries scheduled (waits begun)."),
    _counter("opskit_ratelimit_decisions_total", "ratelimit", ("name", "decision"), "reqps",
             "Rate limit decisions."),
    _counter("opskit_ratelimit_store_errors_total", "ratelimit", ("name",), "ops",
             "Errors from the limiter's shared store."),
    _counter("opskit_ratelimit_fail_open_total", "ratelimit", ("name",), "ops",
             "Checks allowed unchecked (on_error='allow') while the shared store failed."),
    _counter("opskit_webhook_verifications_total", "webhooks", ("scheme", "result"), "reqps",
             "Webhook verifications by scheme and result (ok or the failure reason)."),
    Family(
        "opskit_pii_operations_total", "pii", "counter", ("op", "key_id"),
        "opskit.pii operations, by operation and key id.",
        _rate("opskit_pii_operations_total", "op, key_id"),
        "{{instance}} {{op}} key {{key_id}}", "ops",
    ),
    _counter("opskit_pii_key_wrapper_calls_total", "pii", ("op", "outcome"), "ops",
             "Envelope key wrapper (KMS) calls, by operation (wrap, unwrap) and outcome."),
    _counter("opskit_pii_decrypt_failures_total", "pii", ("reason",), "ops",
             "Decryptions that failed, by reason (malformed, key_not_found, decryption_failed)."),
    _counter("opskit_tenancy_requests_total", "tenancy", ("outcome",), "reqps",
             "Requests seen by TenantMiddleware, by outcome."),
    Family(
        "opskit_health_check_status", "health", "gauge", ("check",),
        "Last result of a health check (1 pass, 0.5 warn, 0 fail).",
        f"min by (instance, check) (opskit_health_check_status{{{_SEL}}})",
        "{{instance}} {{check}}",
    ),
    Family(
        "opskit_health_check_duration_seconds", "health", "gauge", ("check",),
        "Duration of a health check's last run.",
        f"max by (instance, check) (opskit_health_check_duration_seconds{{{_SEL}}})",
        "{{instance}} {{check}}", "s",
    ),
    Family(
        "opskit_health_status", "health", "gauge", ("group",),
        "Last aggregated status of a group (1 pass, 0.5 warn, 0 fail).",
        f"min by (instance, group) (opskit_health_status{{{_SEL}}})",
        "{{instance}} {{group}}",
    ),
    _counter("opskit_http_requests_total", "http", ("client", "outcome"), "reqps",
             "Calls through an opskit.http transport, by how they ended."),
    _counter("opskit_http_attempts_total", "http", ("client", "outcome"), "reqps",
             "Attempts (retries and hedges included), by outcome."),
    _counter("opskit_telemetry_errors_total", "telemetry", ("kind",), "ops",
             "Log and metrics calls inside opskit that failed and were ignored."),
)  # fmt: skip
