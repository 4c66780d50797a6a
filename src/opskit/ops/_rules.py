"""The Prometheus rule file: per-instance recording rules and the alerts.

:func:`rule_groups` builds the document (plain dicts and lists) from
:class:`~opskit.ops.Thresholds`; :func:`rules_yaml` prints it. Every alert has
a ``severity`` label and ``summary``, ``description`` and ``runbook`` (also as
``runbook_url``, the name Alertmanager templates and Grafana look for)
annotations; the runbook is the alert's section of docs/operations.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from opskit.ops._config import Thresholds
from opskit.ops._yaml import dump

__all__ = ["Alert", "alerts", "recording_rules", "rule_groups", "rules_yaml"]

W = "5m"  # the rate window of the recording rules (their names say it)


@dataclass(frozen=True)
class Alert:
    name: str
    module: str
    expr: str
    severity: str
    summary: str
    description: str
    for_: str | None = None


def _regex(names: tuple[str, ...]) -> str:
    """A PromQL string literal's body matching exactly ``names`` (RE2, anchored by PromQL)."""
    return "|".join(re.sub(r"([.^$*+?()\[\]{}|\-])", r"\\\\\1", n) for n in names)


def recording_rules() -> list[dict[str, str]]:
    def rec(family: str, by: str) -> dict[str, str]:
        base = family.removesuffix("_total")
        return {
            "record": f"instance:{base}:rate{W}",
            "expr": f"sum by (job, instance, {by}) (rate({family}[{W}]))",
        }

    return [
        rec("opskit_breaker_calls_total", "name, outcome"),
        rec("opskit_retry_calls_total", "name, outcome"),
        rec("opskit_ratelimit_decisions_total", "name, decision"),
        rec("opskit_webhook_verifications_total", "scheme, result"),
        rec("opskit_pii_operations_total", "op, key_id"),
        rec("opskit_tenancy_requests_total", "outcome"),
        rec("opskit_http_requests_total", "client, outcome"),
        rec("opskit_http_attempts_total", "client, outcome"),
    ]


