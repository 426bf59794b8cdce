"""What a PromQL query reads, from promql-parser's syntax tree."""

from __future__ import annotations

import re
from collections.abc import Mapping

import promql_parser


def vector_selectors(promql: str) -> list[promql_parser.VectorSelector]:
    """Every vector selector of `promql`, in the order the parser walks them."""
    found: list[promql_parser.VectorSelector] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(promql), visit)
    return found


def metric_names(promql: str) -> set[str]:
    """The metric (or recorded series) names `promql` reads."""
    return {selector.name for selector in vector_selectors(promql)}


def raw_metric_names(promql: str, recorded: Mapping[str, str]) -> set[str]:
    """The exported metrics `promql` reads: a recorded series (`recorded`: record -> its rule's
    expression) is followed to the metrics its rule reads, as those carry its labels."""
    return set().union(
        *(
            raw_metric_names(recorded[name], recorded) if name in recorded else {name}
            for name in metric_names(promql)
        )
    )


def matcher_selects(matcher: promql_parser.Matcher, value: str | None) -> bool:
    """Whether a label matcher accepts a label value (None: the label is missing). Prometheus
    regexes are fully anchored RE2; Python's re agrees on the syntax used here."""
    value = value or ""
    op = str(matcher.op)
    if op.endswith("NotRe"):
        return re.fullmatch(matcher.value, value) is None
    if op.endswith("Re"):
        return re.fullmatch(matcher.value, value) is not None
    if op.endswith("NotEqual"):
        return value != matcher.value
    return value == matcher.value


def selected_values(promql: str, metric: str, label: str, candidates: set[str]) -> set[str]:
    """The candidate values of `label` that some selector of `metric` in `promql` accepts."""
    return {
        value
        for selector in vector_selectors(promql)
        if selector.name == metric
        for value in candidates
        if all(
            matcher_selects(matcher, value)
            for matcher in selector.matchers.matchers
            if matcher.name == label
        )
    }
