"""The Grafana dashboard: the SDK's own model reads it back; rows and panels."""

from __future__ import annotations

import json
import sys

import pytest

if sys.version_info < (3, 11):  # pragma: no cover - grafana-foundation-sdk needs 3.11
    pytest.skip("grafana-foundation-sdk needs Python 3.11+", allow_module_level=True)

from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as gm
from grafana_foundation_sdk.models import prometheus as gp
from grafana_foundation_sdk.models import timeseries as gts

from opskit.cli import main as cli_main
from opskit.ops import FAMILIES, MODULES, dashboard
from opskit.ops._dashboard import _plain


def test_dashboard_is_a_valid_model_with_a_row_per_module_and_a_panel_per_family() -> None:
    doc = dashboard(datasource="prom-main")
    # The SDK's own model reads it back to the same document (its panel and query
    # plugins registered, so options and targets decode to their typed models).
    register_default_plugins()
    model = gm.Dashboard.from_json(doc)
    assert _plain(model.to_json()) == doc
    assert isinstance(model.panels, list)
    rows = [p for p in model.panels if isinstance(p, gm.RowPanel)]
    panels = [p for p in model.panels if isinstance(p, gm.Panel)]
    assert [r.title for r in rows] == list(MODULES.values())
    assert sorted(p.title for p in panels if p.title) == sorted(f.name for f in FAMILIES)
    for p in panels:
        assert p.type_val == "timeseries"
        # decoded as the SDK's own Prometheus query and time-series options, not unknown bags
        assert p.targets and all(isinstance(t, gp.Dataquery) for t in p.targets)
        assert all('job=~"$job"' in t.expr for t in p.targets if isinstance(t, gp.Dataquery))
        assert isinstance(p.options, gts.Options)
        assert p.grid_pos is not None and p.grid_pos.w == 8
    ids = [p["id"] for p in doc["panels"]]
    assert len(set(ids)) == len(ids) and all(isinstance(i, int) and i > 0 for i in ids)
    exprs = {t["expr"] for p in doc["panels"] for t in p.get("targets", [])}
    assert exprs == {f.panel_expr for f in FAMILIES}
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert set(variables) == {"datasource", "job", "instance"}
    assert variables["datasource"]["current"]["value"] == "prom-main"
    assert "$job" in variables["instance"]["query"]
    # panels of one row sit below it and above the next row
    ys = [(p["type"], p["gridPos"]["y"]) for p in doc["panels"]]
    row_ys = [y for t, y in ys if t == "row"]
    assert row_ys == sorted(row_ys) and len(set(row_ys)) == len(row_ys)


def test_cli_dashboard_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["ops", "dashboard", "--uid", "abc"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["uid"] == "abc" and doc["title"] == "opskit"
