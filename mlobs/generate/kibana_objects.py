"""kibana/saved-objects.ndjson: data view, saved search, Lens charts and dashboard of the
inference logs, imported by setup/ with overwrite.

Charts count distinct `document_id` (the fingerprint that is also the document id), not documents:
duplicate protection holds only within one backing index, so an event replayed after a rollover is
indexed twice but still counts once. Low confidence is the `low_confidence` tag, which Logstash
sets at or below the spec's threshold (the definition Prometheus's le bucket uses).

Every object carries `coreMigrationVersion` and `typeMigrationVersion`: without them an import
runs every migration since 6.x on it, and the old Lens migrations break the `formBased` state.
The versions are ones every 9.x Kibana knows and migrates forward. Nested `*JSON` attributes are
strings, as Kibana stores them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlobs.generate.logstash_pipeline import DOCUMENT_ID_FIELD

DATA_VIEW_ID = "mlobs-inference"  # Grafana's data links open Discover on this data view
SAVED_SEARCH_ID = "mlobs-low-confidence"
OBJECTS_FILE = Path("kibana/saved-objects.ndjson")
MAPPING_FILE = Path("elasticsearch/component-template.json")
CORE_VERSION = "8.8.0"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _saved_object(
    kind: str, object_id: str, type_version: str, attributes: dict, references: list[dict]
) -> dict:
    return {
        "type": kind,
        "id": object_id,
        "coreMigrationVersion": CORE_VERSION,
        "typeMigrationVersion": type_version,
        "managed": False,
        "attributes": attributes,
        "references": references,
    }


def data_view() -> dict:
    return _saved_object(
        "index-pattern",
        DATA_VIEW_ID,
        "8.0.0",
        {
            "title": "logs-mlobs.inference-*",
            "name": "ML inference logs",
            "timeFieldName": "@timestamp",
            "allowNoIndex": True,  # importable before the first document arrives
            "fields": "[]",
            "fieldFormatMap": "{}",
            "runtimeFieldMap": "{}",
            "sourceFilters": "[]",
        },
        [],
    )


def low_confidence_search(feature_columns: list[str]) -> dict:
    source = {
        "query": {"query": "tags:low_confidence", "language": "kuery"},
        "filter": [],
        "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
    }
    return _saved_object(
        "search",
        SAVED_SEARCH_ID,
        "8.0.0",
        {
            "title": "Low-confidence predictions",
            "description": (
                "Inference events with confidence at or below the spec's low-confidence "
                "threshold (tagged low_confidence by Logstash), newest first."
            ),
            "columns": ["model", "prediction", "confidence", *feature_columns],
            "sort": [["@timestamp", "desc"]],
            "grid": {},
            "hideChart": False,
            "isTextBasedQuery": False,
            "kibanaSavedObjectMeta": {"searchSourceJSON": _compact(source)},
        },
        [
            {
                "name": "kibanaSavedObjectMeta.searchSourceJSON.index",
                "type": "index-pattern",
                "id": DATA_VIEW_ID,
            }
        ],
    )


_TIME = {
    "label": "@timestamp",
    "dataType": "date",
    "operationType": "date_histogram",
    "sourceField": "@timestamp",
    "isBucketed": True,
    "scale": "interval",
    "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
}


def _lens_xy(
    object_id: str,
    title: str,
    columns: dict[str, dict],
    column_order: list[str],
    series: dict[str, Any],
) -> dict:
    """An XY Lens chart with one layer over the data view; `series` is the visualization layer."""
    layer = f"{object_id}-layer"
    state = {
        "datasourceStates": {
            "formBased": {
                "layers": {
                    layer: {
                        "columnOrder": column_order,
                        "columns": columns,
                        "incompleteColumns": {},
                    }
                }
            }
        },
        "visualization": {
            "legend": {"isVisible": True, "position": "right"},
            "valueLabels": "hide",
            "preferredSeriesType": series["seriesType"],
            "layers": [{"layerId": layer, "layerType": "data", **series}],
        },
        "query": {"query": "", "language": "kuery"},
        "filters": [],
        "internalReferences": [],
        "adHocDataViews": {},
    }
    return _saved_object(
        "lens",
        object_id,
        "8.9.0",
        {
            "title": title,
            "description": "",
            "visualizationType": "lnsXY",
            "state": state,
        },
        [
            {
                "type": "index-pattern",
                "id": DATA_VIEW_ID,
                "name": f"indexpattern-datasource-layer-{layer}",
            }
        ],
    )


# Distinct events, not documents: a replay indexed twice across a rollover counts once.
_EVENTS = {
    "label": "Predictions",
    "dataType": "number",
    "operationType": "unique_count",
    "sourceField": DOCUMENT_ID_FIELD,
    "isBucketed": False,
    "scale": "ratio",
    "params": {"emptyAsNull": True},
}


def predictions_by_label() -> dict:
    return _lens_xy(
        "mlobs-predictions-by-label",
        "Predictions by label over time",
        {
            "time": _TIME,
            "events": _EVENTS,
            "label": {
                "label": "Predicted label",
                "dataType": "string",
                "operationType": "terms",
                "sourceField": "prediction",
                "isBucketed": True,
                "scale": "ordinal",
                "params": {
                    "size": 10,
                    "orderBy": {"type": "column", "columnId": "events"},
                    "orderDirection": "desc",
                    "otherBucket": True,
                    "missingBucket": False,
                    "parentFormat": {"id": "terms"},
                },
            },
        },
        ["label", "time", "events"],
        {
            "seriesType": "bar_stacked",
            "xAccessor": "time",
            "splitAccessor": "label",
            "accessors": ["events"],
        },
    )


def latency() -> dict:
    def latency_column(label: str, operation: str, params: dict) -> dict:
        return {
            "label": label,
            "dataType": "number",
            "operationType": operation,
            "sourceField": "latency_ms",
            "isBucketed": False,
            "scale": "ratio",
            "params": params,
        }

    return _lens_xy(
        "mlobs-latency",
        "Latency (ms)",
        {
            "time": _TIME,
            "median": latency_column("Median latency (ms)", "percentile", {"percentile": 50}),
            "p99": latency_column("p99 latency (ms)", "percentile", {"percentile": 99}),
        },
        ["time", "median", "p99"],
        {"seriesType": "line", "xAccessor": "time", "accessors": ["median", "p99"]},
    )


def dashboard(panels: list[tuple[dict, dict]]) -> dict:
    """A dashboard of (saved object, gridData) pairs; the grid is 48 columns wide."""
    panel_json, references = [], []
    for number, (item, grid) in enumerate(panels, start=1):
        index = f"p{number}"
        panel_json.append(
            {
                "type": item["type"],
                "panelIndex": index,
                "gridData": {**grid, "i": index},
                "embeddableConfig": {"enhancements": {}},
                "panelRefName": f"panel_{index}",
            }
        )
        references.append(
            {"name": f"{index}:panel_{index}", "type": item["type"], "id": item["id"]}
        )
    options = {
        "useMargins": True,
        "syncColors": False,
        "syncCursor": True,
        "syncTooltips": False,
        "hidePanelTitles": False,
    }
    return _saved_object(
        "dashboard",
        "mlobs-inference-overview",
        "8.9.0",
        {
            "title": "ML inference logs",
            "description": "Generated by `make generate`: predictions, latency, low confidence.",
            "timeRestore": True,
            "timeFrom": "now-24h",
            "timeTo": "now",
            "refreshInterval": {"pause": False, "value": 60000},
            "optionsJSON": _compact(options),
            "panelsJSON": _compact(panel_json),
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": _compact(
                    {"query": {"query": "", "language": "kuery"}, "filter": []}
                )
            },
        },
        references,
    )


def feature_columns(mapping_text: str) -> list[str]:
    """features.<name> for every feature the Elasticsearch mapping declares."""
    properties = json.loads(mapping_text)["template"]["mappings"]["properties"]
    return [f"features.{name}" for name in properties["features"]["properties"]]


def render(root: Path) -> dict[Path, str]:
    """The NDJSON, one object per line, in dependency order."""
    search = low_confidence_search(feature_columns((root / MAPPING_FILE).read_text()))
    by_label, lat = predictions_by_label(), latency()
    board = dashboard(
        [
            (by_label, {"x": 0, "y": 0, "w": 24, "h": 15}),
            (lat, {"x": 24, "y": 0, "w": 24, "h": 15}),
            (search, {"x": 0, "y": 15, "w": 48, "h": 20}),
        ]
    )
    objects = [data_view(), search, by_label, lat, board]
    return {OBJECTS_FILE: "".join(_compact(o) + "\n" for o in objects)}
