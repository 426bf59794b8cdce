"""The way of one inference log line to an Elasticsearch document, field name by field name.

Filebeat, Logstash and Elasticsearch cannot run here, so this follows what each of them does to
the field names, from their source at the pinned releases (9.5), far enough to catch a field that
is overwritten, merged into, removed or left unmapped on the way:
- Filebeat: what every event gets (FILEBEAT_FIELDS), merged into the decoded JSON line;
- Logstash: what the beats input adds (LOGSTASH_FIELDS), then the filters of the generated
  pipeline interpreted from its parsed text (fingerprint, date, mutate, if), then the data-stream
  fields of the elasticsearch output.
A plugin or option this module does not know raises NotImplementedError: a pipeline change must
come with its model here, never pass unnoticed.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import logstash_pipeline_parser

from tests.support.generated import generated_text
from tests.support.logstash_conditions import evaluate, field

# Top-level keys Filebeat 9.5 puts into events (elastic/beats), with an example of what it puts
# there, and where. The first group is in every event of our filestream input; the second only
# with modules, `fields`/`tags` options or a line that is not JSON, and is never ours either.
FILEBEAT_FIELDS: dict[str, tuple[Any, str]] = {
    "input": ({"type": "filestream"}, "filebeat/channel/runner.go: input.type"),
    "agent": (
        {"ephemeral_id": "e", "id": "i", "name": "filebeat", "type": "filebeat", "version": "9"},
        "libbeat/publisher/processing/default.go: WithAgentMeta",
    ),
    "ecs": ({"version": "8.0.0"}, "libbeat/publisher/processing/default.go: WithECS"),
    "host": ({"name": "filebeat"}, "libbeat/publisher/processing/default.go: WithHost"),
    "log": (
        {"offset": 0, "file": {"path": "/var/log/mlobs/m.log", "device_id": "1", "inode": "2"}},
        "libbeat/reader/readfile/metafields.go (path, offset), metafields_other.go (device_id, "
        "inode)",
    ),
    "@timestamp": ("2026-01-01T00:00:00.000Z", "libbeat/beat/event.go: Timestamp"),
    "@metadata": ({"beat": "filebeat"}, "libbeat/beat/event.go: Meta"),
}
FILEBEAT_SOMETIMES = {
    "error": "the ndjson parser's add_error_key (error.message, error.type): a line not JSON",
    "event": "filebeat/channel/runner.go: event.module, event.dataset (modules)",
    "service": "filebeat/channel/runner.go: service.type (modules)",
    "fileset": "filebeat/channel/runner.go: fileset.name (modules)",
    "fields": "the `fields` option (fields_under_root false)",
    "tags": "the `tags` option",
}
# Keys Logstash 9.5 (ECS v8) adds or reads, and where.
LOGSTASH_FIELDS = {
    "@timestamp": "logstash-core Event",
    "@version": "logstash-core Event",
    "@metadata": "logstash-core Event",
    "tags": "logstash-input-beats decoded_event_transform.rb (beats_input_codec_plain_applied); "
    "filters' tag_on_failure",
    "event": "logstash-codec-plain v3.1.0 plain.rb ([event][original] in ECS mode); "
    "logstash-filter-fingerprint's ECS default target [event][hash]",
    "host": "logstash-input-beats beats.rb field_hostname (ECS disabled: host)",
    "data_stream": "logstash-output-elasticsearch data_stream_support.rb (type, dataset, ...)",
    "type": "the `type` option common to every input",
}
CODEC_TAG = "beats_input_codec_plain_applied"


def _without_nulls(value: Any) -> Any:
    # Filebeat's generalize processor drops nulls (keep_null is off).
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _merge(into: dict, added: dict) -> None:
    for key, value in added.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def filebeat(line: str) -> dict:
    """The event Filebeat sends for one line (ndjson parser, target "", overwrite_keys,
    add_error_key), before the input's processors."""
    try:
        event = _without_nulls(json.loads(line))
    except json.JSONDecodeError:
        # add_error_key: the raw line stays in `message`, the decoding error is added.
        event = {"message": line, "error": {"message": "not JSON", "type": "json"}}
    _merge(event, {key: value for key, (value, _) in FILEBEAT_FIELDS.items()})
    return event


def _condition(condition: dict, event: dict) -> bool:
    [(kind, body)] = condition.items()
    if kind == "not":
        return not _condition(body, event)
    if kind == "and":
        return all(_condition(part, event) for part in body)
    if kind == "equals":
        return all(event.get(field) == value for field, value in body.items())
    if kind == "has_fields":
        return all(_get(event, f"[{field.replace('.', '][')}]") is not None for field in body)
    raise NotImplementedError(f"condition {kind}")


def filebeat_processors(event: dict, processors: list[dict]) -> dict | None:
    """`event` through a Filebeat input's processors (the kinds our configs use), None if one
    drops it; an unknown processor or condition raises rather than being ignored."""
    for processor in processors:
        [(name, options)] = processor.items()
        if name == "drop_event":
            if _condition(options["when"], event):
                return None
        elif name == "drop_fields":
            for field in options["fields"]:
                event.pop(field, None)
        else:
            raise NotImplementedError(f"processor {name}")
    return event


