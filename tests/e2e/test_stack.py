"""End to end on the Docker stack: health, metrics, Grafana provisioning, every dashboard panel
answering with data through Grafana, the log pipeline without loss or duplicates, alerts from both
Prometheus and Grafana reaching alert-sink, and a stopped model server that is noticed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import REPO
from tests.e2e.conftest import Stack
from tests.support.grafana import DASHBOARDS, dashboard, default_selections, interpolate
from tests.support.waiting import NotYet, wait_for

pytestmark = pytest.mark.e2e

URL = {
    "anomaly-detector": "http://127.0.0.1:8001",
    "chatbot": "http://127.0.0.1:8002",
    "alert-sink": "http://127.0.0.1:8003",
    "prometheus": "http://127.0.0.1:9090",
    "alertmanager": "http://127.0.0.1:9093",
    "grafana": "http://127.0.0.1:3000",
    "elasticsearch": "http://127.0.0.1:9200",
    "kibana": "http://127.0.0.1:5601",
}
DATA_STREAM = "logs-mlobs.inference-default"
MAPPING = json.loads((REPO / "elasticsearch/component-template.json").read_text())
GRAFANA_RULE_UIDS = {
    "mlobs-modelp99latencyhigh",
    "mlobs-modelerrorratehigh",
    "mlobs-modelfeaturedrifthigh",
}


def _grafana(stack: Stack) -> httpx.Client:
    return httpx.Client(
        base_url=URL["grafana"], timeout=10, auth=("admin", stack.env["GRAFANA_ADMIN_PASSWORD"])
    )


def _elastic(stack: Stack) -> httpx.Client:
    return httpx.Client(
        base_url=URL["elasticsearch"], timeout=10, auth=("elastic", stack.env["ELASTIC_PASSWORD"])
    )


def _count(stack: Stack, query: str) -> int:
    with _elastic(stack) as es:
        es.post(f"/{DATA_STREAM}/_refresh")
        response = es.get(f"/{DATA_STREAM}/_count", params={"q": query})
    return response.json()["count"] if response.status_code == 200 else -1


def _loadgen(stack: Stack, scenario: str, seconds: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.loadgen",
            "--scenario",
            scenario,
            "--rate",
            "5",
            "--duration",
            str(seconds),
            "--admin-token",
            stack.env["MLOBS_ADMIN_TOKEN"],
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )


def _stop(load: subprocess.Popen) -> None:
    load.terminate()
    try:
        load.wait(timeout=60)
    except subprocess.TimeoutExpired:
        load.kill()
        load.wait(timeout=10)


def _low_confidence_requests(count: int = 5) -> None:
    """Chat messages without a known word: the chatbot falls back with low confidence."""
    for i in range(count):
        httpx.post(f"{URL['chatbot']}/predict", json={"message": f"qwzx vbnm {i}"}, timeout=10)


def _prometheus_alert_state(alertname: str, **labels: str) -> str | None:
    alerts = httpx.get(f"{URL['prometheus']}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    states = [
        a["state"]
        for a in alerts
        if a["labels"].get("alertname") == alertname
        and all(a["labels"].get(k) == v for k, v in labels.items())
    ]
    return "firing" if "firing" in states else (states[0] if states else None)


def _delivered(alertname: str, status: str, source: str = "alertmanager", **labels: str) -> list:
    listed = httpx.get(
        f"{URL['alert-sink']}/alerts",
        timeout=5,
        params={"alertname": alertname, "source": source, "status": status},
    ).json()
    return [n for n in listed if all(n["labels"].get(k) == v for k, v in labels.items())]


def test_every_service_is_healthy_and_setup_succeeded(stack):
    containers = {c.Service: c for c in stack.compose.get_containers(include_all=True)}
    assert containers["setup"].ExitCode == 0
    # kibana-setup included: healthy once the saved objects are imported.
    unhealthy = {
        name: c.Health
        for name, c in containers.items()
        if name != "setup" and c.Health != "healthy"
    }
    assert unhealthy == {}


def test_prometheus_scrapes_every_target_and_sees_a_request(stack):
    httpx.post(f"{URL['chatbot']}/predict", json={"message": "where is my order"}, timeout=10)

    def targets_up() -> bool:
        targets = httpx.get(f"{URL['prometheus']}/api/v1/targets", timeout=5).json()
        active = targets["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    wait_for("every Prometheus target up", targets_up, timeout=120)
    query = 'sum(model_requests_total{model="chatbot",status="success"})'

    def counted() -> bool:
        result = httpx.get(
            f"{URL['prometheus']}/api/v1/query", params={"query": query}, timeout=5
        ).json()["data"]["result"]
        return bool(result) and float(result[0]["value"][1]) >= 1

    wait_for("the request in Prometheus", counted, timeout=60)


def test_grafana_is_provisioned_without_errors(stack):
    with _grafana(stack) as grafana:
        assert grafana.get("/api/health").json()["database"] == "ok"

        def healthy(uid: str) -> bool:
            response = grafana.get(f"/api/datasources/uid/{uid}/health")
            if response.status_code != 200 or response.json().get("status") != "OK":
                raise NotYet(f"HTTP {response.status_code}: {response.text[:300]}")
            return True

        for uid in ("prometheus", "elasticsearch"):
            wait_for(f"datasource {uid} healthy", lambda uid=uid: healthy(uid), timeout=120)
        for uid in ("ml-model-health", "ml-drift"):
            assert grafana.get(f"/api/dashboards/uid/{uid}").status_code == 200
        rules = grafana.get("/api/v1/provisioning/alert-rules").json()
        assert {r["uid"] for r in rules} == GRAFANA_RULE_UIDS
    errors = [
        line
        for line in stack.logs("grafana").splitlines()
        if "level=error" in line and "provisioning" in line.lower()
    ]
    assert errors == []


def test_a_request_reaches_elasticsearch_typed_as_mapped(stack):
    request_id = f"e2e-{uuid.uuid4().hex}"
    httpx.post(
        f"{URL['anomaly-detector']}/predict",
        timeout=10,
        headers={"X-Request-ID": request_id},
        json={
            "features": {
                "temperature_c": 65,
                "pressure_kpa": 310,
                "vibration_mm_s": 2.2,
                "rotation_rpm": 1500,
                "power_kw": 22,
            }
        },
    )
    wait_for(
        f"document {request_id}",
        lambda: _count(stack, f"request_id:{request_id}") == 1,
        timeout=60,
        every=2,
    )
    with _elastic(stack) as es:
        mapping = es.get(f"/{DATA_STREAM}/_mapping").json()
    [index] = mapping.values()
    live = index["mappings"]["properties"]
    expected = MAPPING["template"]["mappings"]["properties"]
    for field in ("model", "request_id", "prediction", "confidence", "latency_ms", "@timestamp"):
        assert live[field]["type"] == expected[field]["type"], field
    assert live["features"]["properties"]["temperature_c"]["type"] == "float"


def test_saved_search_query_finds_low_confidence_predictions(stack):
    _low_confidence_requests()
    wait_for(
        "low-confidence documents",
        lambda: _count(stack, "tags:low_confidence") >= 5,
        timeout=90,
        every=2,
    )
    with httpx.Client(
        base_url=URL["kibana"], timeout=10, auth=("elastic", stack.env["ELASTIC_PASSWORD"])
    ) as kibana:
        found = kibana.get("/api/saved_objects/search/mlobs-low-confidence")
    assert found.status_code == 200


def test_restarting_logstash_mid_burst_neither_loses_nor_duplicates(stack):
    prefix = f"burst-{uuid.uuid4().hex[:8]}"
    total = 300
    with httpx.Client(timeout=10) as client:
        for i in range(total):
            client.post(
                f"{URL['chatbot']}/predict",
                json={"message": "where is my order"},
                headers={"X-Request-ID": f"{prefix}-{i}"},
            )
            if i == total // 3:
                stack.compose_command("restart", "logstash")
    wait_for(
        f"all {total} documents",
        lambda: _count(stack, f"request_id:{prefix}-*") >= total,
        timeout=240,
        every=3,
    )
    assert _count(stack, f"request_id:{prefix}-*") == total


@pytest.mark.parametrize(
    ("scenario", "alertname"),
    [
        ("latency", "ModelP99LatencyHigh"),
        ("drift", "ModelFeatureDriftHigh"),
    ],
)
def test_chaos_fires_prometheus_and_grafana_alerts_that_reach_alert_sink(
    stack, scenario, alertname
):
    load = _loadgen(stack, scenario, 300)
    try:
        wait_for(
            f"{alertname} from Prometheus at alert-sink",
            lambda: _delivered(alertname, "firing"),
            timeout=240,
            every=5,
        )
        wait_for(
            f"{alertname} from Grafana at alert-sink",
            lambda: _delivered(alertname, "firing", source="grafana"),
            timeout=240,
            every=5,
        )
    finally:
        _stop(load)


# --- every panel of every dashboard, through Grafana ----------------------------------------------
# POST /api/ds/query (grafana/grafana pkg/api/ds_query.go, QueryMetricsV2): {"queries": [...],
# "from", "to"}; each query is the panel's target with a concrete datasource uid. Grafana's
# frontend interpolates dashboard variables before it sends a query, so this test does the same
# (tests.support.grafana follows Grafana's rules); the backend replaces the built-in intervals
# itself (pkg/promlib/models/query.go, interpolateVariables), so $__rate_interval and $__range are
# sent as they are. The answer: {"results": {refId: {"status", "frames": [{"schema", "data":
# {"values": [[column], ...]}}], "error"?}}}, HTTP 400 when a query failed.


def _panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row holds its panels


def _prometheus_label_values(selector: str | None, label: str) -> list[str]:
    """What Grafana's label_values() asks Prometheus: /api/v1/label/<label>/values."""
    params = {"match[]": selector} if selector else {}
    response = httpx.get(
        f"{URL['prometheus']}/api/v1/label/{label}/values", params=params, timeout=10
    )
    response.raise_for_status()
    return response.json()["data"]


