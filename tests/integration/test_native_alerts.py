"""Every alert seen to fire and resolve end to end with the real binaries, on loopback:
loadgen injects the fault -> Prometheus fires -> Alertmanager holds it -> alert-sink receives it;
the fault is removed -> the alert resolves and the resolution is delivered too.

Windows, `for` durations and intervals are shortened through a spec override so that the whole
module runs in a few minutes.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import yaml

from mlobs.generate.alertmanager_config import AlertmanagerSetup
from native.processes import Service, free_port, start_all, stop_all
from native.stack import ALERTMANAGER_BINARIES, NativeStack, Ports, StackOptions
from tests.conftest import require_tool
from tests.support.grafana import (
    DASHBOARDS,
    PROMETHEUS,
    Selection,
    alert_rules,
    dashboard,
    default_selections,
    panel_queries,
)
from tests.support.http import log_events
from tests.support.short_spec import short_spec
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

STEADY_RATE = 8.0  # requests per second per server: enough values for PSI in a 20 s window


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[NativeStack]:
    require_tool("prometheus")
    if not any(shutil.which(binary) for binary in ALERTMANAGER_BINARIES):
        require_tool(ALERTMANAGER_BINARIES[0])  # skips, or fails under MLOBS_REQUIRE_TOOLS=1
    spec = short_spec()
    ports = Ports(
        models={m.name: free_port() for m in spec.models},
        alert_sink=free_port(),
        prometheus=free_port(),
        alertmanager=free_port(),
    )
    native = NativeStack(
        StackOptions(
            spec=spec,
            ports=ports,
            data_dir=tmp_path_factory.mktemp("native"),
            scrape_interval="1s",
            evaluation_interval="1s",
            alertmanager=AlertmanagerSetup(
                "", group_wait="1s", group_interval="1s", repeat_interval="1h"
            ),
            load_rate=STEADY_RATE,
        )
    )
    native.start(timeout=60)
    try:
        yield native
    finally:
        native.stop()


class Observer:
    """What Prometheus, Alertmanager and alert-sink currently say about one alert."""

    def __init__(self, stack: NativeStack, alertname: str, **labels: str) -> None:
        self.urls = stack.urls
        self.alertname = alertname
        self.labels = labels

    def _matches(self, labels: dict[str, str]) -> bool:
        return labels.get("alertname") == self.alertname and all(
            labels.get(k) == v for k, v in self.labels.items()
        )

    def prometheus_state(self) -> str | None:
        alerts = httpx.get(f"{self.urls['prometheus']}/api/v1/alerts", timeout=5).json()
        states = [a["state"] for a in alerts["data"]["alerts"] if self._matches(a["labels"])]
        return "firing" if "firing" in states else (states[0] if states else None)

    def in_alertmanager(self) -> bool:
        alerts = httpx.get(f"{self.urls['alertmanager']}/api/v2/alerts", timeout=5).json()
        return any(self._matches(a["labels"]) and a["status"]["state"] == "active" for a in alerts)

    def delivered(self, status: str) -> list[dict]:
        listed = httpx.get(
            f"{self.urls['alert-sink']}/alerts",
            params={"alertname": self.alertname, "status": status, "source": "alertmanager"},
            timeout=5,
        ).json()
        return [n for n in listed if self._matches(n["labels"])]

    def fires_and_is_delivered(self) -> dict:
        wait_for(
            f"{self.alertname} firing in Prometheus", lambda: self.prometheus_state() == "firing"
        )
        wait_for(f"{self.alertname} active in Alertmanager", self.in_alertmanager)
        [notification, *_] = wait_for(
            f"{self.alertname} delivered to alert-sink", lambda: self.delivered("firing")
        )
        return notification

    def resolves(self) -> None:
        wait_for(
            f"{self.alertname} gone from Prometheus",
            lambda: self.prometheus_state() is None,
            timeout=120,
        )
        wait_for(f"{self.alertname} resolution delivered", lambda: self.delivered("resolved"))


def _run_scenario(stack: NativeStack, scenario: str, rate: float) -> list[Service]:
    spec = stack.loadgen(scenario, rate, duration=0, extra=["--progress", "3600"])
    return start_all([spec], stack.options.data_dir / "out")


def test_the_stack_is_scraped_and_records_rules(stack):
    prometheus = stack.urls["prometheus"]

    def targets_up() -> bool:
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"][
            "activeTargets"
        ]
        return {t["labels"]["job"] for t in targets if t["health"] == "up"} == {
            "anomaly-detector",
            "chatbot",
            "alert-sink",
            "prometheus",
            "alertmanager",
        }

    wait_for("every target up", targets_up)

    def rates_recorded() -> bool:
        result = httpx.get(
            f"{prometheus}/api/v1/query", params={"query": "model:requests:rate > 0"}, timeout=5
        ).json()["data"]["result"]
        return {r["metric"]["model"] for r in result} == {"anomaly-detector", "chatbot"}

    wait_for("request rates of both models recorded", rates_recorded)


def _query_result(stack: NativeStack, promql: str) -> list:
    response = httpx.get(
        f"{stack.urls['prometheus']}/api/v1/query", params={"query": promql}, timeout=5
    )
    assert response.status_code == 200, f"{promql}: {response.text}"
    return response.json()["data"]["result"]


def _label_values(stack: NativeStack, selector: str | None, label: str) -> list[str]:
    """A `label_values(selector, label)` variable query, asked the way Grafana's Prometheus
    datasource asks it (the label values API, filtered by the selector)."""
    params = {"match[]": selector} if selector else {}
    response = httpx.get(
        f"{stack.urls['prometheus']}/api/v1/label/{label}/values", params=params, timeout=5
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _defaults(stack: NativeStack, board: dict) -> dict[str, Selection]:
    """The board's default variable values once every variable has options to choose from."""

    def ready() -> dict[str, Selection]:
        selections = default_selections(board, lambda s, label: _label_values(stack, s, label))
        return selections if all(s.options for s in selections.values()) else {}

    return wait_for(f"options for every variable of {board['uid']}", ready)


