"""Contracts of the log pipeline: the events the servers really write, the Filebeat and Logstash
configs, the Elasticsearch mapping, and the environment variables the configs use."""

from __future__ import annotations

import json
import re
from pathlib import Path

import logstash_pipeline_parser
import yaml

from mlobs.spec import load_spec
from setup.elastic_setup import SetupConfig
from tests.conftest import REPO
from tests.support.http import log_events
from tests.unit.test_server_contract import ANOMALY_BODY, CHAT_BODY

SPEC = load_spec(REPO / "observability.yaml")
MAPPING = json.loads((REPO / "elasticsearch/component-template.json").read_text())["template"][
    "mappings"
]
# Added on the way: Filebeat (log.*), Logstash (tags, @timestamp from timestamp), the data stream.
ADDED_BY_PIPELINE = {
    "@timestamp",
    "tags",
    "log.file.path",
    "log.offset",
    "data_stream.type",
    "data_stream.dataset",
    "data_stream.namespace",
}
ES_TYPE_OF = {str: {"keyword"}, float: {"float"}, int: {"float", "long"}}


def _mapped_fields(properties: dict, prefix: str = "") -> dict[str, str]:
    fields = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec and spec.get("type", "object") == "object":
            fields |= _mapped_fields(spec["properties"], f"{path}.")
        else:
            fields[path] = spec.get("type", "object")
    return fields