def alerts(t: Thresholds) -> list[Alert]:
    out: list[Alert] = []
    add = out.append

    # -- breaker ------------------------------------------------------------------------
    not_closed = 'opskit_breaker_state{state=~"open|half_open"%s}'
    if t.breaker_sole:
        sole = _regex(t.breaker_sole)
        sole_open = not_closed % f', name=~"{sole}"'
        add(Alert(
            "OpskitBreakerOpenSoleDependency", "breaker",
            f"max by (job, instance, name) ({sole_open}) == 1",
            "critical",
            "Breaker {{ $labels.name }} on {{ $labels.instance }} has been open for "
            f"{t.breaker_open_for}; it is its dependency's only path",
            "Every call to this dependency is refused without being tried, and there is "
            "no fallback breaker: the feature behind it is down.",
            t.breaker_open_for,
        ))  # fmt: skip
        others = f', name!~"{sole}"'
    else:
        others = ""
    add(Alert(
        "OpskitBreakerOpen", "breaker",
        f"max by (job, instance, name) ({not_closed % others}) == 1",
        "warning",
        "Breaker {{ $labels.name }} on {{ $labels.instance }} has been open for "
        f"{t.breaker_open_for}",
        "The breaker has not closed again (open, or half-open with its probes failing): "
        "calls to its dependency are refused.",
        t.breaker_open_for,
    ))  # fmt: skip
    add(Alert(
        "OpskitBreakerFlapping", "breaker",
        "sum by (job, instance, name) (increase(opskit_breaker_transitions_total"
        f'{{from_state="closed", to_state="open"}}[{t.breaker_flap_window}])) '
        f">= {t.breaker_flap_opens}",
        "warning",
        "Breaker {{ $labels.name }} on {{ $labels.instance }} opened {{ $value | humanize }} "
        f"times from closed in {t.breaker_flap_window}",
        "The dependency fails intermittently: the breaker opens, recovers and opens again.",
    ))  # fmt: skip
    add(Alert(
        "OpskitBreakerStoreErrors", "breaker",
        f"sum by (job, instance, name) (increase(opskit_breaker_store_errors_total[{W}])) "
        f"> {t.breaker_store_errors}",
        "warning",
        "Breaker {{ $labels.name }} on {{ $labels.instance }} met {{ $value | humanize }} "
        f"Redis errors in {W}",
        "The shared breaker store (Redis) fails; the breaker follows its on_error policy.",
    ))  # fmt: skip

    # -- retry --------------------------------------------------------------------------
    calls = f"sum by (job, instance, name) (instance:opskit_retry_calls:rate{W}%s)"
    all_calls = calls % ""
    gave_up = calls % '{outcome=~"exhausted|deadline_exceeded"}'
    refused = calls % '{outcome="budget_exhausted"}'
    add(Alert(
        "OpskitRetryExhausted", "retry",
        f"{gave_up} / {all_calls} > {t.retry_exhausted_ratio:g} "
        f"and {all_calls} > {t.retry_min_rate:g}",
        "warning",
        "Retry policy {{ $labels.name }} on {{ $labels.instance }}: "
        "{{ $value | humanizePercentage }} of calls give up",
        "Calls still fail after every attempt (or their deadline): the dependency is down "
        "for longer than the policy's attempts cover.",
        "5m",
    ))  # fmt: skip
    add(Alert(
        "OpskitRetryBudgetExhausted", "retry",
        f"{refused} > 0",
        "warning",
        "Retry policy {{ $labels.name }} on {{ $labels.instance }}: the retry budget "
        f"refuses retries for {t.retry_budget_for}",
        "Failures are frequent enough that the budget stops retries to protect the "
        "dependency from a retry storm; callers see first-attempt errors.",
        t.retry_budget_for,
    ))  # fmt: skip

    # -- ratelimit ----------------------------------------------------------------------
    add(Alert(
        "OpskitRateLimitStoreErrors", "ratelimit",
        f"sum by (job, instance, name) (increase(opskit_ratelimit_store_errors_total[{W}])) "
        f"> {t.ratelimit_store_errors}",
        "warning",
        "Limiter {{ $labels.name }} on {{ $labels.instance }} met {{ $value | humanize }} "
        f"store errors in {W}",
        "The shared limiter store (Redis) fails; decisions follow the limiter's on_error "
        "policy (allow: no limit is enforced; deny: every request is refused).",
    ))  # fmt: skip
    add(Alert(
        "OpskitRateLimitFailOpen", "ratelimit",
        "sum by (job, instance, name) (increase(opskit_ratelimit_fail_open_total"
        f"[{W}])) > 0",
        "critical",
        "Limiter {{ $labels.name }} on {{ $labels.instance }} let {{ $value | humanize }} "
        f"requests through unchecked in {W}",
        "Its shared store (Redis) fails and its on_error policy is allow: no limit is "
        "enforced on what it protects while the outage lasts.",
    ))  # fmt: skip
    limited_now = (
        f'sum by (job, name) (instance:opskit_ratelimit_decisions:rate{W}{{decision="limited"}})'
    )
    limited_before = (
        'sum by (job, name) (rate(opskit_ratelimit_decisions_total{decision="limited"}'
        f"[1h] offset {W}))"
    )
    add(Alert(
        "OpskitRateLimitSpike", "ratelimit",
        f"{limited_now} > {t.ratelimit_spike_factor:g} * {limited_before} "
        f"and {limited_now} > {t.ratelimit_spike_min_rate:g}",
        "warning",
        "Limiter {{ $labels.name }} ({{ $labels.job }}) refuses {{ $value | humanize }} "
        "requests/s, far above its last hour",
        "A sudden rise of 429s: a client in a loop, a credential-stuffing attempt on a "
        "login, or a limit set too low for a traffic change.",
        "5m",
    ))  # fmt: skip

    # -- webhooks -----------------------------------------------------------------------
    def verdicts(result: str) -> str:
        return (
            "sum by (job, instance, scheme) (increase(opskit_webhook_verifications_total"
            f'{{result="{result}"}}[{W}]))'
        )

    add(Alert(
        "OpskitWebhookSignatureMismatch", "webhooks",
        f"{verdicts('signature_mismatch')} > {t.webhooks_mismatch}",
        "warning",
        "{{ $value | humanize }} webhooks of {{ $labels.scheme }} on {{ $labels.instance }} "
        f"failed their signature check in {W}",
        "Usually a rotated or wrong secret (the sender signs with a secret this service "
        "does not hold); otherwise forged requests.",
    ))  # fmt: skip
    add(Alert(
        "OpskitWebhookReplay", "webhooks",
        f"{verdicts('replay_detected')} > {t.webhooks_replay}",
        "warning",
        "{{ $value | humanize }} replayed webhooks of {{ $labels.scheme }} on "
        f"{{{{ $labels.instance }}}} in {W}",
        "Deliveries already accepted arrive again: a sender retrying deliveries it thinks "
        "failed, or an attacker replaying captured requests.",
    ))  # fmt: skip
    add(Alert(
        "OpskitWebhookReplayStoreDown", "webhooks",
        f"{verdicts('replay_store_unavailable')} > 0",
        "critical",
        "The replay store of {{ $labels.scheme }} on {{ $labels.instance }} is unavailable",
        "Webhooks are refused because their replay check cannot be made (fail closed).",
    ))  # fmt: skip

    # -- pii ----------------------------------------------------------------------------
    add(Alert(
        "OpskitPIIKeyNearingNonceBudget", "pii",
        'sum by (key_id) (increase(opskit_pii_operations_total{op="encrypt", '
        f'key_id!="legacy"}}[{t.pii_nonce_window}])) > {t.pii_nonce_budget}',
        "warning",
        "PII key {{ $labels.key_id }} encrypted {{ $value | humanize }} values in "
        f"{t.pii_nonce_window}: rotate it",
        "Random 96-bit nonces must stay far below 2^32 encryptions per key; past the "
        "budget, a repeated nonce (which breaks AES-GCM) becomes a real risk.",
    ))  # fmt: skip
    add(Alert(
        "OpskitPIIUnwrapFailures", "pii",
        "sum by (job, instance) (increase(opskit_pii_key_wrapper_calls_total"
        f'{{op="unwrap", outcome=~"rejected|error"}}[{W}])) > {t.pii_unwrap_failures}',
        "critical",
        "{{ $labels.instance }}: {{ $value | humanize }} data keys failed to unwrap in " + W,
        "Envelope-encrypted fields cannot be decrypted: the key wrapper (KMS) errs or "
        "rejects the wrapped key (wrong KEK, missing permission, tampered data).",
    ))  # fmt: skip

    add(Alert(
        "OpskitPIIDecryptFailures", "pii",
        "sum by (job, instance, reason) (increase(opskit_pii_decrypt_failures_total"
        f"[{W}])) > {t.pii_decrypt_failures}",
        "warning",
        "{{ $labels.instance }}: {{ $value | humanize }} PII decryptions failed "
        f"({{{{ $labels.reason }}}}) in {W}",
        "Stored values do not decrypt: tokens cut or rewritten (malformed), written under "
        "a key the keyring no longer holds (key_not_found), or tampered with, read with "
        "the wrong context or key (decryption_failed).",
    ))  # fmt: skip

    # -- tenancy ------------------------------------------------------------------------
    tenants = f"sum by (job, instance) (instance:opskit_tenancy_requests:rate{W}%s)"
    unknown = tenants % '{outcome="unknown"}'
    add(Alert(
        "OpskitTenantLookupFailing", "tenancy",
        "sum by (job, instance) (increase(opskit_tenancy_requests_total"
        f'{{outcome="lookup_failed"}}[{W}])) > {t.tenancy_lookup_failures}',
        "warning",
        "{{ $labels.instance }}: {{ $value | humanize }} tenant lookups failed in " + W,
        "The tenant lookup (database, cache) fails; those requests are answered 503.",
    ))  # fmt: skip
    add(Alert(
        "OpskitUnknownTenantSpike", "tenancy",
        f"{unknown} / {tenants % ''} > {t.tenancy_unknown_ratio:g} "
        f"and {unknown} > {t.tenancy_unknown_min_rate:g}",
        "warning",
        "{{ $labels.instance }}: {{ $value | humanizePercentage }} of requests name an "
        "unknown tenant",
        "Clients send tenant ids that do not exist: enumeration, a deleted tenant still "
        "in use, or a client misconfigured after a migration.",
        "5m",
    ))  # fmt: skip

    # -- health -------------------------------------------------------------------------
    failing_group = "on (job, instance) (min by (job, instance) (opskit_health_status) == 0)"
    add(Alert(
        "OpskitHealthCheckFailing", "health",
        f"min by (job, instance, check) (opskit_health_check_status) == 0 and {failing_group}",
        "critical",
        "Health check {{ $labels.check }} on {{ $labels.instance }} has failed for "
        f"{t.health_critical_for}",
        "A critical check fails and the service reports itself failing.",
        t.health_critical_for,
    ))  # fmt: skip
    add(Alert(
        "OpskitHealthCheckDegraded", "health",
        f"min by (job, instance, check) (opskit_health_check_status) < 1 "
        f"unless {failing_group}",
        "warning",
        "Health check {{ $labels.check }} on {{ $labels.instance }} has not passed for "
        f"{t.health_degraded_for}",
        "A check warns, or a non-critical check fails: the service still serves, degraded.",
        t.health_degraded_for,
    ))  # fmt: skip
    ready = f'opskit_health_status{{group="{t.health_readiness_group}"}}'
    add(Alert(
        "OpskitNotReady", "health",
        f"min by (job, instance) ({ready}) == 0",
        "warning",
        "{{ $labels.instance }} has not been ready for " + t.health_readiness_for,
        "Readiness fails: the orchestrator sends this instance no traffic.",
        t.health_readiness_for,
    ))  # fmt: skip
    add(Alert(
        "OpskitNoInstanceReady", "health",
        f"max by (job) ({ready}) == 0",
        "critical",
        "No instance of {{ $labels.job }} has been ready for " + t.health_readiness_for,
        "Every instance fails readiness: the service is down for its users.",
        t.health_readiness_for,
    ))  # fmt: skip

    # -- http ---------------------------------------------------------------------------
    attempts = f"sum by (job, instance, client) (instance:opskit_http_attempts:rate{W}%s)"
    failed = attempts % '{outcome=~"error|timeout|status"}'
    add(Alert(
        "OpskitHTTPAttemptErrors", "http",
        f"{failed} / {attempts % ''} > {t.http_error_ratio:g} "
        f"and {attempts % ''} > {t.http_min_rate:g}",
        "warning",
        "HTTP client {{ $labels.client }} on {{ $labels.instance }}: "
        "{{ $value | humanizePercentage }} of attempts fail",
        "Attempts to the upstream fail (connection errors, timeouts, retryable statuses); "
        "retries may still hide it from callers, at the cost of load and latency.",
        "5m",
    ))  # fmt: skip
    requests = f"sum by (job, instance, client) (instance:opskit_http_requests:rate{W}%s)"
    hedged = requests % '{outcome="hedged"}'
    add(Alert(
        "OpskitHTTPHedgeRate", "http",
        f"{hedged} / {requests % ''} > {t.http_hedge_ratio:g} "
        f"and {requests % ''} > {t.http_min_rate:g}",
        "warning",
        "HTTP client {{ $labels.client }} on {{ $labels.instance }}: "
        "{{ $value | humanizePercentage }} of calls are answered by a hedge",
        "The upstream's latency rose: hedges fire far more often than the delay was set for.",
        "5m",
    ))  # fmt: skip

    # -- telemetry ----------------------------------------------------------------------
    add(Alert(
        "OpskitTelemetryErrors", "telemetry",
        "sum by (job, instance, kind) (increase(opskit_telemetry_errors_total[10m])) "
        f"> {t.telemetry_errors}",
        "warning",
        "{{ $labels.instance }}: {{ $value | humanize }} opskit {{ $labels.kind }} calls "
        "failed in 10m",
        "Logging or metrics inside opskit fail (and are ignored): events or samples are lost.",
    ))  # fmt: skip
    return out


