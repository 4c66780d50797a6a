"""``opskit ops rules`` and ``opskit ops dashboard``: print the rule file or the dashboard."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from opskit.ops._config import ConfigError, Thresholds, _coerce

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opskit ops", description="Prometheus rules and a Grafana dashboard for opskit."
    )
    sub = parser.add_subparsers(dest="what", required=True)
    rules = sub.add_parser(
        "rules", help="print the Prometheus rule file (YAML)",
        description="Print the rule file. Thresholds: --config FILE (YAML, per module: "
        "breaker: {open_for: 2m}), then flags, which win.",
    )  # fmt: skip
    rules.add_argument("--config", metavar="FILE", help="a YAML file of thresholds (needs [ops])")
    rules.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    for f in dataclasses.fields(Thresholds):
        kind = f.metadata["kind"]
        rules.add_argument(
            "--" + f.name.replace("_", "-"), dest=f.name, default=None,
            metavar="NAMES" if kind == "names" else kind.upper(),
            help=f"{f.metadata['help']} (default {_show(f.default)})",
        )  # fmt: skip
    dash = sub.add_parser("dashboard", help="print the Grafana dashboard (JSON; needs [ops])")
    dash.add_argument("--datasource", default="prometheus", help="Prometheus data source uid")
    dash.add_argument("--uid", default="opskit", help="the dashboard's uid")
    dash.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    return parser


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value) or "none"
    return str(value)


def _flag_value(name: str, kind: str, text: str) -> Any:
    if kind == "count":
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{name}: a whole number >= 0") from None
    if kind in ("number", "ratio"):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{name}: a finite number >= 0") from None
    return _coerce(name, kind, text)


def thresholds_from(args: argparse.Namespace) -> Thresholds:
    t = Thresholds()
    if args.config:
        try:
            yaml = importlib.import_module("yaml")  # PyYAML, from the [ops] extra
        except ImportError:
            raise ConfigError("--config needs PyYAML: pip install 'opskit[ops]'") from None
        try:
            with open(args.config, encoding="utf-8") as fh:
                doc = yaml.safe_load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read --config: {exc.strerror}") from None
        except yaml.YAMLError:
            raise ConfigError("--config is not valid YAML") from None
        t = Thresholds.from_mapping(doc)
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(Thresholds):
        text = getattr(args, f.name)
        if text is not None:
            changes[f.name] = _flag_value(f.name, f.metadata["kind"], text)
    return t.replace(**changes) if changes else t


def _emit(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.what == "rules":
            from opskit.ops._rules import rules_yaml

            _emit(rules_yaml(thresholds_from(args)), args.output)
        else:
            try:
                from opskit.ops._dashboard import dashboard
            except ImportError as exc:
                print(f"opskit ops dashboard: {exc}", file=sys.stderr)
                return 2
            doc = dashboard(datasource=args.datasource, uid=args.uid)
            _emit(json.dumps(doc, indent=2) + "\n", args.output)
    except ConfigError as exc:
        print(f"opskit ops: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"opskit ops: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0
