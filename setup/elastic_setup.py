"""Elasticsearch and Kibana setup for the inference log pipeline, in two independent steps.

The Elasticsearch step waits for Elasticsearch, sets the `kibana_system` password, and installs
the ILM policy, the component and index templates of the data stream, and the writer and reader
roles and users: Logstash needs all of it and Kibana logs in as `kibana_system`, so compose starts
both only once this step has succeeded. The Kibana step waits for Kibana and imports the saved
objects; it retries on its own (Kibana may be slow, degraded or refuse an object) and nothing
waits for it, so a Kibana problem never holds back the log pipeline. Every call is a PUT or an
overwriting import, so running a step again changes nothing. Each failure names the step and what
the server said.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO = Path(__file__).resolve().parent.parent
ELASTICSEARCH_DIR = REPO / "elasticsearch"
SAVED_OBJECTS = REPO / "kibana" / "saved-objects.ndjson"
ILM_POLICY = "mlobs-inference"
MAPPINGS_TEMPLATE = "mlobs-inference-mappings"
SETTINGS_TEMPLATE = "mlobs-inference-settings"
INDEX_TEMPLATE = "logs-mlobs.inference"
WRITER_ROLE = "mlobs_inference_writer"
READER_ROLE = "mlobs_inference_reader"


class SetupError(RuntimeError):
    """A setup step failed; the message says which and why."""


class _NotYet(Exception):
    """An attempt failed in a way a later attempt may not (a server still starting): retry."""


T = TypeVar("T")


# The steps ("all": both, one after the other) and what each needs from the environment (.env);
# the Kibana step only logs in as elastic.
REQUIRED = {
    "elasticsearch": {
        "elastic_password": "ELASTIC_PASSWORD",
        "kibana_system_password": "KIBANA_SYSTEM_PASSWORD",
        "writer_password": "LOGSTASH_WRITER_PASSWORD",
        "reader_password": "GRAFANA_ES_PASSWORD",
    },
    "kibana": {"elastic_password": "ELASTIC_PASSWORD"},
}
REQUIRED["all"] = {**REQUIRED["elasticsearch"], **REQUIRED["kibana"]}


@dataclass(frozen=True)
class SetupConfig:
    """Where the servers are and the credentials to create, from the environment (.env)."""

    elasticsearch_url: str
    kibana_url: str
    elastic_password: str
    kibana_system_password: str = ""
    writer_user: str = "mlobs_logstash_writer"
    writer_password: str = ""
    reader_user: str = "mlobs_grafana_reader"
    reader_password: str = ""
    rollover_age: str = "1d"
    delete_age: str = "30d"
    timeout: float = 300.0
    poll_interval: float = 2.0
    max_retry_interval: float = 30.0  # the Kibana step's back-off between attempts stops here

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, step: str = "all") -> SetupConfig:
        """Read the configuration of `step`; SetupError names every missing variable."""
        env = os.environ if env is None else env
        required = REQUIRED[step]
        missing = [var for var in required.values() if not env.get(var)]
        if missing:
            raise SetupError(f"missing environment variables: {', '.join(missing)} (see .env)")
        return cls(
            elasticsearch_url=env.get("ELASTICSEARCH_URL", "http://elasticsearch:9200"),
            kibana_url=env.get("KIBANA_URL", "http://kibana:5601"),
            writer_user=env.get("LOGSTASH_WRITER_USER", cls.writer_user),
            reader_user=env.get("GRAFANA_ES_USER", cls.reader_user),
            rollover_age=env.get("MLOBS_LOGS_ROLLOVER_AGE", cls.rollover_age),
            delete_age=env.get("MLOBS_LOGS_DELETE_AGE", cls.delete_age),
            timeout=float(env.get("SETUP_TIMEOUT_SECONDS", cls.timeout)),
            **{field: env[var] for field, var in required.items()},
        )


def load_json(name: str) -> dict[str, Any]:
    return json.loads((ELASTICSEARCH_DIR / name).read_text())


def ilm_policy(config: SetupConfig) -> dict[str, Any]:
    """The ILM policy with the configured rollover and delete ages."""
    policy = load_json("ilm-policy.json")
    phases = policy["policy"]["phases"]
    phases["hot"]["actions"]["rollover"]["max_age"] = config.rollover_age
    phases["delete"]["min_age"] = config.delete_age
    return policy


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("reason") or error.get("type") or error)
    return str(error or body)[:300]


class ElasticSetup:
    """Runs the setup steps against one Elasticsearch and one Kibana."""

    def __init__(self, config: SetupConfig, log: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.log = log or (lambda line: print(line, flush=True))
        auth = ("elastic", config.elastic_password)
        self.es = httpx.Client(base_url=config.elasticsearch_url, auth=auth, timeout=30)
        self.kibana = httpx.Client(
            base_url=config.kibana_url, auth=auth, timeout=60, headers={"kbn-xsrf": "true"}
        )

    def close(self) -> None:
        self.es.close()
        self.kibana.close()

    def _retry(
        self,
        what: str,
        attempt: Callable[[], T],
        deadline: float,
        stop: threading.Event,
        max_interval: float,
    ) -> T:
        """`attempt()` until it returns, again after each _NotYet or HTTP error: first after
        poll_interval, then doubling up to max_interval. SetupError when the next try would come
        after `deadline` (time.monotonic()) or once `stop` is set; any other error at once."""
        delay, last, next_note = self.config.poll_interval, "not tried yet", time.monotonic()
        while not stop.is_set():
            try:
                return attempt()
            except _NotYet as exc:
                last = str(exc)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() + delay > deadline:
                raise SetupError(f"{what}: not done within SETUP_TIMEOUT_SECONDS ({last})")
            if time.monotonic() >= next_note:
                self.log(f"  {what}: retrying in {delay:.0f}s ({last})")
                next_note = time.monotonic() + 15
            stop.wait(delay)
            delay = min(delay * 2, max_interval)
        raise SetupError(f"{what}: stopped before it succeeded ({last})")

    def _elasticsearch_ready(self) -> None:
        response = self.es.get(
            "/_cluster/health", params={"wait_for_status": "yellow", "timeout": "1s"}
        )
        if response.status_code == 401:
            raise SetupError(
                "Elasticsearch refused the elastic user: is ELASTIC_PASSWORD the one "
                "the cluster was created with? (a changed password needs `make clean`)"
            )
        if response.status_code != 200:
            raise _NotYet(f"cluster health: HTTP {response.status_code}")

    def _put(self, step: str, path: str, body: dict[str, Any], method: str = "PUT") -> None:
        response = self.es.request(method, path, json=body)
        if not response.is_success:
            raise SetupError(
                f"{step}: HTTP {response.status_code} from {path}: {_reason(response)}"
            )
        self.log(f"  ok  {step}")

    def configure_elasticsearch(self) -> None:
        c = self.config
        self._put(
            "kibana_system password",
            "/_security/user/kibana_system/_password",
            {"password": c.kibana_system_password},
            method="POST",
        )
        self._put("ILM policy", f"/_ilm/policy/{ILM_POLICY}", ilm_policy(c))
        self._put(
            "mappings template",
            f"/_component_template/{MAPPINGS_TEMPLATE}",
            load_json("component-template.json"),
        )
        self._put(
            "settings template",
            f"/_component_template/{SETTINGS_TEMPLATE}",
            load_json("component-template-settings.json"),
        )
        self._put(
            "index template", f"/_index_template/{INDEX_TEMPLATE}", load_json("index-template.json")
        )
        self._put("writer role", f"/_security/role/{WRITER_ROLE}", load_json("role-writer.json"))
        self._put("reader role", f"/_security/role/{READER_ROLE}", load_json("role-reader.json"))
        self._put(
            f"user {c.writer_user}",
            f"/_security/user/{c.writer_user}",
            {
                "password": c.writer_password,
                "roles": [WRITER_ROLE],
                "full_name": "Logstash writer of the inference data stream",
            },
        )
        self._put(
            f"user {c.reader_user}",
            f"/_security/user/{c.reader_user}",
            {
                "password": c.reader_password,
                "roles": [READER_ROLE],
                "full_name": "Grafana reader of the inference data stream",
            },
        )

    def import_saved_objects(self, path: Path = SAVED_OBJECTS) -> int:
        """Import the NDJSON with overwrite; the API answers 200 even when objects fail, so the
        `success` flag in the body decides."""
        response = self.kibana.post(
            "/api/saved_objects/_import",
            params={"overwrite": "true"},
            files={"file": (path.name, path.read_bytes(), "application/ndjson")},
        )
        if not response.is_success:
            raise SetupError(
                f"saved objects import: HTTP {response.status_code}: {_reason(response)}"
            )
        body = response.json()
        if not body.get("success"):
            problems = "; ".join(
                f"{e.get('type')}/{e.get('id')}: {e.get('error', {}).get('type', e.get('error'))}"
                for e in body.get("errors", [])
            )
            raise SetupError(f"saved objects import reported failures: {problems or body}")
        self.log(f"  ok  saved objects ({body.get('successCount', 0)} imported)")
        return int(body.get("successCount", 0))

    def _import_attempt(self) -> int:
        # No status gate: a degraded Kibana may still import, and one that is not ready answers
        # 503, which is retried like any other failure.
        try:
            return self.import_saved_objects()
        except SetupError as exc:
            raise _NotYet(str(exc)) from exc
        except ValueError as exc:  # a 200 that is not JSON: a proxy, a half-started Kibana
            raise _NotYet(f"unreadable answer from Kibana: {exc}") from exc

    def run_step(
        self, step: str, deadline: float | None = None, stop: threading.Event | None = None
    ) -> None:
        """Run `step` (a key of REQUIRED), retrying what a starting server refuses, until it is
        done, until `deadline` (time.monotonic(); None: SETUP_TIMEOUT_SECONDS from now;
        math.inf: none) or until `stop` is set. The Elasticsearch step never calls Kibana."""
        if step not in REQUIRED:
            raise ValueError(f"unknown step {step!r}, not one of {', '.join(REQUIRED)}")
        deadline = time.monotonic() + self.config.timeout if deadline is None else deadline
        stop = stop or threading.Event()
        c = self.config
        if step in ("elasticsearch", "all"):
            self.log(f"setup: waiting for Elasticsearch at {c.elasticsearch_url}")
            self._retry("Elasticsearch", self._elasticsearch_ready, deadline, stop, c.poll_interval)
            self.configure_elasticsearch()
            self.log("setup: Elasticsearch done")
        if step in ("kibana", "all"):
            self.log(f"setup: importing the saved objects into Kibana at {c.kibana_url}")
            self._retry(
                "Kibana's saved objects", self._import_attempt, deadline, stop, c.max_retry_interval
            )
            self.log("setup: Kibana done")