def _anchor(name: str) -> str:
    return name.lower()


def rule_groups(t: Thresholds | None = None) -> dict[str, Any]:
    """The rule file as a document: ``{"groups": [...]}``."""
    t = Thresholds() if t is None else t
    groups: list[dict[str, Any]] = [
        {"name": "opskit.recording", "rules": recording_rules()},
    ]
    by_module: dict[str, list[dict[str, Any]]] = {}
    for a in alerts(t):
        link = f"{t.runbook_base}#{_anchor(a.name)}"
        rule: dict[str, Any] = {"alert": a.name, "expr": a.expr}
        if a.for_ is not None:
            rule["for"] = a.for_
        rule["labels"] = {"severity": a.severity}
        rule["annotations"] = {
            "summary": a.summary,
            "description": a.description,
            "runbook": link,
            "runbook_url": link,
        }
        by_module.setdefault(a.module, []).append(rule)
    for module, rules in by_module.items():
        groups.append({"name": f"opskit.{module}", "rules": rules})
    return {"groups": groups}


def rules_yaml(t: Thresholds | None = None) -> str:
    """The rule file as YAML text, ready for ``rule_files:`` (and ``promtool check rules``)."""
    header = (
        "# opskit alerting and recording rules (opskit ops rules).\n"
        "# Runbook: docs/operations.md. Regenerate rather than edit: thresholds are flags\n"
        "# and a --config file.\n"
    )
    return header + dump(rule_groups(t))
