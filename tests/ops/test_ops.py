"""opskit.ops: thresholds, the CLI, the dashboard's model, and the metric names both use."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from opskit.breaker import CircuitBreaker, RedisBreakerStore
from opskit.cli import main as cli_main
from opskit.health import CheckResult, HealthRegistry, Status, checks
from opskit.http import ResilientTransport
from opskit.ops import FAMILIES, ConfigError, Thresholds, alerts, rule_groups, rules_yaml
from opskit.ops._yaml import dump
from opskit.pii import EnvelopeCipher, Keyring, LocalKEK, PIICipher
from opskit.ratelimit import RateLimiter
from opskit.retry import Retry
from opskit.tenancy.asgi import TenantMiddleware
from opskit.webhooks import StandardWebhooks

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


# -- the names every primitive exports, read from live instances ---------------------------


@pytest.fixture(scope="module")
def exported() -> Iterator[set[str]]:
    reg = CollectorRegistry(auto_describe=True)
    # A client for a port nothing listens on: building the store connects to nothing.
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05)
    # never called, so it never waits on that port; its store's error counter is published
    shared = CircuitBreaker("shared", store=RedisBreakerStore(client), registry=reg)
    breaker = CircuitBreaker("b", registry=reg)
    policy = Retry("r", on=ConnectionError, attempts=2, registry=reg)
    limiter = RateLimiter("l", "3/minute", registry=reg)
    breaker.force_open()  # a transition: its family appears with its first sample
    breaker.reset()
    hooks = StandardWebhooks(secrets=["whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], registry=reg)
    PIICipher(Keyring.generate(), registry=reg).encrypt("x")
    EnvelopeCipher(LocalKEK(Keyring.generate()), registry=reg).encrypt("x")

    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        pass

    TenantMiddleware(app, lookup=lambda tid: None, registry=reg)
    health = HealthRegistry(registry=reg)
    health.add("ok", checks.call(lambda: CheckResult(Status.PASS)))
    health.run_sync()
    transport = ResilientTransport(httpx.HTTPTransport(), name="c", registry=reg)
    names = {s.name for fam in reg.collect() for s in fam.samples}
    yield names
    del hooks
    transport.close()
    breaker.close()
    shared.close()
    policy.close()
    limiter.close()
    client.close()


_RECORDED = re.compile(r"\binstance:opskit_\w+:rate5m\b")
_NAME = re.compile(r"\bopskit_[a-z_]+\b")


def _names_in(expr: str) -> set[str]:
    return set(_NAME.findall(_RECORDED.sub("", expr)))


def _rule_names() -> set[str]:
    out: set[str] = set()
    for group in rule_groups(Thresholds(breaker_sole=("x",)))["groups"]:
        for rule in group["rules"]:
            out |= _names_in(rule["expr"])
    return out


def _panel_names() -> set[str]:
    # the panels' queries are the families' panel_expr (test_dashboard.py checks it)
    return set().union(*(_names_in(f.panel_expr) for f in FAMILIES))


def test_every_documented_family_is_exported(exported: set[str]) -> None:
    missing = {f.name for f in FAMILIES} - exported
    assert not missing, f"documented but exported by no module: {sorted(missing)}"


def test_rules_and_panels_name_only_exported_families(exported: set[str]) -> None:
    used = _rule_names() | _panel_names()
    assert used, "no metric name found in the rules or panels"
    assert not used - exported, f"named but not exported: {sorted(used - exported)}"
    assert used <= {f.name for f in FAMILIES}


def test_every_exported_opskit_family_is_documented(exported: set[str]) -> None:
    opskit = {n for n in exported if n.startswith("opskit_")}
    assert not opskit - {f.name for f in FAMILIES}, sorted(opskit - {f.name for f in FAMILIES})


# -- thresholds and the rules command -------------------------------------------------------


def test_flags_and_config_change_thresholds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "t.yml"
    cfg.write_text(
        "breaker:\n  open_for: 3m\n  sole: [payments, geo.v2]\nretry:\n  exhausted_ratio: 0.25\n"
    )
    out = tmp_path / "rules.yml"
    code = cli_main(["ops", "rules", "--config", str(cfg), "--retry-exhausted-ratio", "0.3",
                     "--runbook-base", "https://docs.example/ops/", "-o", str(out)])  # fmt: skip
    assert code == 0
    text = out.read_text()
    assert 'for: "3m"' in text
    assert r"name=~\"payments|geo\\\\.v2\"" in text  # the dot is escaped for the regex
    assert "> 0.3 and" in text and "> 0.25" not in text  # the flag wins over the file
    assert '"https://docs.example/ops/#opskitbreakeropen"' in text
    assert cli_main(["ops", "rules"]) == 0
    assert "OpskitBreakerOpenSoleDependency" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--breaker-open-for", "soon"], "breaker_open_for: a Prometheus duration"),
        (["--retry-exhausted-ratio", "1.5"], "retry_exhausted_ratio: a ratio in (0, 1]"),
        (["--retry-exhausted-ratio", "nan"], "a finite number"),
        (["--webhooks-mismatch", "-1"], "webhooks_mismatch: a whole number >= 0"),
        (["--webhooks-mismatch", "x"], "webhooks_mismatch: a whole number"),
        (["--breaker-sole", 'a"b'], "breaker_sole: names without quotes"),
        (["--config", "/nonexistent/t.yml"], "cannot read --config"),
    ],
)
def test_bad_thresholds_are_refused(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["ops", "rules", *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "must be a mapping"),
        ("breaker: 3", "breaker: expected a mapping"),
        ("breaker:\n  open_fro: 1m\n", "unknown setting breaker.open_fro"),
        ("breaker: {open_for: [", "not valid YAML"),
        ("health:\n  critical_for: 5\n", "health_critical_for: a Prometheus duration"),
    ],
)
def test_bad_config_files_are_refused(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "t.yml"
    cfg.write_text(text)
    assert cli_main(["ops", "rules", "--config", str(cfg)]) == 2
    assert message in capsys.readouterr().err


def test_thresholds_direct() -> None:
    assert Thresholds.from_mapping(None) == Thresholds()
    with pytest.raises(ConfigError):
        Thresholds(breaker_flap_opens=True)  # type: ignore[arg-type]
    t = Thresholds.from_mapping({"http": {"error_ratio": 1}, "runbook_base": "x"})
    assert t.http_error_ratio == 1.0 and t.runbook_base == "x"


def test_every_alert_has_severity_and_a_runbook_section() -> None:
    docs = DOCS.read_text()
    headings = set(re.findall(r"^### (Opskit\w+)$", docs, flags=re.M))
    for a in alerts(Thresholds(breaker_sole=("x",))):
        assert a.severity in ("warning", "critical")
        assert a.name in headings, f"docs/operations.md has no section for {a.name}"
    for f in FAMILIES:
        assert f"`{f.name}`" in docs, f"docs/operations.md does not list {f.name}"


# -- the YAML writer ---------------------------------------------------------------------------

_leaf = st.one_of(
    st.text(max_size=30), st.integers(-(2**40), 2**40), st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)  # fmt: skip
_doc = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(min_size=1, max_size=12), inner, max_size=4),
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(min_size=1, max_size=12), _doc, max_size=5))
def test_yaml_writer_round_trips_through_pyyaml(doc: dict[str, Any]) -> None:
    assert yaml.safe_load(dump(doc)) == (doc or None)


def test_rule_file_reads_back_as_its_document() -> None:
    t = Thresholds(breaker_sole=("pay.ments", "geo"))
    assert yaml.safe_load(rules_yaml(t)) == rule_groups(t)


# -- without the [ops] extra ---------------------------------------------------------------

_WITHOUT = (
    "import sys; sys.modules['grafana_foundation_sdk'] = None; sys.modules['yaml'] = None; "
    "from opskit.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize(
    ("args", "code", "err"),
    [
        (["ops", "rules"], 0, ""),
        (
            ["ops", "rules", "--config", "t.yml"],
            2,
            "--config needs PyYAML: pip install 'opskit[ops]'",
        ),
        (["ops", "dashboard"], 2, "pip install 'opskit[ops]'"),
    ],
)
def test_without_the_ops_extra(tmp_path: Path, args: list[str], code: int, err: str) -> None:
    (tmp_path / "t.yml").write_text("breaker: {open_for: 2m}\n")
    out = subprocess.run([sys.executable, "-c", _WITHOUT, *args], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert out.returncode == code, out.stderr
    assert err in out.stderr
    if code == 0:
        assert "OpskitBreakerOpen" in out.stdout and out.stderr == ""
