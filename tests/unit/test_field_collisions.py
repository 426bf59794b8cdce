"""Field names that collide with what Filebeat, Logstash or Elasticsearch add or use.

The opt-in raw input was logged under `input`: Filebeat adds `input.type` to every event and the
pipeline removes `input`, so it never reached Elasticsearch. No key of an inference event may be one
of the keys the shippers own (tests/support/log_chain.py lists them with their upstream source).
The events are real lines from create_app, with every optional key present in one of them.
"""

from __future__ import annotations

import json

from mlobs.generate.logstash_pipeline import DOCUMENT_ID_FIELD
from tests.support.inference_lines import OPTIONAL_KEYS, inference_lines
from tests.support.log_chain import FILEBEAT_FIELDS, FILEBEAT_SOMETIMES, LOGSTASH_FIELDS

# Added by our own pipeline (the fingerprint kept for distinct counts).
PIPELINE_FIELDS = {DOCUMENT_ID_FIELD}
RESERVED = set(FILEBEAT_FIELDS) | set(FILEBEAT_SOMETIMES) | set(LOGSTASH_FIELDS) | PIPELINE_FIELDS


def test_no_inference_event_key_is_one_the_shippers_own(
    serve, anomaly_model, chatbot_model, log_file
):
    lines = inference_lines(serve, anomaly_model, chatbot_model, log_file)
    keys = {key for line in lines for key in json.loads(line)}
    assert keys >= OPTIONAL_KEYS, f"no event with {sorted(OPTIONAL_KEYS - keys)}"
    assert not keys & RESERVED, {key: _owner(key) for key in keys & RESERVED}
    # Elasticsearch refuses _-prefixed keys (metadata fields such as _id) inside a document.
    assert not [key for key in keys if key.startswith("_")]


def _owner(key: str) -> str:
    if key in FILEBEAT_FIELDS:
        return f"Filebeat: {FILEBEAT_FIELDS[key][1]}"
    return FILEBEAT_SOMETIMES.get(key) or LOGSTASH_FIELDS.get(key) or "our pipeline"


def test_the_keys_of_the_old_raw_input_and_structlog_are_caught():
    """The check knows the collisions found so far: `input` (raw input) and structlog's `event`."""
    assert {"input", "event", "agent", "host", "ecs", "log"} <= RESERVED
    assert "Filebeat" in _owner("input")