def _default_datasources(grafana: httpx.Client) -> dict[str, str]:
    """type -> uid of the datasource a datasource variable of that type starts on (the default
    one of that type, else the first)."""
    sources = sorted(grafana.get("/api/datasources").json(), key=lambda d: not d.get("isDefault"))
    chosen: dict[str, str] = {}
    for source in sources:
        chosen.setdefault(source["type"], source["uid"])
    return chosen


def _datasource(ref: dict, board: dict, defaults: dict[str, str]) -> dict:
    uid = ref.get("uid", "")
    if uid.startswith("$"):
        name = uid.strip("${}")
        [variable] = [v for v in board["templating"]["list"] if v["name"] == name]
        uid = (variable.get("current") or {}).get("value") or defaults[variable["query"]]
    return {"type": ref["type"], "uid": uid}


@dataclass(frozen=True)
class PanelTarget:
    """One target of one panel, ready for /api/ds/query."""

    name: str
    query: dict
    time_from: str
    time_to: str

    @property
    def only_when_a_target_is_missing(self) -> bool:
        """`absent(...)` answers only while a model has no scrape target (the stopped-server
        test requires its data then)."""
        return "absent(" in self.query.get("expr", "")

    def run(self, grafana: httpx.Client) -> tuple[int, str]:
        """Rows in Grafana's answer, and what went wrong when there are none."""
        response = grafana.post(
            "/api/ds/query",
            json={"queries": [self.query], "from": self.time_from, "to": self.time_to},
        )
        result = response.json().get("results", {}).get(self.query["refId"], {})
        rows = _rows(result) if response.status_code == 200 else 0
        return rows, result.get("error") or f"HTTP {response.status_code}, {rows} rows"


