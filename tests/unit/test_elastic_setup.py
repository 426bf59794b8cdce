"""setup/ against a local fake of the Elasticsearch and Kibana APIs: it configures everything,
a second run changes nothing, and every failure stops it with a message naming the cause. The
Elasticsearch step (which gates Logstash) never touches Kibana; the Kibana step retries on its own.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from native.processes import free_port
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


NOBODY = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused


def _setup(url: str, lines: list[str], timeout: float = 10.0, **env: str) -> ElasticSetup:
    config = SetupConfig.from_env(
        {
            **ENV,
            "ELASTICSEARCH_URL": url,
            "KIBANA_URL": url,
            "SETUP_TIMEOUT_SECONDS": str(timeout),
            **env,
        }
    )
    fast = SetupConfig(**{**config.__dict__, "poll_interval": 0.05, "max_retry_interval": 0.2})
    return ElasticSetup(fast, log=lines.append)


def _run(fake: FakeElastic, timeout: float = 10.0, step: str = "all", **env: str) -> list[str]:
    lines: list[str] = []
    with serve_fake(fake) as url:
        setup = _setup(url, lines, timeout, **env)
        try:
            setup.run_step(step)
        finally:
            setup.close()
    return lines


def _elasticsearch_file(name: str) -> dict:
    return json.loads((REPO / "elasticsearch" / name).read_text())


def _saved_objects_file() -> dict[tuple[str, str], dict]:
    """What setup imports into Kibana: kibana/saved-objects.ndjson, by (type, id)."""
    lines = (REPO / "kibana/saved-objects.ndjson").read_text().splitlines()
    objects = [json.loads(line) for line in lines if line.strip()]
    return {(o["type"], o["id"]): o for o in objects}


def test_setup_creates_users_roles_templates_policy_and_saved_objects():
    fake = FakeElastic(unavailable_calls=3, kibana_unavailable_calls=2)
    lines = _run(fake)
    stored = fake.resources
    assert stored["/_security/user/kibana_system/_password"] == {"password": "kibana-pw"}
    policy = stored["/_ilm/policy/mlobs-inference"]["policy"]["phases"]
    assert policy["hot"]["actions"]["rollover"]["max_age"] == "6h"
    assert policy["delete"]["min_age"] == "7d"
    template = stored["/_index_template/logs-mlobs.inference"]
    assert template == _elasticsearch_file("index-template.json")
    assert set(template["composed_of"]) <= {
        k.rsplit("/", 1)[1] for k in stored if k.startswith("/_component_template/")
    }
    writer = stored["/_security/user/mlobs_logstash_writer"]
    assert writer["password"] == "writer-pw" and writer["roles"] == ["mlobs_inference_writer"]
    # Each user gets the role its client needs (tests/unit/test_elastic_privileges.py).
    roles = {"writer": "mlobs_inference_writer", "reader": "mlobs_inference_reader"}
    for name, role in roles.items():
        assert stored[f"/_security/role/{role}"] == _elasticsearch_file(f"role-{name}.json")
    reader = stored["/_security/user/mlobs_grafana_reader"]
    assert reader["password"] == "reader-pw" and reader["roles"] == ["mlobs_inference_reader"]
    assert fake.saved_objects == _saved_objects_file()
    assert lines[-1] == "setup: Kibana done"


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


MISSING_REFERENCES = [
    {"type": "lens", "id": "mlobs-latency", "error": {"type": "missing_references"}}
]


def test_a_failed_saved_object_import_fails_although_kibana_answers_200():
    fake = FakeElastic(import_errors=MISSING_REFERENCES)
    with pytest.raises(SetupError, match="lens/mlobs-latency: missing_references"):
        _run(fake, timeout=1, step="kibana")


def test_the_elasticsearch_step_succeeds_without_kibana_and_never_calls_it():
    """What gates Logstash must not depend on Kibana: a failing import and a Kibana that does
    not answer at all change nothing for it."""
    fake = FakeElastic(import_errors=MISSING_REFERENCES, kibana_unavailable_calls=10_000)
    lines = _run(fake, step="elasticsearch", KIBANA_URL=NOBODY)
    assert "/_security/user/mlobs_logstash_writer" in fake.resources
    assert "/_index_template/logs-mlobs.inference" in fake.resources
    assert fake.kibana_calls() == []
    assert lines[-1] == "setup: Elasticsearch done"


def test_the_kibana_step_retries_a_kibana_that_is_not_ready_and_failed_imports():
    fake = FakeElastic(
        kibana_unavailable_calls=3, import_errors=MISSING_REFERENCES, failed_imports=2
    )
    lines = _run(fake, step="kibana")
    assert len(fake.kibana_calls()) == 3 + 2 + 1
    assert fake.saved_objects == _saved_objects_file()
    assert any("Kibana server is not ready yet" in line for line in lines)
    assert lines[-1] == "setup: Kibana done"
    assert fake.resources == {}  # the Kibana step leaves Elasticsearch alone


def test_the_kibana_step_gives_up_at_its_deadline_naming_the_last_failure():
    with pytest.raises(SetupError, match=r"not done within SETUP_TIMEOUT_SECONDS \(.*ConnectError"):
        _run(FakeElastic(), timeout=0.5, step="kibana", KIBANA_URL=NOBODY)


@pytest.mark.parametrize("step", ["elasticsearch", "kibana", "all"])
def test_every_step_stops_when_asked(step):
    lines: list[str] = []
    setup = _setup(NOBODY, lines)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    try:
        with pytest.raises(SetupError, match="stopped before it succeeded"):
            setup.run_step(step, deadline=math.inf, stop=stop)
    finally:
        setup.close()


@contextmanager
def _python_m_setup(*args: str, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """`python -m setup <args>`, killed at the end if it is still running (a failed wait)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "setup", *args],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_compose_commands_elasticsearch_step_exits_0_while_kibana_is_down():
    fake = FakeElastic()
    with serve_fake(fake) as url:
        env = {**ENV, "ELASTICSEARCH_URL": url, "KIBANA_URL": NOBODY}
        with _python_m_setup("elasticsearch", env=env) as process:
            output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "/_security/user/kibana_system/_password" in fake.resources


