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


FAMILIES: tuple[Family, ...] = (
    Family(
        "opskit_breaker_state", "breaker", "gauge", ("name", "state"),
        "1 for the breaker's current state, 0 for the others.",
        f'max by (instance, name, state) (opskit_breaker_state{{{_SEL}}}) == 1',
        "{{instance}} {{name}} {{state}}",
    ),
    Family(
        "opskit_breaker_calls_total", "breaker", "counter", ("name", "outcome"),
        "Calls through the breaker, by outcome.",
        _rate("opskit_breaker_calls_total", "name, outcome"),
        "{{instance}} {{name}} {{outcome}}", "reqps",
    ),
    Family(
        "opskit_breaker_transitions_total", "breaker", "counter",
        ("name", "from_state", "to_state"), "State transitions.",
        "sum by (instance, name, to_state) "
        f"(increase(opskit_breaker_transitions_total{{{_SEL}}}[$__rate_interval]))",
        "{{instance}} {{name}} -> {{to_state}}",
    ),
    Family(
        "opskit_breaker_store_errors_total", "breaker", "counter", ("name",),
        "Redis errors met by the breaker's shared store.",
        _rate("opskit_breaker_store_errors_total", "name"),
        "{{instance}} {{name}}", "ops",
    ),
    Family(
        "opskit_retry_calls_total", "retry", "counter", ("name", "outcome"),
        "Calls through a retry policy, by how they ended.",
        _rate("opskit_retry_calls_total", "name, outcome"),
        "{{instance}} {{name}} {{outcome}}", "reqps",
    ),
    Family(
        "opskit_retry_retries_total", "retry", "counter", ("name",),
        "Retries scheduled (waits begun).",
        _rate("opskit_retry_retries_total", "name"),
        "{{instance}} {{name}}", "ops",
    ),
    Family(
        "opskit_ratelimit_decisions_total", "ratelimit", "counter", ("name", "decision"),
        "Rate limit decisions.",
        _rate("opskit_ratelimit_decisions_total", "name, decision"),
        "{{instance}} {{name}} {{decision}}", "reqps",
    ),
    Family(
        "opskit_ratelimit_store_errors_total", "ratelimit", "counter", ("name",),
        "Errors from the limiter's shared store.",
        _rate("opskit_ratelimit_store_errors_total", "name"),
        "{{instance}} {{name}}", "ops",
    ),
    Family(
        "opskit_ratelimit_fail_open_total", "ratelimit", "counter", ("name",),
        "Checks allowed unchecked (on_error='allow') while the shared store failed.",
        _rate("opskit_ratelimit_fail_open_total", "name"),
        "{{instance}} {{name}}", "ops",
    ),
    Family(
        "opskit_webhook_verifications_total", "webhooks", "counter", ("scheme", "result"),
        "Webhook verifications by scheme and result (ok or the failure reason).",
        _rate("opskit_webhook_verifications_total", "scheme, result"),
        "{{instance}} {{scheme}} {{result}}", "reqps",
    ),
    Family(
        "opskit_pii_operations_total", "pii", "counter", ("op", "key_id"),
        "opskit.pii operations, by operation and key id.",
        _rate("opskit_pii_operations_total", "op, key_id"),
        "{{instance}} {{op}} key {{key_id}}", "ops",
    ),
    Family(
        "opskit_pii_key_wrapper_calls_total", "pii", "counter", ("op", "outcome"),
        "Envelope key wrapper (KMS) calls, by operation (wrap, unwrap) and outcome.",
        _rate("opskit_pii_key_wrapper_calls_total", "op, outcome"),
        "{{instance}} {{op}} {{outcome}}", "ops",
    ),
    Family(
        "opskit_pii_decrypt_failures_total", "pii", "counter", ("reason",),
        "Decryptions that failed, by reason (malformed, key_not_found, decryption_failed).",
        _rate("opskit_pii_decrypt_failures_total", "reason"),
        "{{instance}} {{reason}}", "ops",
    ),
    Family(
        "opskit_tenancy_requests_total", "tenancy", "counter", ("outcome",),
        "Requests seen by TenantMiddleware, by outcome.",
        _rate("opskit_tenancy_requests_total", "outcome"),
        "{{instance}} {{outcome}}", "reqps",
    ),
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
    Family(
        "opskit_http_requests_total", "http", "counter", ("client", "outcome"),
        "Calls through an opskit.http transport, by how they ended.",
        _rate("opskit_http_requests_total", "client, outcome"),
        "{{instance}} {{client}} {{outcome}}", "reqps",
    ),
    Family(
        "opskit_http_attempts_total", "http", "counter", ("client", "outcome"),
        "Attempts (retries and hedges included), by outcome.",
        _rate("opskit_http_attempts_total", "client, outcome"),
        "{{instance}} {{client}} {{outcome}}", "reqps",
    ),
    Family(
        "opskit_telemetry_errors_total", "telemetry", "counter", ("kind",),
        "Log and metrics calls inside opskit that failed and were ignored.",
        _rate("opskit_telemetry_errors_total", "kind"),
        "{{instance}} {{kind}}", "ops",
    ),
)  # fmt: skip