def _panel_targets(grafana: httpx.Client) -> list[PanelTarget]:
    """Every target of both dashboards, with the dashboards' default variable values, read from
    the JSON now (the dashboards' variables may change) and resolved against the live stack."""
    defaults = _default_datasources(grafana)
    targets = []
    for path in DASHBOARDS:
        board = dashboard(path)
        selections = default_selections(board, _prometheus_label_values)
        for panel in _panels(board["panels"]):
            for target in panel.get("targets", []):
                kind = target["datasource"]["type"]
                field = {"prometheus": "expr", "elasticsearch": "query"}.get(kind)
                assert field, f"{panel['title']}: no request format known for {kind} here"
                query = {
                    **target,
                    "datasource": _datasource(target["datasource"], board, defaults),
                    # Dashboard variables only: Grafana's backend fills in $__rate_interval etc.
                    field: interpolate(target.get(field, ""), selections, kind, builtins={}),
                    "intervalMs": 15_000,
                    "maxDataPoints": panel.get("maxDataPoints", 500),
                }
                name = f"{board['uid']} / {panel['title']} / {target['refId']}"
                targets.append(PanelTarget(name, query, board["time"]["from"], board["time"]["to"]))
    return targets


def _rows(result: dict) -> int:
    return sum(
        len(frame["data"]["values"][0])
        for frame in result.get("frames", [])
        if frame.get("data", {}).get("values")
    )


