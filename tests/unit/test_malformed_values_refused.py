"""A value the mapping cannot take is refused, so Logstash keeps it in the dead letter queue.

The pipeline's promise (logstash/config/logstash.yml, the README) is that Elasticsearch refuses a
malformed value and Logstash's dead letter queue keeps the event. That holds only where
`ignore_malformed` is off: with it on, Elasticsearch indexes the document without the field and
answers 201, and nothing reaches the queue. Elasticsearch 9.5's defaults (elastic/elasticsearch):
- a new data stream whose name matches logs-*-* gets index.mode logsdb unless its template sets a
  mode: x-pack/plugin/logsdb/src/main/java/org/elasticsearch/xpack/logsdb/
  LogsdbIndexModeSettingsProvider.java (getLogsdbModeSetting), enabled by
  cluster.logsdb.enabled, which defaults to true on a cluster that had no logs-*-* data streams
  before 9.0 (LogsDBPlugin.java, CLUSTER_LOGSDB_ENABLED from logsdb.prior_logs_usage);
- index.mapping.ignore_malformed defaults to true in logsdb mode, false otherwise:
  server/src/main/java/org/elasticsearch/index/mapper/FieldMapper.java (IGNORE_MALFORMED_SETTING);
  a field's own `ignore_malformed` parameter overrides the index setting.
The settings are computed here as Elasticsearch composes them for our data stream.
"""

from __future__ import annotations

import fnmatch
import json

import yaml

from setup.elastic_setup import MAPPINGS_TEMPLATE, SETTINGS_TEMPLATE
from tests.conftest import REPO

DATA_STREAM = "logs-mlobs.inference-default"
LOGSDB_PATTERN = "logs-*-*"
CLUSTER_LOGSDB_ENABLED = True  # a new 9.x cluster
# Field types that have an ignore_malformed parameter.
MALFORMABLE = {"float", "double", "long", "integer", "short", "byte", "date", "date_nanos", "ip"}
COMPONENT_FILES = {
    MAPPINGS_TEMPLATE: "component-template.json",
    SETTINGS_TEMPLATE: "component-template-settings.json",
}


def _json(name: str) -> dict:
    return json.loads((REPO / "elasticsearch" / name).read_text())


def _index_settings() -> dict[str, object]:
    """The data stream's index settings: component templates in order, then the template's."""
    template = _json("index-template.json")
    assert any(fnmatch.fnmatchcase(DATA_STREAM, p) for p in template["index_patterns"])
    settings: dict[str, object] = {}
    for component in template["composed_of"]:
        settings |= _json(COMPONENT_FILES[component])["template"].get("settings", {})
    return settings | template.get("template", {}).get("settings", {})


def index_mode(settings: dict[str, object], data_stream: str = DATA_STREAM) -> str:
    if "index.mode" in settings:
        return str(settings["index.mode"])
    if CLUSTER_LOGSDB_ENABLED and fnmatch.fnmatchcase(data_stream, LOGSDB_PATTERN):
        return "logsdb"
    return "standard"


def ignore_malformed(settings: dict[str, object]) -> bool:
    """The index-wide default of every field's ignore_malformed."""
    if "index.mapping.ignore_malformed" in settings:
        return str(settings["index.mapping.ignore_malformed"]).lower() == "true"
    return index_mode(settings) == "logsdb"


def _fields(properties: dict, prefix: str = "") -> dict[str, dict]:
    out = {}
    for name, spec in properties.items():
        out[f"{prefix}{name}"] = spec
        out |= _fields(spec.get("properties", {}), f"{prefix}{name}.")
    return out


def test_no_field_of_the_data_stream_ignores_malformed_values():
    settings = _index_settings()
    default = ignore_malformed(settings)
    mappings = _json("component-template.json")["template"]["mappings"]
    fields = _fields(mappings["properties"])
    for template in mappings.get("dynamic_templates", []):
        [(name, spec)] = template.items()
        fields[f"dynamic template {name}"] = spec["mapping"]
    silent = sorted(
        name
        for name, spec in fields.items()
        if spec.get("type") in MALFORMABLE and spec.get("ignore_malformed", default)
    )
    assert not silent, (
        f"index.mode {index_mode(settings)}: {silent} would drop a malformed value silently "
        "instead of refusing the document to the dead letter queue"
    )


def test_the_data_stream_sets_its_index_mode_explicitly():
    # Not left to a cluster default that an upgrade or a setting can change.
    assert _index_settings().get("index.mode") == "standard"


def test_the_model_knows_the_logsdb_default():
    assert index_mode({}) == "logsdb" and ignore_malformed({}) is True
    assert index_mode({}, "metrics-x-default") == "standard"
    explicit = {"index.mode": "logsdb", "index.mapping.ignore_malformed": False}
    assert ignore_malformed(explicit) is False


def test_logstash_keeps_what_elasticsearch_refuses():
    """The other half of the promise: without the dead letter queue Logstash drops a refused
    event with a log line, and the event is gone."""
    settings = yaml.safe_load((REPO / "logstash/config/logstash.yml").read_text())
    assert settings["dead_letter_queue.enable"] is True
