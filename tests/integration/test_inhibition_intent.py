"""The generated Alertmanager configuration holds back exactly the alerts a hand-written table says,
checked with the real Alertmanager: alerts are posted to its API and its verdict is read back
(`status.state` "suppressed", `status.inhibitedBy`).

The contract (README, "What the server alerts mean with pods"): while ModelServerDown or
ModelServerMissing fires for a model, the same model's latency, error and no-traffic alerts are
held back. Nothing else is: not the causes themselves, not what the model answered (confidence,
drift), and nothing of another model.

Every scenario ends with a sentinel: a third model whose server is down, posted last. Alertmanager
reads posted alerts in order, so once a symptom of the sentinel is held back every alert posted
before it has been seen, and an alert not held back then never will be.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from native.processes import Service, ServiceSpec, free_port, start_all, stop_all
from native.stack import ALERTMANAGER_BINARIES
from tests.conftest import require_tool
from tests.support.generated import generated_text, generated_yaml, spec_yaml
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

SERVER_GONE = ("ModelServerDown", "ModelServerMissing")
# Whether each alert of a model is held back while that model's server is gone.
HELD_BACK_WHILE_GONE = {
    "ModelP99LatencyHigh": True,  # the last requests before the end: a symptom
    "ModelErrorRateHigh": True,  # failed requests to a dying server: a symptom
    "ModelNoTraffic": True,  # nothing reaches a server that is gone: a symptom
    "ModelLowConfidence": False,  # what the model answered while it served is still news
    "ModelFeatureDriftHigh": False,
    "ModelServerDown": False,  # the causes are what the person on call must see
    "ModelServerMissing": False,
}
MODELS = [m["name"] for m in spec_yaml()["models"]]
GONE, OTHER = MODELS[0], MODELS[1]
SENTINEL = "inhibition-sentinel"  # not a model of the spec: only its labels matter


def _rules() -> dict[str, dict]:
    groups = generated_yaml("prometheus/rules/alerts.yml")["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def _labels(alertname: str, model: str) -> dict[str, str]:
    """The labels the alert fires with for `model`: its rule's, and those its expression keeps."""
    kept = {
        "ModelServerDown": {"job": model, "instance": "127.0.0.1:1"},
        "ModelFeatureDriftHigh": {"feature": "prediction"},
    }
    rule = _rules()[alertname]
    return {
        **rule.get("labels", {}),
        **kept.get(alertname, {}),
        "alertname": alertname,
        "model": model,
    }


def test_every_alert_has_a_decision():
    """A new alert fails here until the table says whether a gone server holds it back."""
    assert set(_rules()) == set(HELD_BACK_WHILE_GONE)
    assert set(SERVER_GONE) <= set(HELD_BACK_WHILE_GONE)


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """The real Alertmanager on a free loopback port with the generated configuration (its
    receivers are unreachable here: delivery is not under test)."""
    if not any(shutil.which(binary) for binary in ALERTMANAGER_BINARIES):
        require_tool(ALERTMANAGER_BINARIES[0])  # skips, or fails under MLOBS_REQUIRE_TOOLS=1
    binary = next(shutil.which(b) for b in ALERTMANAGER_BINARIES if shutil.which(b))
    config = tmp_path / "alertmanager.yml"
    config.write_text(generated_text("alertmanager/alertmanager.yml"))
    port = free_port()
    spec = ServiceSpec(
        "alertmanager",
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # a single instance: no gossip port
        ],
        f"http://127.0.0.1:{port}/-/ready",
    )
    services: list[Service] = start_all([spec], tmp_path / "out", timeout=60)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_all(services)


def _post(url: str, alerts: list[dict[str, str]]) -> None:
    body = [{"labels": labels, "annotations": {}} for labels in alerts]
    response = httpx.post(f"{url}/api/v2/alerts", json=body, timeout=10)
    assert response.status_code == 200, response.text


def _statuses(url: str) -> dict[tuple[str, str], dict]:
    """(alertname, model) -> the alert as Alertmanager lists it (every state is listed)."""
    response = httpx.get(f"{url}/api/v2/alerts", timeout=10)
    assert response.status_code == 200, response.text
    return {(a["labels"]["alertname"], a["labels"]["model"]): a for a in response.json()}


SYMPTOMS = [name for name in HELD_BACK_WHILE_GONE if name not in SERVER_GONE]


@pytest.mark.parametrize(
    "gone",
    [(), ("ModelServerDown",), ("ModelServerMissing",), SERVER_GONE],
    ids=lambda gone: "+".join(gone) or "every-server-up",
)
def test_a_gone_server_holds_back_exactly_its_models_symptoms(alertmanager, gone):
    """`gone`: the alerts saying that GONE's server is gone; OTHER's server is up. Every other
    alert fires for both models, and for the sentinel, whose server is down."""
    gone_by_model = {GONE: gone, OTHER: (), SENTINEL: ("ModelServerDown",)}
    posted = [
        _labels(name, model)
        for model, causes in gone_by_model.items()  # the sentinel last
        for name in (*causes, *SYMPTOMS)
    ]
    _post(alertmanager, posted)

    def sentinel_held_back() -> bool:
        states = {key: a["status"]["state"] for key, a in _statuses(alertmanager).items()}
        return any(states.get((name, SENTINEL)) == "suppressed" for name in SYMPTOMS)

    wait_for("a symptom of the sentinel held back (every alert seen)", sentinel_held_back)
    listed = _statuses(alertmanager)
    verdicts, expected = {}, {}
    for labels in posted:
        name, model = labels["alertname"], labels["model"]
        causes = {listed[cause, model]["fingerprint"] for cause in gone_by_model[model]}
        verdicts[name, model] = _verdict(listed[name, model]["status"], causes)
        held_back = bool(gone_by_model[model]) and HELD_BACK_WHILE_GONE[name]
        expected[name, model] = "held back" if held_back else "active"
    wrong = {key: (verdicts[key], want) for key, want in expected.items() if verdicts[key] != want}
    assert not wrong, f"(alertname, model): (verdict, expected): {wrong}"


def _verdict(status: dict, causes: set[str]) -> str:
    """Active, held back (by the alerts saying its own server is gone), or what else happened."""
    inhibitors = set(status["inhibitedBy"])
    if status["state"] == "active" and not inhibitors:
        return "active"
    if status["state"] == "suppressed" and inhibitors and inhibitors <= causes:
        return "held back"
    return (
        f"{status['state']}, inhibited by {sorted(inhibitors)}, silenced by {status['silencedBy']}"
    )
