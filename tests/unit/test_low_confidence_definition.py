"""One definition of "low confidence" everywhere: confidence at or below the spec's threshold.

Prometheus decides it with the `le="<threshold>"` bucket of model_confidence, which counts values
<= the bound (a histogram bucket is cumulative and inclusive). Every other artifact that selects
low-confidence predictions must draw the same line: the Logstash conditional that tags them, the
Lucene of Grafana's Elasticsearch panels, the KQL of Kibana's objects (directly or through the
Logstash tag), and the words of their titles and descriptions.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from luqum.parser import parser as lucene
from luqum.tree import Range, SearchField, To, Word

from tests.conftest import REPO
from tests.support.generated import rendered, spec_yaml
from tests.support.log_chain import pipeline
from tests.support.logstash_conditions import EvaluationError, conditionals, evaluate, tags_added

THRESHOLD = spec_yaml()["alerts"]["low_confidence"]["confidence_threshold"]
TAG = "low_confidence"
AT_OR_BELOW = ("<=", THRESHOLD)
# A rule that selects by the Logstash tag inherits the Logstash definition.
BY_TAG = ("tag", TAG)

Definition = tuple[str, Any]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _text(path: Path) -> str:
    """A generated file as the generators render it now (the committed one equals it), so that
    a generator's mutation meets this test; any other file from the checkout."""
    generated = rendered()
    relative = path.relative_to(REPO)
    return generated[relative] if relative in generated else path.read_text()


def _documents(patterns: list[str]) -> Iterator[tuple[Path, Any]]:
    for pattern in patterns:
        for path in sorted(REPO.glob(pattern)):
            text = _text(path)
            if path.suffix == ".json":
                yield path, json.loads(text)
            elif path.suffix == ".ndjson":
                yield path, [json.loads(line) for line in text.splitlines() if line]
            else:
                yield path, list(yaml.safe_load_all(text))


# --- the comparison each artifact makes -------------------------------------------------------

_BUCKET = re.compile(r'model_confidence_bucket\{[^}]*\ble="([^"]+)"')


def prometheus_definitions() -> dict[str, list[Definition]]:
    """le matchers on model_confidence buckets in rules, Grafana panels and Grafana alerts."""
    found: dict[str, list[Definition]] = {}
    patterns = [
        "prometheus/rules/*.yml",
        "grafana/dashboards/*.json",
        "grafana/provisioning/**/*.yml",
    ]
    for path, document in _documents(patterns):
        for text in _strings(document):
            for bound in _BUCKET.findall(text):
                found.setdefault(str(path.relative_to(REPO)), []).append(("<=", float(bound)))
    return found


def _order(term: list) -> Definition | None:
    """(`<=` or `<`, bound) of a comparison of [confidence] with a number."""
    flipped = {">=": "<=", ">": "<"}
    if len(term) != 3 or "[confidence]" not in (term[0], term[2]):
        return None
    if term[0] == "[confidence]" and term[1] in ("<", "<="):
        return term[1], float(term[2])
    if term[2] == "[confidence]" and term[1] in flipped:
        return flipped[term[1]], float(term[0])
    raise AssertionError(f"Logstash compares confidence as {term}: not an upper bound")


def _tagging_condition() -> list:
    filters = dict(pipeline())["filter"]
    [condition] = [c for c, body in conditionals(filters) if TAG in tags_added(body)]
    return condition


def logstash_definitions() -> list[Definition]:
    return [d for term in _tagging_condition()[0::2] if (d := _order(term))]


def _lucene_definitions(query: str) -> list[Definition]:
    # Grafana variables (${model:lucene}, $model) stand for a value; any word parses the same.
    tree = lucene.parse(re.sub(r"\$\{[^}]*\}|\$\w+", "x", query))
    found: list[Definition] = []

    def walk(node: Any) -> None:
        if isinstance(node, SearchField) and node.name == "confidence":
            bound = node.expr
            if isinstance(bound, To):
                found.append(("<=" if bound.include else "<", float(bound.a.value)))
            elif isinstance(bound, Range):
                found.append(("<=" if bound.include_high else "<", float(bound.high.value)))
            else:
                raise AssertionError(f"{query!r}: confidence compared as {bound!r}")
        elif (
            isinstance(node, SearchField)
            and node.name == "tags"
            and isinstance(node.expr, Word)
            and node.expr.value == TAG
        ):
            found.append(BY_TAG)
        for child in node.children:
            walk(child)

    walk(tree)
    return found


def grafana_lucene_definitions() -> dict[str, list[Definition]]:
    found: dict[str, list[Definition]] = {}
    for path, board in _documents(["grafana/dashboards/*.json"]):
        for panel in board.get("panels", []):
            for target in panel.get("targets", []):
                if (target.get("datasource") or {}).get("type") == "elasticsearch":
                    where = f"{path.name}: {panel['title']}"
                    found[where] = _lucene_definitions(target.get("query", ""))
    return found


