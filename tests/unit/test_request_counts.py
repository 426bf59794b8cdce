"""Views that count requests count distinct events, not documents.

Duplicate protection (create-only writes with the fingerprint as _id) holds only within one backing
index of the data stream: Elasticsearch checks the id against the write index alone, so an event
replayed after a rollover is indexed a second time. Every chart that counts events therefore counts
distinct values of the fingerprint field, which the pipeline also uses as the document id
(tests/unit/test_log_pipeline.py follows a line to its document and checks both are the same).
"""

from __future__ import annotations

import json
from pathlib import Path

from mlobs.generate.logstash_pipeline import DOCUMENT_ID_FIELD
from tests.support.generated import generated_json, generated_text, rendered


def _lens_metrics() -> list[tuple[str, dict]]:
    text = generated_text("kibana/saved-objects.ndjson")
    metrics = []
    for item in (json.loads(line) for line in text.splitlines() if line.strip()):
        if item["type"] != "lens":
            continue
        layers = item["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
        for layer in layers.values():
            for column in layer["columns"].values():
                if not column["isBucketed"]:
                    metrics.append((item["id"], column))
    return metrics


def _grafana_elasticsearch_metrics() -> list[tuple[str, dict]]:
    metrics = []
    boards = sorted(path for path in rendered() if path.parent == Path("grafana/dashboards"))
    for path in boards:
        for panel in generated_json(path).get("panels", []):
            for target in panel.get("targets", []):
                if (target.get("datasource") or {}).get("type") == "elasticsearch":
                    for metric in target.get("metrics", []):
                        metrics.append((f"{path.name}: {panel['title']}", metric))
    return metrics


def test_kibana_charts_count_distinct_events():
    metrics = _lens_metrics()
    wrong = [
        (where, column["operationType"], column.get("sourceField"))
        for where, column in metrics
        if column["operationType"] == "count"
        or (
            column["operationType"] == "unique_count" and column["sourceField"] != DOCUMENT_ID_FIELD
        )
    ]
    assert not wrong, f"count distinct {DOCUMENT_ID_FIELD}, not documents: {wrong}"
    assert any(column["operationType"] == "unique_count" for _, column in metrics)


def test_grafana_elasticsearch_panels_count_distinct_events():
    """Grafana's one Elasticsearch panel today lists documents (`logs`) and counts nothing, so
    this guards the counting panels added later."""
    metrics = _grafana_elasticsearch_metrics()
    assert metrics, "no Elasticsearch panel found: the check below would see nothing"
    wrong = [
        (where, metric["type"], metric.get("field"))
        for where, metric in metrics
        if metric["type"] == "count"
        or (metric["type"] == "cardinality" and metric.get("field") != DOCUMENT_ID_FIELD)
    ]
    assert not wrong, f"count distinct {DOCUMENT_ID_FIELD}, not documents: {wrong}"
