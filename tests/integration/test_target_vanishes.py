"""With the real Prometheus: a model's target that service discovery drops (a stopped container
drops out of Docker's DNS) leaves no `up` series at all, not `up == 0`, so ModelServerDown stays
silent, and ModelServerMissing fires for that model and resolves when a target is back.

File discovery stands in for DNS discovery here: both hand Prometheus a new target list, and a
target that left it is dropped the same way whatever discovered it (its scrape loop stops and
writes staleness markers, prometheus/prometheus scrape/scrape.go endOfRunStaleness). Each
model's job scrapes Prometheus' own /metrics, as any HTTP target does for `up`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from mlobs.generate import prometheus_rules
from mlobs.generate.links import TARGETS_PANEL
from native.processes import Service, ServiceSpec, free_port, start_all, stop_all
from tests.conftest import REPO, require_tool
from tests.support.short_spec import short_spec
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

SPEC = short_spec()
GONE = "chatbot"


def _targets_panel_query() -> str:
    board = json.loads((REPO / "grafana/dashboards/ml-model-health.json").read_text())
    [panel] = [p for p in board["panels"] if p["title"] == TARGETS_PANEL]
    return next(t["expr"] for t in panel["targets"] if t["refId"] == "A")


class Discovered:
    """A Prometheus whose model jobs read their targets from files that the test rewrites."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.url = root, f"http://127.0.0.1:{port}"
        self.own = f"127.0.0.1:{port}"

    def targets(self, model: str, present: bool) -> None:
        path = self.root / "targets" / f"{model}.json"
        temporary = path.with_suffix(".tmp")
        groups = [{"targets": [self.own]}] if present else []
        temporary.write_text(json.dumps(groups))
        temporary.replace(path)  # atomic: Prometheus never reads half a file

    def query(self, promql: str) -> list[dict]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()["data"]["result"]

    def firing(self, name: str) -> list[dict]:
        return self.query(f'ALERTS{{alertname="{name}", alertstate="firing"}}')


@pytest.fixture
def prometheus(tmp_path) -> Iterator[Discovered]:
    binary = require_tool("prometheus")
    port = free_port()
    discovered = Discovered(tmp_path, port)
    (tmp_path / "rules").mkdir()
    (tmp_path / "targets").mkdir()
    for path, text in prometheus_rules.render(SPEC).items():
        (tmp_path / "rules" / path.name).write_text(text)
    for model in SPEC.models:
        discovered.targets(model.name, present=True)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules" / "*.yml")],
        "scrape_configs": [
            {
                "job_name": m.name,
                "file_sd_configs": [{"files": [str(tmp_path / "targets" / f"{m.name}.json")]}],
            }
            for m in SPEC.models
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    spec = ServiceSpec(
        "prometheus",
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address={discovered.own}",
        ],
        f"{discovered.url}/-/ready",
    )
    services: list[Service] = start_all([spec], tmp_path / "out")
    try:
        yield discovered
    finally:
        stop_all(services)


def test_a_vanished_target_fires_model_server_missing_not_down(prometheus):
    def every_model_up() -> bool:
        up = prometheus.query("up == 1")
        return {r["metric"]["job"] for r in up} == {m.name for m in SPEC.models}

    wait_for("every model's target scraped", every_model_up)
    wait_for("no ModelServerMissing at start", lambda: not prometheus.firing("ModelServerMissing"))

    prometheus.targets(GONE, present=False)
    [alert] = wait_for(
        f"ModelServerMissing firing for {GONE}", lambda: prometheus.firing("ModelServerMissing")
    )
    assert alert["metric"]["model"] == GONE and alert["metric"]["severity"] == "critical"
    # The premise: the series is gone, it never reads 0, so the down alert never even pends.
    assert prometheus.query(f'up{{job="{GONE}"}}') == []
    assert prometheus.query('ALERTS{alertname="ModelServerDown"}') == []
    # The panel the alert links to shows the model with 0 targets rather than nothing.
    shown = {r["metric"]["job"]: r["value"][1] for r in prometheus.query(_targets_panel_query())}
    assert shown == {m.name: "0" if m.name == GONE else "1" for m in SPEC.models}

    prometheus.targets(GONE, present=True)
    wait_for(
        "ModelServerMissing resolved once a target is back",
        lambda: not prometheus.query('ALERTS{alertname="ModelServerMissing"}'),
    )