def _parts(reference: str) -> list[str]:
    return reference[1:-1].split("][") if reference.startswith("[") else [reference]


def _set(event: dict, reference: str, value: Any) -> None:
    *path, last = _parts(reference)
    for part in path:
        event = event.setdefault(part, {})
    event[last] = value


def _remove(event: dict, reference: str) -> None:
    *path, last = _parts(reference)
    for part in path:
        event = event.get(part, {})
    event.pop(last, None)


def _get(event: dict, reference: str) -> Any:
    return field(event, reference if reference.startswith("[") else f"[{reference}]")


def options(body: list) -> dict[str, Any]:
    """A parsed plugin's options by name: one value as itself, several as their list."""
    return {key: value[0] if len(value) == 1 else value for key, value in body}


def _tag(event: dict, tag: str) -> None:
    tags = event.setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)


def _fingerprint(event: dict, options: dict) -> None:
    if options.get("method") != "SHA256" or options.get("concatenate_sources") is not True:
        raise NotImplementedError(f"fingerprint {options}")
    sources = options["source"]
    text = "|".join(str(_get(event, source)) for source in sources)
    _set(event, options["target"], hashlib.sha256(text.encode()).hexdigest())


def _date(event: dict, options: dict) -> None:
    source, *formats = options["match"]
    if formats != ["ISO8601"] or set(options) - {"match", "target", "remove_field"}:
        raise NotImplementedError(f"date {options}")
    try:
        parsed = datetime.fromisoformat(str(_get(event, source)).replace("Z", "+00:00"))
    except ValueError:
        _tag(event, "_dateparsefailure")
        return
    # Joda parses to milliseconds (logstash-filter-date CasualISO8601Parser: parseMillis).
    _set(event, options.get("target", "@timestamp"), parsed.isoformat(timespec="milliseconds"))
    for reference in options.get("remove_field", []):
        _remove(event, reference)


def _mutate(event: dict, options: dict) -> None:
    for option, value in options.items():
        if option == "convert":
            for reference, [kind] in value:
                if kind != "float":
                    raise NotImplementedError(f"mutate convert to {kind}")
                current = _get(event, reference)
                if current is None:
                    continue
                try:
                    _set(event, reference, float(current))
                except (TypeError, ValueError):
                    _tag(event, "_mutate_error")
        elif option == "remove_field":
            for reference in value:
                _remove(event, reference)
        elif option == "add_tag":
            for tag in value:
                _tag(event, tag)
        else:
            raise NotImplementedError(f"mutate {option}")


def _run(plugins: list, event: dict) -> None:
    taken = False  # an `if` or `else if` of the current chain ran
    for name, body in plugins:
        if name == "if" or (name == "else if" and not taken):
            taken = evaluate(body[:-1], event)
            if taken:
                _run(body[-1][0], event)
        elif name == "else if":
            continue
        elif name == "else":
            if not taken:
                _run(body, event)
        elif name == "fingerprint":
            _fingerprint(event, options(body))
        elif name == "date":
            _date(event, options(body))
        elif name == "mutate":
            _mutate(event, options(body))
        else:
            raise NotImplementedError(f"filter {name}")


@dataclass(frozen=True)
class Indexed:
    """What the elasticsearch output sends: the document and its _id."""

    document: dict
    document_id: str


def _sprintf(event: dict, template: str) -> str:
    if not (template.startswith("%{") and template.endswith("}")):
        raise NotImplementedError(f"sprintf {template}")
    return str(_get(event, template[2:-1]))


@cache
def pipeline() -> list:
    """The parsed generated pipeline (shared: read it, never change it), as the generator renders
    it now: the committed file equals it (tests/unit/test_generated_files.py)."""
    text = generated_text("logstash/pipeline/inference.conf")
    return logstash_pipeline_parser.Pipeline(text).parse()


def logstash(beat_event: dict, tree: list | None = None) -> Indexed:
    """The document the pipeline makes of one Filebeat event."""
    sections = dict(tree if tree is not None else pipeline())
    # The beats input: `message` decoded by the plain codec (ECS mode keeps the original), the
    # rest merged over it, the codec tag.
    event = copy.deepcopy(beat_event)
    event.pop("@metadata", None)
    event["@version"] = "1"
    event.setdefault("event", {})["original"] = event.get("message")
    _tag(event, CODEC_TAG)
    _run(sections["filter"], event)
    [(output, body)] = sections["output"]
    settings = options(body)
    if output != "elasticsearch" or settings.get("data_stream") != "true":
        raise NotImplementedError(f"output {output}")
    event["data_stream"] = {
        "type": settings["data_stream_type"],
        "dataset": settings["data_stream_dataset"],
        "namespace": settings["data_stream_namespace"],
    }
    return Indexed(event, _sprintf(event, settings["document_id"]))