def test_every_panel_target_returns_data_through_grafana(stack):
    """Each target of each panel, run by Grafana as the dashboard would run it, answers with
    rows: Prometheus and Elasticsearch panels alike."""
    load = _loadgen(stack, "steady", 300)  # enough requests for rates, quantiles and drift
    try:
        _low_confidence_requests()  # for "Recent low-confidence predictions"
        with _grafana(stack) as grafana:
            targets = [t for t in _panel_targets(grafana) if not t.only_when_a_target_is_missing]
            assert {t.query["datasource"]["type"] for t in targets} == {
                "prometheus",
                "elasticsearch",
            }
            waiting = {t.name: t for t in targets}

            def every_target_has_rows() -> bool:
                problems = {}
                for name, target in list(waiting.items()):
                    rows, problem = target.run(grafana)
                    if rows:
                        del waiting[name]
                    else:
                        problems[name] = problem
                if problems:
                    raise NotYet("; ".join(f"{n}: {p}" for n, p in problems.items()))
                return True

            wait_for(
                f"data from all {len(targets)} panel targets", every_target_has_rows,
                timeout=300, every=10,
            )  # fmt: skip
    finally:
        _stop(load)


def test_a_latency_exemplar_leads_to_its_log_line_through_grafana(stack):
    """From a diamond on the latency panel to the log line: Prometheus keeps the request ids of
    the latency histogram as exemplars, and the query the Prometheus datasource's exemplar link
    runs on the Elasticsearch datasource (the bare id, public/app/plugins/datasource/prometheus
    result_transformer getDataLinks) finds that request's document."""
    since = time.time()

    def exemplar_ids() -> list[str]:
        response = httpx.get(
            f"{URL['prometheus']}/api/v1/query_exemplars",
            params={
                "query": "model_latency_seconds_bucket",
                "start": since - 600,
                "end": time.time(),
            },
            timeout=10,
        )
        if response.status_code != 200:
            raise NotYet(f"HTTP {response.status_code}: {response.text[:200]}")
        return [e["labels"]["request_id"] for s in response.json()["data"] for e in s["exemplars"]]

    # loadgen's generated ids are 32 hex characters: a bare Lucene term.
    request_id = wait_for("latency exemplars in Prometheus", exemplar_ids, timeout=120, every=5)[-1]
    query = {
        "refId": "A",
        "datasource": {"type": "elasticsearch", "uid": "elasticsearch"},
        "query": request_id,
        "metrics": [{"type": "logs", "id": "1"}],
        "bucketAggs": [],
        "timeField": "@timestamp",
    }
    with _grafana(stack) as grafana:
        target = PanelTarget("exemplar link", query, "now-1h", "now")

        def found() -> bool:
            rows, problem = target.run(grafana)
            if not rows:
                raise NotYet(problem)
            return True

        wait_for(
            f"the log line of exemplar {request_id} through Grafana", found, timeout=90, every=5
        )
    assert _count(stack, f"request_id:{request_id}") == 1


# --- a model server that stops ------------------------------------------------------------------


def test_a_stopped_model_server_fires_model_server_missing_then_resolves(stack):
    """With DNS discovery a stopped container leaves Prometheus' targets instead of going down,
    so `up == 0` (ModelServerDown) never fires for it: ModelServerMissing must. Runs last: it
    takes the chatbot away for a while."""
    alert, labels = "ModelServerMissing", {"model": "chatbot"}
    assert _prometheus_alert_state(alert, **labels) is None
    stack.compose_command("stop", "chatbot", timeout=120)
    try:
        wait_for(
            f"{alert} for chatbot firing in Prometheus",
            lambda: _prometheus_alert_state(alert, **labels) == "firing",
            timeout=240,
            every=5,
        )
        wait_for(
            f"{alert} for chatbot delivered to alert-sink",
            lambda: _delivered(alert, "firing", **labels),
            timeout=120,
            every=5,
        )
        with _grafana(stack) as grafana:
            missing = [t for t in _panel_targets(grafana) if t.only_when_a_target_is_missing]
            assert missing, "no panel shows a model whose target is missing"
            for target in missing:  # the dashboard shows the missing model too
                wait_for(f"rows from {target.name}", lambda t=target: t.run(grafana)[0] > 0,
                         timeout=120, every=5)  # fmt: skip
    finally:
        stack.compose_command("start", "chatbot", timeout=120)
    wait_for(
        "chatbot ready again",
        lambda: httpx.get(f"{URL['chatbot']}/readyz", timeout=5).status_code == 200,
        timeout=120,
        every=2,
    )
    wait_for(
        f"{alert} for chatbot resolved in Prometheus",
        lambda: _prometheus_alert_state(alert, **labels) is None,
        timeout=240,
        every=5,
    )
    wait_for(
        f"{alert} resolution delivered to alert-sink",
        lambda: _delivered(alert, "resolved", **labels),
        timeout=120,
        every=5,
    )