def test_compose_commands_kibana_service_becomes_ready_and_stops_cleanly(tmp_path: Path):
    """As the compose service runs it: retry, create the ready file, stay up, exit 0 on SIGTERM
    (PID 1 in a container ignores signals it has no handler for)."""
    ready = tmp_path / "ready"
    fake = FakeElastic(kibana_unavailable_calls=2)
    with serve_fake(fake) as url:
        env = {"ELASTIC_PASSWORD": "elastic-pw", "KIBANA_URL": url}
        with _python_m_setup("kibana", "--ready-file", str(ready), env=env) as process:
            deadline = time.monotonic() + 60
            while not ready.exists():
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "no ready file after 60 s"
                time.sleep(0.1)
            time.sleep(0.3)
            assert process.poll() is None  # still running: compose's healthcheck sees it
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=10)
    assert process.returncode == 0, output
    assert fake.saved_objects == _saved_objects_file()


@pytest.mark.parametrize(
    ("step", "signum"),
    [("elasticsearch", signal.SIGTERM), ("all", signal.SIGINT)],
    ids=["elasticsearch-SIGTERM", "all-SIGINT"],
)
def test_a_signal_stops_a_step_that_is_still_waiting(step, signum):
    """`docker compose stop` (SIGTERM) or Ctrl-C (SIGINT) while Elasticsearch is unreachable:
    the step ends now, not after SETUP_TIMEOUT_SECONDS, and says it did not finish."""
    env = {**ENV, "ELASTICSEARCH_URL": NOBODY, "KIBANA_URL": NOBODY}
    with _python_m_setup(step, env={**env, "SETUP_TIMEOUT_SECONDS": "600"}) as process:
        # The first line comes once the signal handlers are installed.
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "no output from python -m setup in 60 s"
        assert process.stdout.readline().startswith("setup: waiting for Elasticsearch")
        process.send_signal(signum)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 1, output
    assert f"setup ({step}) failed: Elasticsearch: stopped before it succeeded" in output


def test_elasticsearch_that_never_comes_up_times_out_with_a_message():
    with pytest.raises(
        SetupError, match=r"Elasticsearch: not done within .* \(cluster health: HTTP 503"
    ):
        _run(FakeElastic(unavailable_calls=10_000), timeout=1)


def test_missing_secrets_are_named():
    with pytest.raises(SetupError, match="KIBANA_SYSTEM_PASSWORD, LOGSTASH_WRITER_PASSWORD"):
        SetupConfig.from_env({"ELASTIC_PASSWORD": "x", "GRAFANA_ES_PASSWORD": "y"})


def test_the_kibana_step_needs_only_the_elastic_password():
    assert SetupConfig.from_env({"ELASTIC_PASSWORD": "x"}, step="kibana").elastic_password == "x"
    with pytest.raises(SetupError, match="ELASTIC_PASSWORD"):
        SetupConfig.from_env({}, step="kibana")
