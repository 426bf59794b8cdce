"""Contracts of the log pipeline: the lines the servers really write, followed through Filebeat,
Logstash and the Elasticsearch mapping field by field (tests/support/log_chain.py), and the
Filebeat, Logstash and Kibana configs and the environment variables they use."""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest
import yaml

from mlobs.generate.logstash_pipeline import DOCUMENT_ID_FIELD
from mlobs.metrics import STATUSES
from mlobs.spec import load_spec
from setup.elastic_setup import SetupConfig
from tests.conftest import REPO
from tests.support.generated import generated_text
from tests.support.inference_lines import OPTIONAL_KEYS, inference_lines
from tests.support.log_chain import (
    FILEBEAT_FIELDS,
    Indexed,
    filebeat,
    filebeat_processors,
    logstash,
    options,
    pipeline,
)
from tests.support.stack_files import (
    compose,
    env_example,
    filebeat_config,
    filebeat_input,
    published_ports,
)

SPEC = load_spec(REPO / "observability.yaml")
MAPPING = json.loads((REPO / "elasticsearch/component-template.json").read_text())["template"][
    "mappings"
]


def _mapped_fields(properties: dict, prefix: str = "") -> dict[str, str]:
    fields = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec and spec.get("type", "object") == "object":
            fields |= _mapped_fields(spec["properties"], f"{path}.")
        else:
            fields[path] = spec.get("type", "object")
    return fields


MAPPED = _mapped_fields(MAPPING["properties"])


def _mapped_type(field: str) -> str | None:
    if field in MAPPED:
        return MAPPED[field]
    if field.startswith("features."):  # the dynamic template
        return MAPPING["dynamic_templates"][0]["feature_values"]["mapping"]["type"]
    return None


