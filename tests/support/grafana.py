"""Reading the generated Grafana files, and interpolating panel queries the way Grafana 12.2 does.

Grafana replaces `$var` and `${var:format}` in a query with the variable's value, formatted per
datasource. Only what the generated dashboards use is reproduced, following Grafana's source
(read, not copied):
- the value a variable starts with: grafana/grafana v12.2.x
  public/app/features/dashboard-scene/utils/variables.ts (createSceneVariableFromVariableModel)
  builds each query variable with `defaultToAll: Boolean(variable.includeAll)`; grafana/scenes
  (v6.35 read; these parts are the same from v6.10 to v6.42, the releases around Grafana 12.2)
  packages/scenes/src/variables/variants/MultiValueVariable.ts (getStateUpdateGivenNewOptions,
  getDefaultMultiState/getDefaultSingleState) then picks "All" when that is set, else the saved
  current value if it is an option (the generated dashboards save none), else the first option;
  with "All", getValue() returns every option.
- the token syntax: grafana/scenes packages/scenes/src/variables/constants.ts (VARIABLE_REGEX) and
  interpolation/sceneInterpolator.ts (an explicit `:format` wins over the datasource's).
- Prometheus: grafana/grafana packages/grafana-prometheus/src/escaping.ts (interpolateQueryExpr,
  prometheusRegularEscape, prometheusSpecialRegexEscape; the classic branch, the
  prometheusSpecialCharsInLabelValues feature toggle is off by default).
- Elasticsearch: public/app/plugins/datasource/elasticsearch/datasource.ts replaces Lucene
  queries with the `lucene` format; grafana/scenes interpolation/formatRegistry.ts (Lucene
  formatter of a list of values, luceneEscape).
A variable setting, format or construct not handled here raises, so a new kind of query fails the
tests until this module learns it, instead of being checked against a guess. In particular a
custom all-value (`allValue`) is substituted unescaped into every query (scenes CustomAllValue):
`.*` once became the Lucene `model:.*`, which matches nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import promql_parser
import pytest

from tests.conftest import REPO, REQUIRE_TOOLS
from tests.support.generated import generated_json, generated_yaml
from tests.support.promql import matcher_selects, raw_metric_names

DASHBOARDS = sorted((REPO / "grafana/dashboards").glob("*.json"))
ALERTING = REPO / "grafana/provisioning/alerting"
DATASOURCES = REPO / "grafana/provisioning/datasources/datasources.yml"
# Grafana's built-in interval variables: plain durations, substituted as they are.
BUILTINS = {"__rate_interval": "1m", "__range": "1h", "__interval": "1m"}
# The forms of grafana/scenes VARIABLE_REGEX the dashboards use: $var and ${var:fmt}.
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::(\w+))?\}")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")
# JavaScript's isNaN(+value) === false, for the decimal numbers a label value can hold.
_JS_NUMBER = re.compile(r"^\s*([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)?\s*$")
_LUCENE_SPECIAL = re.compile(r'([!*+\-=<>\s&|()\[\]{}^~?:\\/"])')
_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]+?.()|]")


def dashboard(path: Path) -> dict:
    """A dashboard of DASHBOARDS as the generator renders it now (the committed file equals it:
    tests/unit/test_generated_files.py), so that a generator's mutation meets the tests."""
    return generated_json(path.relative_to(REPO))


def alert_rules() -> list[dict]:
    groups = generated_yaml((ALERTING / "alert-rules.yml").relative_to(REPO))["groups"]
    return [rule for group in groups for rule in group["rules"]]


# --- variables and their default values --------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    """A query variable of a dashboard (`templating.list[]` with `type: query`)."""

    name: str
    query: str  # label_values(<selector>, <label>)
    multi: bool
    include_all: bool
    sort: int

    @classmethod
    def from_json(cls, data: dict) -> Variable:
        for key in ("allValue", "current"):
            if data.get(key):  # "" and {} mean none, as in Grafana
                raise NotImplementedError(f"variable {data['name']}: {key} {data[key]!r}")
        return cls(
            name=data["name"],
            query=data["query"],
            multi=bool(data.get("multi")),
            include_all=bool(data.get("includeAll")),
            sort=data.get("sort", 0),
        )

    def label_values(self) -> tuple[str, str]:
        """The selector and the label of the `label_values` query."""
        match = _LABEL_VALUES.match(self.query.strip())
        if not match:
            raise NotImplementedError(f"variable {self.name}: unsupported query {self.query!r}")
        return match["selector"], match["label"]


@dataclass(frozen=True)
class Selection:
    """What a variable holds: "All" (every option) or one option."""

    variable: Variable
    options: tuple[str, ...]
    all: bool

    @property
    def values(self) -> tuple[str, ...]:
        return self.options if self.all else self.options[:1]

    def value(self) -> str | list[str]:
        """What the variable hands to a formatter (scenes MultiValueVariable.getValue)."""
        if self.all or self.variable.multi:
            return list(self.values)
        return self.values[0] if self.values else ""


Labels = Mapping[str, str]
OptionsLookup = Callable[[str, str], Sequence[str]]


def series_lookup(
    series: Sequence[tuple[str, Labels]], recorded: Mapping[str, str]
) -> OptionsLookup:
    """label_values over a list of (metric name, labels), e.g. a real server's /metrics.
    A recorded series (`recorded`: record -> its rule's expression) is looked up in the series it
    is computed from, as those carry its labels."""

    def lookup(selector: str, label: str) -> list[str]:
        node = promql_parser.parse(selector)
        if not isinstance(node, promql_parser.VectorSelector):
            raise NotImplementedError(f"label_values over {selector!r}")
        names = raw_metric_names(node.name, recorded)
        matchers = [m for m in node.matchers.matchers if m.name != "__name__"]
        chosen = [
            labels
            for name, labels in series
            if name in names and all(matcher_selects(m, labels.get(m.name)) for m in matchers)
        ]
        return sorted({labels[label] for labels in chosen if label in labels})

    return lookup