_KQL_COMPARISON = re.compile(r"\bconfidence\s*(<=|<)\s*([0-9.]+)")
_KQL_TAG = re.compile(rf"\btags\s*:\s*\"?{TAG}\b")


def _kql_definitions(query: str) -> list[Definition]:
    found: list[Definition] = [(op, float(bound)) for op, bound in _KQL_COMPARISON.findall(query)]
    return found + [BY_TAG] * len(_KQL_TAG.findall(query))


def kibana_definitions() -> dict[str, list[Definition]]:
    found: dict[str, list[Definition]] = {}
    [(_, objects)] = _documents(["kibana/saved-objects.ndjson"])
    for item in objects:
        queries = []
        attributes = item["attributes"]
        meta = attributes.get("kibanaSavedObjectMeta", {})
        if "searchSourceJSON" in meta:
            queries.append(json.loads(meta["searchSourceJSON"]).get("query", {}).get("query", ""))
        if "state" in attributes:
            queries.append(attributes["state"].get("query", {}).get("query", ""))
        definitions = [d for q in queries for d in _kql_definitions(q)]
        if definitions or "low" in attributes["title"].lower():
            found[f"{item['type']} {item['id']}"] = definitions
    return found


# --- tests ------------------------------------------------------------------------------------


def test_logstash_tags_low_confidence_at_or_below_the_threshold():
    assert logstash_definitions() == [AT_OR_BELOW]


def test_prometheus_grafana_and_kibana_draw_the_same_line():
    prometheus = prometheus_definitions()
    assert "prometheus/rules/recording.yml" in prometheus, "no le bucket in the recording rules"
    everywhere = {
        **prometheus,
        **grafana_lucene_definitions(),
        **kibana_definitions(),
        "logstash/pipeline/inference.conf": logstash_definitions(),
    }
    wrong = {
        where: definitions
        for where, definitions in everywhere.items()
        if not definitions or set(definitions) - {AT_OR_BELOW, BY_TAG}
    }
    assert not wrong, f"low confidence must be confidence <= {THRESHOLD} everywhere: {wrong}"


# Words that describe low confidence must say "at or below", never a bare "below".
_DESCRIBED = ["README.md", "observability.yaml", "logstash/pipeline/inference.conf"]
_DESCRIBED_DOCUMENTS = [
    "prometheus/rules/*.yml",
    "grafana/dashboards/*.json",
    "grafana/provisioning/**/*.yml",
    "kibana/saved-objects.ndjson",
]
_BARE_BELOW = re.compile(r"(?<!at or )\bbelow\b", re.IGNORECASE)


def _sentences(text: str) -> list[str]:
    # Sentences, not lines: "at or" may end a line and "below" start the next.
    return re.split(r"(?<=[.;:])\s", re.sub(r"[\s#]+", " ", text))


def _phrases() -> Iterator[tuple[str, str]]:
    for name in _DESCRIBED:
        for sentence in _sentences(_text(REPO / name)):
            yield name, sentence
    for path, document in _documents(_DESCRIBED_DOCUMENTS):
        for text in _strings(document):
            for sentence in _sentences(text):
                yield str(path.relative_to(REPO)), sentence


def test_descriptions_say_at_or_below():
    bare = [
        f"{where}: {sentence.strip()}"
        for where, sentence in _phrases()
        if "confidence" in sentence.lower() and _BARE_BELOW.search(sentence)
    ]
    assert not bare, bare


# --- Logstash's conditional, evaluated with Logstash's semantics at the boundary --------------


def _tagged(confidence: Any, tags: list[str] | None = None) -> bool:
    event = {"tags": tags or ["beats_input_codec_plain_applied"]}
    if confidence is not None:
        event["confidence"] = confidence  # as mutate's convert left it
    return evaluate(_tagging_condition(), event)


@pytest.mark.parametrize(
    ("confidence", "low"),
    [
        (THRESHOLD, True),  # exactly at the threshold: low, as le="<threshold>" counts it
        (math.nextafter(THRESHOLD, 0.0), True),
        (math.nextafter(THRESHOLD, 1.0), False),
        (0.0, True),  # 0.0 is truthy in Logstash, unlike in Python
        (1.0, False),
    ],
)
def test_logstash_condition_at_just_under_and_just_over_the_threshold(confidence, low):
    assert _tagged(confidence) is low


def test_events_without_a_usable_confidence_are_not_tagged_and_not_errors():
    assert _tagged(None) is False  # client errors carry no confidence
    # A string mutate could not convert: the comparison never runs (it would be an evaluation
    # error, which sends the event to the dead letter queue).
    assert _tagged("n/a", ["_mutate_error"]) is False
    with pytest.raises(EvaluationError):
        evaluate([["[confidence]", "<=", THRESHOLD]], {"confidence": "n/a"})