def test_every_dashboard_and_grafana_alert_query_returns_data(stack):
    """Each panel query, with the variables Grafana starts with (options from this Prometheus),
    and each Grafana alert query returns data."""
    queries = []
    for board in map(dashboard, DASHBOARDS):
        selections = _defaults(stack, board)
        queries += [
            (q.name, q.interpolated(selections))
            for q in panel_queries(board)
            if q.datasource == PROMETHEUS
        ]
    queries += [
        (f"Grafana alert {r['title']}", r["data"][0]["model"]["expr"]) for r in alert_rules()
    ]
    for name, promql in queries:
        wait_for(f"data for {name}: {promql}", lambda promql=promql: _query_result(stack, promql))


@pytest.mark.parametrize(
    ("scenario", "rate", "alertname", "labels"),
    [
        ("latency", 4.0, "ModelP99LatencyHigh", {"model": "chatbot", "severity": "warning"}),
        ("errors", 8.0, "ModelErrorRateHigh", {"model": "chatbot", "severity": "critical"}),
        (
            "drift",
            8.0,
            "ModelFeatureDriftHigh",
            {"model": "anomaly-detector", "feature": "temperature_c", "severity": "warning"},
        ),
    ],
)
def test_fault_fires_is_delivered_and_resolves(stack, scenario, rate, alertname, labels):
    observer = Observer(stack, alertname, **labels)
    loadgen = _run_scenario(stack, scenario, rate)
    try:
        notification = observer.fires_and_is_delivered()
        assert notification["receiver"] == f"alert-sink-{labels['severity']}"
        # The rule's summary with the alert's labels filled in: what the person on call reads.
        assert notification["annotations"]["summary"] == _summary(stack, alertname, labels)
        # The link fills the dashboard's variables from the alert's labels (model, feature).
        link = dict(parse_qsl(urlsplit(notification["annotations"]["dashboard"]).query))
        assert link == {f"var-{k}": v for k, v in labels.items() if k in ("model", "feature")}
    finally:
        stop_all(loadgen)  # loadgen clears the faults it set
    observer.resolves()


def _summary(stack: NativeStack, alertname: str, labels: dict[str, str]) -> str:
    """The summary template of the rule the stack's Prometheus loaded, its labels filled in."""
    rules_file = stack.options.data_dir / "config/rules/alerts.yml"
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    [rule] = [r for g in groups for r in g["rules"] if r.get("alert") == alertname]
    template = rule["annotations"]["summary"]
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m[1]], template)


def test_killed_model_server_fires_server_down(stack):
    observer = Observer(stack, "ModelServerDown", model="chatbot", severity="critical")
    chatbot = stack.service("chatbot")
    chatbot.kill()
    try:
        notification = observer.fires_and_is_delivered()
        assert notification["labels"]["job"] == "chatbot"
    finally:
        restarted = start_all([stack.model_server("chatbot")], stack.options.data_dir / "out")
        stack.services[stack.services.index(chatbot)] = restarted[0]
    observer.resolves()


def test_latency_exemplars_lead_to_the_log_lines_of_slow_requests(stack):
    """A latency spike's exemplars are request ids; each is a line of that model's log file
    whose latency agrees with the exemplar's value."""
    model = "chatbot"
    url = stack.urls[model]
    headers = {"Authorization": f"Bearer {stack.options.admin_token}"}
    log_file = stack.options.data_dir / "logs" / f"{model}.log"
    start = time.time()
    httpx.post(f"{url}/admin/faults", json={"latency_ms": 300}, headers=headers, timeout=5)
    try:
        for _ in range(5):
            answer = httpx.post(f"{url}/predict", json={"message": "where is my order"}, timeout=5)
            assert answer.status_code == 200
    finally:
        httpx.delete(f"{url}/admin/faults", headers=headers, timeout=5)

    def slow_exemplars() -> list[dict]:
        response = httpx.get(
            f"{stack.urls['prometheus']}/api/v1/query_exemplars",
            params={
                "query": f'model_latency_seconds_bucket{{model="{model}"}}',
                "start": start - 5,
                "end": time.time() + 5,
            },
            timeout=5,
        )
        assert response.status_code == 200, response.text
        return [
            e
            for series in response.json()["data"]
            for e in series["exemplars"]
            if float(e["value"]) >= 0.3
        ]

    exemplars = wait_for("exemplars of the slow requests in Prometheus", slow_exemplars)
    lines = {e["request_id"]: e for e in log_events(log_file)}
    for exemplar in exemplars:
        line = lines[exemplar["labels"]["request_id"]]
        assert line["latency_ms"] == pytest.approx(float(exemplar["value"]) * 1000, abs=0.002)
        assert line["status"] == "success"