def query_variables(board: dict) -> list[Variable]:
    return [Variable.from_json(v) for v in board["templating"]["list"] if v["type"] == "query"]


def _sorted_options(variable: Variable, options: Sequence[str]) -> tuple[str, ...]:
    if variable.sort == 0:
        return tuple(options)
    if variable.sort == 1:  # alphabetical, ascending
        return tuple(sorted(options))
    raise NotImplementedError(f"variable {variable.name}: sort {variable.sort}")


def default_selections(board: dict, lookup: OptionsLookup) -> dict[str, Selection]:
    """The value Grafana 12.2 gives each query variable when the dashboard opens without URL
    values, in dashboard order: a variable's query may use the ones before it
    (`label_values(x{model=~"$model"}, feature)`), interpolated for Prometheus.
    `lookup(selector, label)` answers a label_values query (a real Prometheus, or series)."""
    selections: dict[str, Selection] = {}
    for variable in query_variables(board):
        selector, label = variable.label_values()
        found = lookup(interpolate(selector, selections, PROMETHEUS), label)
        options = _sorted_options(variable, dict.fromkeys(found))
        selections[variable.name] = Selection(variable, options, all=variable.include_all)
    return selections


# --- formatting per datasource -----------------------------------------------------------------


def _prometheus_regular_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\\\'")


def _prometheus_regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))


def _prometheus(value: str | list[str], variable: Variable) -> str:
    """grafana-prometheus interpolateQueryExpr, the Prometheus datasource's default format."""
    if not variable.multi and not variable.include_all:
        return _prometheus_regular_escape(value)
    escaped = [_prometheus_regex_escape(v) for v in value]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def _lucene_escape(value: str) -> str:
    if _JS_NUMBER.match(value):  # numbers stay as they are
        return value
    return _LUCENE_SPECIAL.sub(r"\\\1", value)


def _lucene(value: str | list[str], variable: Variable) -> str:
    """The Lucene format of a non-empty list: `("a" OR "b")`."""
    if isinstance(value, str) or not value:
        raise NotImplementedError(f"{variable.name}: Lucene format of {value!r}")
    return "(" + " OR ".join(f'"{_lucene_escape(v)}"' for v in value) + ")"


Formatter = Callable[[str | list[str], Variable], str]
PROMETHEUS = "prometheus"
ELASTICSEARCH = "elasticsearch"
LUCENE = "lucene"
# The format each datasource applies to variables without an explicit one.
DATASOURCE_FORMATS: dict[str, Formatter] = {PROMETHEUS: _prometheus, ELASTICSEARCH: _lucene}


def interpolate(
    text: str,
    selections: Mapping[str, Selection],
    datasource: str,
    builtins: Mapping[str, str] = BUILTINS,
) -> str:
    """`text` with every variable replaced as Grafana does for a query of `datasource`."""

    def replace(match: re.Match) -> str:
        name, explicit = match.group(1) or match.group(2), match.group(3)
        if name in builtins:
            return builtins[name]
        if name not in selections:
            return match.group(0)  # as Grafana: not a variable (e.g. label_replace's "$1")
        if explicit not in (None, LUCENE):
            raise NotImplementedError(f"format {explicit!r} in {match.group(0)}")
        selection = selections[name]
        format_ = _lucene if explicit else DATASOURCE_FORMATS[datasource]
        return format_(selection.value(), selection.variable)

    return _VARIABLE.sub(replace, text)


# --- panel queries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    """One target of a panel: PromQL (`expr`) or Lucene (`query`)."""

    dashboard: str
    panel: str
    datasource: str  # prometheus | elasticsearch
    text: str

    @property
    def name(self) -> str:
        return f"{self.dashboard} / {self.panel}"

    def interpolated(self, selections: Mapping[str, Selection]) -> str:
        return interpolate(self.text, selections, self.datasource)

    @property
    def template(self) -> str:
        """The query with only Grafana's interval variables filled in: the dashboard variables
        stay as they are, inside their label strings, where PromQL still parses."""
        return interpolate(self.text, {}, self.datasource)


def panel_queries(board: dict) -> list[PanelQuery]:
    """Every target of every panel of one dashboard."""
    queries = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            kind = target["datasource"]["type"]
            if kind not in DATASOURCE_FORMATS:
                raise NotImplementedError(f"{panel['title']}: datasource {kind}")
            text = target["expr"] if kind == PROMETHEUS else target.get("query", "")
            queries.append(PanelQuery(board["uid"], panel["title"], kind, text))
    return queries


def prometheus_queries() -> list[PanelQuery]:
    """Every Prometheus target of every panel of every dashboard."""
    return [
        q
        for path in DASHBOARDS
        for q in panel_queries(dashboard(path))
        if q.datasource == PROMETHEUS
    ]


def schema_dir() -> Path:
    """Grafana's JSON schemas: MLOBS_GRAFANA_SCHEMAS, or ../shared/schemas/grafana beside the
    checkout. Skips without them (fails instead under MLOBS_REQUIRE_TOOLS=1)."""
    path = Path(os.environ.get("MLOBS_GRAFANA_SCHEMAS", REPO.parent / "shared/schemas/grafana"))
    if not (path / "dashboard.jsonschema.json").is_file():
        message = f"Grafana JSON schemas not found in {path} (set MLOBS_GRAFANA_SCHEMAS)"
        if REQUIRE_TOOLS:
            pytest.fail(f"MLOBS_REQUIRE_TOOLS=1 but {message}")
        pytest.skip(message)
    return path
