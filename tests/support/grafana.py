"""Reading the generated Grafana files: dashboards, their queries, alert rules, schemas."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, REQUIRE_TOOLS

DASHBOARDS = sorted((REPO / "grafana/dashboards").glob("*.json"))
ALERTING = REPO / "grafana/provisioning/alerting"
DATASOURCES = REPO / "grafana/provisioning/datasources/datasources.yml"
# Values for Grafana's variables so that a panel query becomes plain PromQL.
VARIABLE_VALUES = {
    "__rate_interval": "1m",
    "__range": "1h",
    "__interval": "1m",
    "model": ".+",
    "model_version": ".+",
    "feature": "tokens",
}
_VARIABLE = re.compile(r"\$\{?(\w+)(?::\w+)?\}?")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str

    def promql(self, values: dict[str, str] | None = None) -> str:
        """The query with Grafana variables replaced by concrete values."""
        chosen = {**VARIABLE_VALUES, **(values or {})}
        return _VARIABLE.sub(lambda m: chosen[m.group(1)], self.expr)


def dashboard(path: Path) -> dict:
    return json.loads(path.read_text())


def prometheus_queries() -> list[PanelQuery]:
    """Every Prometheus target of every panel of every dashboard."""
    queries = []
    for path in DASHBOARDS:
        board = dashboard(path)
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("type") == "prometheus":
                    queries.append(PanelQuery(board["uid"], panel["title"], target["expr"]))
    return queries


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((ALERTING / "alert-rules.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def schema_dir() -> Path:
    """Grafana's JSON schemas: MLOBS_GRAFANA_SCHEMAS, or ../shared/schemas/grafana beside the
    checkout. Skips without them (fails instead under MLOBS_REQUIRE_TOOLS=1)."""
    path = Path(os.environ.get("MLOBS_GRAFANA_SCHEMAS", REPO.parent / "shared/schemas/grafana"))
    if not (path / "dashboard.jsonschema.json").is_file():
        message = f"Grafana JSON schemas not found in {path} (set MLOBS_GRAFANA_SCHEMAS)"
        if REQUIRE_TOOLS:
            pytest.fail(f"MLOBS_REQUIRE_TOOLS=1 but {message}")
        pytest.skip(message)
    return path
