"""What a PromQL query reads, from promql-parser's syntax tree."""

from __future__ import annotations

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