def _flatten(document: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        # An object mapped `enabled: false` (raw_input) is stored whole, its keys never indexed.
        if isinstance(value, dict) and MAPPED.get(path) != "object":
            out |= _flatten(value, f"{path}.")
        else:
            out[path] = value
    return out


def _is_date(value: object) -> bool:
    try:
        datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _fits(mapped_type: str, value: object) -> bool:
    """Whether Elasticsearch indexes this JSON value under this mapping without refusing it."""
    values = value if isinstance(value, list) else [value]
    checks = {
        "keyword": lambda v: isinstance(v, str),
        "constant_keyword": lambda v: isinstance(v, str),
        "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "long": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "date": _is_date,
        "date_nanos": _is_date,
        "object": lambda v: isinstance(v, dict),
    }
    return all(checks[mapped_type](v) for v in values)


@pytest.fixture
def lines(serve, anomaly_model, chatbot_model, log_file) -> list[str]:
    return inference_lines(serve, anomaly_model, chatbot_model, log_file)


def _indexed(lines: list[str]) -> list[tuple[dict, Indexed]]:
    return [(json.loads(line), logstash(filebeat(line))) for line in lines]


def test_the_lines_cover_every_kind_of_event(lines):
    events = [json.loads(line) for line in lines]
    assert {e["status"] for e in events} == set(STATUSES)
    assert {"timeout", "shutting_down"} <= {e.get("error_type") for e in events}
    assert {key for e in events for key, v in e.items() if v is not None} >= OPTIONAL_KEYS


def test_every_field_a_server_writes_reaches_elasticsearch_unchanged(lines):
    """Nothing the server wrote is overwritten, merged into or removed on the way (the raw input
    under `input` was: Filebeat adds input.type and the pipeline removes `input`)."""
    for event, indexed in _indexed(lines):
        document = _flatten(indexed.document)
        for field, value in _flatten(event).items():
            if value is None:  # Filebeat drops nulls (keep_null is off)
                continue
            assert field in document, f"{field} of {event['status']} event lost on the way"
            assert document[field] == value, f"{field}: {value!r} became {document[field]!r}"


def test_every_document_field_is_mapped_with_its_type_and_every_mapping_is_used(lines):
    seen: set[str] = set()
    for _event, indexed in _indexed(lines):
        for field, value in _flatten(indexed.document).items():
            seen.add(field)
            mapped_type = _mapped_type(field)
            if mapped_type is None:
                # Kept in _source, not indexed (dynamic false): only what Filebeat adds.
                assert field.split(".")[0] in FILEBEAT_FIELDS, f"{field} has no mapping"
                continue
            assert _fits(mapped_type, value), f"{field}={value!r} is refused as {mapped_type}"
    assert set(MAPPED) - seen == set(), "mapped fields no event has"


def test_the_server_timestamp_keeps_its_microseconds(lines):
    """@timestamp has millisecond resolution (the date filter and the `date` type); the field
    holding the server's own timestamp must keep every digit it was written with."""
    assert _mapped_type("timestamp") == "date_nanos"  # `date` (ms) would truncate it
    for event, indexed in _indexed(lines):
        written = event["timestamp"]
        assert len(re.search(r"\.(\d+)Z$", written).group(1)) == 6
        assert indexed.document["timestamp"] == written
        assert indexed.document["@timestamp"].startswith(written[:23])


def test_a_replayed_line_gets_the_same_id_which_views_can_count(lines):
    ids = []
    for line in lines:
        first, replayed = logstash(filebeat(line)), logstash(filebeat(line))
        assert first.document_id == replayed.document_id  # refused as a duplicate (409)
        assert first.document[DOCUMENT_ID_FIELD] == first.document_id
        ids.append(first.document_id)
    assert len(set(ids)) == len(lines)
    assert _mapped_type(DOCUMENT_ID_FIELD) == "keyword"  # aggregatable: unique counts


def test_mapping_is_explicit_and_features_are_numeric():
    assert MAPPING["dynamic"] is False
    [template] = MAPPING["dynamic_templates"]
    assert template["feature_values"]["path_match"] == "features.*"
    assert template["feature_values"]["mapping"]["type"] == "float"
    features = MAPPING["properties"]["features"]["properties"]
    assert {spec["type"] for spec in features.values()} == {"float"}
    assert MAPPING["properties"]["raw_input"] == {"type": "object", "enabled": False}


def test_statuses_and_error_types_are_open_keywords_nothing_enumerates():
    """shed, overloaded, shutting_down, timeout flow through: no pipeline condition and no Kibana
    query lists some statuses but not all."""
    assert MAPPED["status"] == MAPPED["error_type"] == "keyword"
    texts = {
        "logstash/pipeline/inference.conf": (REPO / "logstash/pipeline/inference.conf").read_text(),
        "kibana/saved-objects.ndjson": (REPO / "kibana/saved-objects.ndjson").read_text(),
    }
    for where, text in texts.items():
        named = {status for status in STATUSES if re.search(rf"\b{status}\b", text)}
        assert named in (set(), set(STATUSES)), f"{where} names statuses {sorted(named)} only"


def test_index_template_targets_the_data_stream_above_the_builtin_logs_template():
    template = json.loads((REPO / "elasticsearch/index-template.json").read_text())
    assert template["index_patterns"] == ["logs-mlobs.inference-*"]
    assert template["data_stream"] == {} and template["priority"] > 100
    settings = json.loads((REPO / "elasticsearch/component-template-settings.json").read_text())
    policy = settings["template"]["settings"]["index.lifecycle.name"]
    assert policy == "mlobs-inference"


# --- Logstash --------------------------------------------------------------------------------


def test_logstash_pipeline_has_the_beats_input():
    [(name, body)] = dict(pipeline())["input"]
    assert name == "beats" and options(body)["port"] == 5044


def test_logstash_filters_are_in_the_order_that_keeps_events_out_of_the_dlq():
    filters = dict(pipeline())["filter"]
    names = [item[0] for item in filters]
    assert names.index("fingerprint") < names.index("date")  # fingerprint reads `timestamp`
    assert names.index("mutate") < names.index("if")  # convert before comparing
    fingerprint = options(filters[names.index("fingerprint")][1])
    assert fingerprint["target"] == DOCUMENT_ID_FIELD
    assert "request_id" in fingerprint["source"] and fingerprint["method"] == "SHA256"
    date = options(filters[names.index("date")][1])
    assert date["match"] == ["timestamp", "ISO8601"] and date["target"] == "@timestamp"
    convert = options(filters[names.index("mutate")][1])["convert"]
    assert convert == [["confidence", ["float"]]]
    # The comparison itself: tests/unit/test_low_confidence_definition.py.
    condition = filters[names.index("if")][1]
    assert condition[0] == ["[confidence]"]  # a missing confidence never reaches the comparison
    assert ["_mutate_error", "not", "in", "[tags]"] in condition


def test_logstash_output_writes_the_data_stream_create_only_as_the_writer():
    [(name, body)] = dict(pipeline())["output"]
    settings = options(body)
    assert name == "elasticsearch"
    assert settings["data_stream"] == "true"
    assert (
        settings["data_stream_type"],
        settings["data_stream_dataset"],
        settings["data_stream_namespace"],
    ) == ("logs", "mlobs.inference", "default")
    assert settings["document_id"] == f"%{{[{DOCUMENT_ID_FIELD}]}}"
    assert settings["user"] == "${LOGSTASH_WRITER_USER}"
    assert settings["password"] == "${LOGSTASH_WRITER_PASSWORD}"
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
    assert not rejected & set(settings)


# --- Filebeat --------------------------------------------------------------------------------


def test_filebeat_reads_the_shared_log_files_and_ships_to_logstash():
    config, source = filebeat_config(), filebeat_input()
    # The registry keys read offsets by this id: a new id re-reads every file from the start.
    assert (source["type"], source["id"]) == ("filestream", "mlobs-inference")
    # Which names the globs match: tests/unit/test_log_rotation_globs.py.
    assert all(path.startswith("/var/log/mlobs/") for path in source["paths"])
    [parser] = source["parsers"]
    assert parser["ndjson"]["target"] == "" and parser["ndjson"]["add_error_key"] is True
    assert config["output.logstash"]["hosts"] == ["logstash:5044"]
    # Where the registry lives: tests/unit/test_delivery_guarantee.py.
    assert config["http.enabled"] is True and config["http.port"] == 5066
    # Files only: no container input, no autodiscover, no Docker socket.
    assert [item["type"] for item in config["filebeat.inputs"]] == ["filestream"]
    assert [key for key in config if key.startswith("filebeat.autodiscover")] == []
    volumes = compose()["services"]["filebeat"]["volumes"]
    assert [v for v in volumes if "docker" in v.split(":")[0]] == []


def test_filebeat_ships_the_inference_events_of_the_log_file_and_nothing_else(
    serve, anomaly_model, chatbot_model, log_file
):
    """The servers' log file also holds server_ready, faults_set, draining and model_error
    events; they do not belong in the inference data stream."""
    inference = inference_lines(serve, anomaly_model, chatbot_model, log_file)
    every_line = [line for line in log_file.read_text().splitlines() if line.strip()]
    others = [line for line in every_line if line not in inference]
    assert {json.loads(line)["message"] for line in others} >= {"server_ready", "faults_set"}
    processors = filebeat_input().get("processors", [])

    def shipped(line: str) -> bool:
        return filebeat_processors(filebeat(line), processors) is not None

    assert [line for line in others if shipped(line)] == []
    assert all(shipped(line) for line in inference)
    # A torn line is not an event of ours, but it is kept to show that something went wrong.
    assert shipped(inference[0][: len(inference[0]) // 2])


_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


@pytest.mark.parametrize(
    ("service", "config", "host_key", "port_key"),
    [
        ("logstash", "logstash/config/logstash.yml", "api.http.host", "api.http.port"),
        ("filebeat", "filebeat/filebeat.yml", "http.host", "http.port"),
    ],
)
def test_an_api_listens_beyond_loopback_only_where_compose_publishes_it(
    service, config, host_key, port_key
):
    """A published port needs the container's own interfaces; anything else stays on loopback
    (the healthchecks run inside the container)."""
    settings = yaml.safe_load((REPO / config).read_text())
    published = settings[port_key] in published_ports(service).values()
    assert (settings[host_key] not in _LOOPBACK) == published, (
        f"{config}: {host_key} {settings[host_key]} but compose "
        f"{'publishes' if published else 'does not publish'} port {settings[port_key]}"
    )


# --- environment -----------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}")
CONFIGS_WITH_VARIABLES = [
    "grafana/provisioning/datasources/datasources.yml",
    "logstash/pipeline/inference.conf",
    "logstash/config/logstash.yml",
    "kibana/kibana.yml",
    "filebeat/filebeat.yml",
]


def test_every_variable_a_config_uses_is_in_env_example():
    declared = set(env_example())
    for config in CONFIGS_WITH_VARIABLES:
        used = set(_VARIABLE.findall((REPO / config).read_text()))
        assert used <= declared, f"{config}: {sorted(used - declared)} missing from .env.example"


def test_every_variable_setup_reads_is_in_env_example():
    source = (REPO / "setup/elastic_setup.py").read_text()
    used = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', source)) - {"GET", "PUT", "POST"}
    assert used <= set(env_example()), sorted(used - set(env_example()))
    SetupConfig.from_env({k: v or "x" for k, v in env_example().items()})


def test_env_example_holds_no_secret():
    for key, value in env_example().items():
        if any(word in key for word in ("PASSWORD", "KEY", "TOKEN", "SECRET")):
            assert value == "", f"{key} must be empty in .env.example"


# --- Kibana ----------------------------------------------------------------------------------


def _saved_objects() -> list[dict]:
    text = generated_text("kibana/saved-objects.ndjson")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _version(text: str) -> tuple[int, ...]:
    assert re.fullmatch(r"\d+\.\d+\.\d+", text), text
    return tuple(int(part) for part in text.split("."))


def test_saved_objects_parse_and_carry_migration_versions():
    """Kibana imports an object only with migration versions, and refuses one that claims a
    version newer than its own."""
    objects = _saved_objects()
    assert [o["type"] for o in objects] == ["index-pattern", "search", "lens", "lens", "dashboard"]
    assert len({(o["type"], o["id"]) for o in objects}) == len(objects)
    stack = _version(env_example()["ELASTIC_VERSION"])
    for item in objects:
        assert _version(item["coreMigrationVersion"]) <= stack, item["id"]
        assert _version(item["typeMigrationVersion"]) <= stack, item["id"]
        assert item["managed"] is False
    # The names README's "Quick start" tells the user to open; every title is distinct.
    titles = {o["type"]: o["attributes"]["title"] for o in objects if o["type"] != "lens"}
    assert titles["dashboard"] == "ML inference logs"
    assert titles["search"] == "Low-confidence predictions"
    assert len({o["attributes"]["title"] for o in objects}) == len(objects)
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