def _flatten(event: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in event.items():
        if isinstance(value, dict) and key != "input":
            out |= _flatten(value, f"{prefix}{key}.")
        elif value is not None:  # Filebeat drops nulls (keep_null is off)
            out[f"{prefix}{key}"] = value
    return out


def _real_events(serve, anomaly_model, chatbot_model, log_file: Path) -> list[dict]:
    """Events of every kind from both servers: answers, client and server errors, raw input."""
    with serve(anomaly_model, faults_enabled=True) as client:
        client.post("/predict", json=ANOMALY_BODY)
        client.post("/predict", json={"features": {}})
        client.post("/admin/faults", json={"error_rate": 1.0})
        client.post("/predict", json=ANOMALY_BODY)
    with serve(chatbot_model, log_raw_input=True) as client:
        client.post("/predict", json=CHAT_BODY)
        client.post("/predict", json={"message": "qwzx"})
    return log_events(log_file)


def test_every_event_field_is_mapped_with_its_type_and_every_mapping_is_used(
    serve, anomaly_model, chatbot_model, log_file
):
    mapped = _mapped_fields(MAPPING["properties"])
    events = _real_events(serve, anomaly_model, chatbot_model, log_file)
    assert {e["status"] for e in events} == {"success", "client_error", "server_error"}
    seen: set[str] = set()
    for event in events:
        document = _flatten(event)
        document["@timestamp"] = document.pop("timestamp")  # Logstash's date filter
        for field, value in document.items():
            seen.add(field)
            assert field in mapped, f"{field} has no mapping"
            if field == "@timestamp":
                assert mapped[field] == "date"
            elif field == "input":
                assert mapped[field] == "object"  # stored, not indexed: opted-in raw text
            else:
                assert mapped[field] in ES_TYPE_OF[type(value)], (
                    f"{field}={value!r}: {mapped[field]}"
                )
    assert set(mapped) - seen - ADDED_BY_PIPELINE == set()


def test_mapping_is_explicit_and_features_are_numeric():
    assert MAPPING["dynamic"] is False
    [template] = MAPPING["dynamic_templates"]
    assert template["feature_values"]["path_match"] == "features.*"
    assert template["feature_values"]["mapping"]["type"] == "float"
    features = MAPPING["properties"]["features"]["properties"]
    assert {spec["type"] for spec in features.values()} == {"float"}


def test_index_template_targets_the_data_stream_above_the_builtin_logs_template():
    template = json.loads((REPO / "elasticsearch/index-template.json").read_text())
    assert template["index_patterns"] == ["logs-mlobs.inference-*"]
    assert template["data_stream"] == {} and template["priority"] > 100
    settings = json.loads((REPO / "elasticsearch/component-template-settings.json").read_text())
    policy = settings["template"]["settings"]["index.lifecycle.name"]
    assert policy == "mlobs-inference"


def test_roles_are_least_privilege():
    writer = json.loads((REPO / "elasticsearch/role-writer.json").read_text())
    reader = json.loads((REPO / "elasticsearch/role-reader.json").read_text())
    assert writer["cluster"] == ["monitor"]
    [w] = writer["indices"]
    assert w["names"] == ["logs-mlobs.inference-*"]
    assert set(w["privileges"]) == {"create_doc", "auto_configure", "view_index_metadata"}
    [r] = reader["indices"]
    assert r["names"] == ["logs-mlobs.inference-*"]
    assert set(r["privileges"]) == {"read", "view_index_metadata"}
    assert "cluster" not in reader


# --- Logstash --------------------------------------------------------------------------------


def _pipeline() -> list:
    text = (REPO / "logstash/pipeline/inference.conf").read_text()
    return logstash_pipeline_parser.Pipeline(text).parse()


def _section(tree: list, name: str) -> list:
    return next(body for section, body in tree if section == name)


def _options(plugin_body: list) -> dict:
    return {key: value[0] if len(value) == 1 else value for key, value in plugin_body}


def test_logstash_pipeline_has_the_beats_input():
    [(name, body)] = _section(_pipeline(), "input")
    assert name == "beats" and _options(body)["port"] == 5044


def test_logstash_filters_are_in_the_order_that_keeps_events_out_of_the_dlq():
    filters = _section(_pipeline(), "filter")
    names = [item[0] for item in filters]
    assert names.index("fingerprint") < names.index("date")  # fingerprint reads `timestamp`
    assert names.index("mutate") < names.index("if")  # convert before comparing
    fingerprint = _options(filters[names.index("fingerprint")][1])
    assert fingerprint["target"] == "[@metadata][document_id]"
    assert "request_id" in fingerprint["source"] and fingerprint["method"] == "SHA256"
    date = _options(filters[names.index("date")][1])
    assert date["match"] == ["timestamp", "ISO8601"] and date["target"] == "@timestamp"
    convert = _options(filters[names.index("mutate")][1])["convert"]
    assert convert == [["confidence", ["float"]]]
    condition = filters[names.index("if")][1]
    assert ["[confidence]", "<", SPEC.alerts.low_confidence.confidence_threshold] in condition
    assert ["_mutate_error", "not", "in", "[tags]"] in condition
    assert "low_confidence" in json.dumps(condition)


def test_logstash_output_writes_the_data_stream_create_only_as_the_writer():
    [(name, body)] = _section(_pipeline(), "output")
    options = _options(body)
    assert name == "elasticsearch"
    assert options["data_stream"] == "true"
    assert (
        options["data_stream_type"],
        options["data_stream_dataset"],
        options["data_stream_namespace"],
    ) == ("logs", "mlobs.inference", "default")
    assert options["document_id"] == "%{[@metadata][document_id]}"
    assert options["user"] == "${LOGSTASH_WRITER_USER}"
    assert options["password"] == "${LOGSTASH_WRITER_PASSWORD}"
    # Rejected in data-stream mode, or gone from plugin 12: Logstash would not start.
    rejected = {
        "index",
        "manage_template",
        "template",
        "template_name",
        "ilm_enabled",
        "ilm_policy",
        "ilm_rollover_alias",
        "cacert",
        "ssl",
        "doc_as_upsert",
        "action",
    }
    assert not rejected & set(options)


def test_logstash_settings_persist_the_queue_and_keep_a_dead_letter_queue():
    settings = yaml.safe_load((REPO / "logstash/config/logstash.yml").read_text())
    assert settings["queue.type"] == "persisted"
    assert settings["dead_letter_queue.enable"] is True
    assert settings["api.http.port"] == 9600


# --- Filebeat --------------------------------------------------------------------------------


def test_filebeat_reads_the_shared_log_files_and_ships_to_logstash():
    config = yaml.safe_load((REPO / "filebeat/filebeat.yml").read_text())
    [source] = config["filebeat.inputs"]
    assert source["type"] == "filestream" and source["id"]
    assert source["paths"] == ["/var/log/mlobs/*.log"]
    [parser] = source["parsers"]
    assert parser["ndjson"]["target"] == "" and parser["ndjson"]["add_error_key"] is True
    assert config["output.logstash"]["hosts"] == ["logstash:5044"]
    assert config["path.data"]
    assert config["http.enabled"] is True and config["http.port"] == 5066
    assert "docker" not in (REPO / "filebeat/filebeat.yml").read_text().replace("No Docker", "")


# --- environment -----------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}")
CONFIGS_WITH_VARIABLES = [
    "grafana/provisioning/datasources/datasources.yml",
    "logstash/pipeline/inference.conf",
    "logstash/config/logstash.yml",
    "kibana/kibana.yml",
    "filebeat/filebeat.yml",
]


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value
    return pairs


def test_every_variable_a_config_uses_is_in_env_example():
    declared = set(_env_example())
    for config in CONFIGS_WITH_VARIABLES:
        used = set(_VARIABLE.findall((REPO / config).read_text()))
        assert used <= declared, f"{config}: {sorted(used - declared)} missing from .env.example"


def test_every_variable_setup_reads_is_in_env_example():
    source = (REPO / "setup/elastic_setup.py").read_text()
    used = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', source)) - {"GET", "PUT", "POST"}
    assert used <= set(_env_example()), sorted(used - set(_env_example()))
    SetupConfig.from_env({k: v or "x" for k, v in _env_example().items()})


def test_env_example_holds_no_secret():
    for key, value in _env_example().items():
        if any(word in key for word in ("PASSWORD", "KEY", "TOKEN", "SECRET")):
            assert value == "", f"{key} must be empty in .env.example"


# --- Kibana ----------------------------------------------------------------------------------


def _saved_objects() -> list[dict]:
    text = (REPO / "kibana/saved-objects.ndjson").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_saved_objects_parse_and_carry_migration_versions():
    objects = _saved_objects()
    assert [o["type"] for o in objects] == ["index-pattern", "search", "lens", "lens", "dashboard"]
    assert len({(o["type"], o["id"]) for o in objects}) == len(objects)
    for item in objects:
        assert item["coreMigrationVersion"] and item["typeMigrationVersion"]
        assert item["managed"] is False and item["attributes"]["title"]
    for item in objects:  # nested JSON strings must parse too
        for key, value in item["attributes"].items():
            if key.endswith("JSON"):
                json.loads(value)
        meta = item["attributes"].get("kibanaSavedObjectMeta", {})
        if "searchSourceJSON" in meta:
            json.loads(meta["searchSourceJSON"])


def test_every_reference_resolves_inside_the_file():
    objects = _saved_objects()
    present = {(o["type"], o["id"]) for o in objects}
    for item in objects:
        for reference in item["references"]:
            assert (reference["type"], reference["id"]) in present, (item["id"], reference)


def test_saved_search_shows_low_confidence_events_newest_first():
    [search] = [o for o in _saved_objects() if o["type"] == "search"]
    attributes = search["attributes"]
    source = json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert source["query"] == {"query": "tags:low_confidence", "language": "kuery"}
    assert source["indexRefName"] in {r["name"] for r in search["references"]}
    assert attributes["sort"] == [["@timestamp", "desc"]]
    assert attributes["columns"][:3] == ["model", "prediction", "confidence"]
    mapped = _mapped_fields(MAPPING["properties"])
    assert all(column in mapped for column in attributes["columns"])


def test_lens_layers_and_dashboard_panels_are_wired():
    objects = _saved_objects()
    data_view = objects[0]
    assert data_view["attributes"]["title"] == "logs-mlobs.inference-*"
    assert data_view["attributes"]["timeFieldName"] == "@timestamp"
    mapped = _mapped_fields(MAPPING["properties"])
    for lens in (o for o in objects if o["type"] == "lens"):
        state = lens["attributes"]["state"]
        [(layer, content)] = state["datasourceStates"]["formBased"]["layers"].items()
        assert f"indexpattern-datasource-layer-{layer}" in {r["name"] for r in lens["references"]}
        [vis_layer] = state["visualization"]["layers"]
        assert vis_layer["layerId"] == layer
        used = [vis_layer["xAccessor"], *vis_layer["accessors"], vis_layer.get("splitAccessor")]
        assert {u for u in used if u} <= set(content["columns"]) == set(content["columnOrder"])
        for column in content["columns"].values():
            assert column["sourceField"] in mapped or column["sourceField"] == "___records___"
    [board] = [o for o in objects if o["type"] == "dashboard"]
    panels = json.loads(board["attributes"]["panelsJSON"])
    references = {r["name"]: r for r in board["references"]}
    for panel in panels:
        reference = references[f"{panel['panelIndex']}:{panel['panelRefName']}"]
        assert reference["type"] == panel["type"]
        assert panel["gridData"]["i"] == panel["panelIndex"]
        assert panel["gridData"]["x"] + panel["gridData"]["w"] <= 48


def test_grafana_links_open_the_provisioned_data_view():
    from mlobs.generate.grafana_dashboards import kibana_discover_url

    assert f"dataViewId:'{_saved_objects()[0]['id']}'" in kibana_discover_url(SPEC)
