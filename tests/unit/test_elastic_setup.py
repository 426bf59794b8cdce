"""setup/ against a local fake of the Elasticsearch and Kibana APIs: it configures everything,
a second run changes nothing, and every failure stops it with a message naming the cause."""

from __future__ import annotations

import json

import pytest

from setup.elastic_setup import ElasticSetup, SetupConfig, SetupError
from tests.conftest import REPO
from tests.support.fake_elastic import FakeElastic, serve_fake

ENV = {
    "ELASTIC_PASSWORD": "elastic-pw",
    "KIBANA_SYSTEM_PASSWORD": "kibana-pw",
    "LOGSTASH_WRITER_PASSWORD": "writer-pw",
    "GRAFANA_ES_PASSWORD": "reader-pw",
    "MLOBS_LOGS_ROLLOVER_AGE": "6h",
    "MLOBS_LOGS_DELETE_AGE": "7d",
}


def _run(fake: FakeElastic, timeout: float = 10.0, **env: str) -> list[str]:
    lines: list[str] = []
    with serve_fake(fake) as url:
        config = SetupConfig.from_env(
            {
                **ENV,
                "ELASTICSEARCH_URL": url,
                "KIBANA_URL": url,
                "SETUP_TIMEOUT_SECONDS": str(timeout),
                **env,
            }
        )
        config = SetupConfig(**{**config.__dict__, "poll_interval": 0.05})
        setup = ElasticSetup(config, log=lines.append)
        try:
            setup.run()
        finally:
            setup.close()
    return lines


def test_setup_creates_users_roles_templates_policy_and_saved_objects():
    fake = FakeElastic(unavailable_calls=3, kibana_unavailable_calls=2)
    lines = _run(fake)
    stored = fake.resources
    assert stored["/_security/user/kibana_system/_password"] == {"password": "kibana-pw"}
    policy = stored["/_ilm/policy/mlobs-inference"]["policy"]["phases"]
    assert policy["hot"]["actions"]["rollover"]["max_age"] == "6h"
    assert policy["delete"]["min_age"] == "7d"
    template = stored["/_index_template/logs-mlobs.inference"]
    assert set(template["composed_of"]) <= {
        k.rsplit("/", 1)[1] for k in stored if k.startswith("/_component_template/")
    }
    writer = stored["/_security/user/mlobs_logstash_writer"]
    assert writer["password"] == "writer-pw" and writer["roles"] == ["mlobs_inference_writer"]
    assert "/_security/role/mlobs_inference_writer" in stored
    assert stored["/_security/user/mlobs_grafana_reader"]["roles"] == ["mlobs_inference_reader"]
    ndjson = (REPO / "kibana/saved-objects.ndjson").read_text().splitlines()
    assert len(fake.saved_objects) == len([line for line in ndjson if line.strip()])
    assert lines[-1] == "setup: done"


def test_a_second_run_changes_nothing_and_succeeds():
    fake = FakeElastic()
    _run(fake)
    changes = fake.changes
    snapshot = json.dumps(fake.resources, sort_keys=True)
    _run(fake)
    assert fake.changes == changes
    assert json.dumps(fake.resources, sort_keys=True) == snapshot


def test_wrong_elastic_password_fails_at_once_with_a_hint():
    fake = FakeElastic(elastic_password="something-else")
    with pytest.raises(SetupError, match="ELASTIC_PASSWORD"):
        _run(fake)
    assert fake.resources == {}


def test_a_refused_request_names_the_step_and_the_reason():
    reason = "composable template [logs-mlobs.inference] template after composition is invalid"
    fake = FakeElastic(
        fail={
            "/_index_template/logs-mlobs.inference": (
                400,
                {"error": {"type": "illegal_argument_exception", "reason": reason}},
            )
        }
    )
    with pytest.raises(
        SetupError, match=r"index template: HTTP 400 .*after composition is invalid"
    ):
        _run(fake)


def test_a_failed_saved_object_import_fails_although_kibana_answers_200():
    fake = FakeElastic(
        import_errors=[
            {"type": "lens", "id": "mlobs-latency", "error": {"type": "missing_references"}}
        ]
    )
    with pytest.raises(SetupError, match="lens/mlobs-latency: missing_references"):
        _run(fake)


def test_elasticsearch_that_never_comes_up_times_out_with_a_message():
    with pytest.raises(SetupError, match="Elasticsearch not ready after 1s"):
        _run(FakeElastic(unavailable_calls=10_000), timeout=1)


def test_missing_secrets_are_named():
    with pytest.raises(SetupError, match="KIBANA_SYSTEM_PASSWORD, LOGSTASH_WRITER_PASSWORD"):
        SetupConfig.from_env({"ELASTIC_PASSWORD": "x", "GRAFANA_ES_PASSWORD": "y"})
