"""Which documents a Lucene query string selects, for the constructs our Grafana panels use.

Parsed with luqum; evaluated the way Elasticsearch's `query_string` query treats our mapping:
`field:("a" OR "b")` matches a keyword field holding one of the phrases exactly, `field:<=n` a
numeric field at or below n, and AND needs both. Anything else raises NotImplementedError, so a
new construct fails the tests until it is handled here rather than being guessed at.
"""

from __future__ import annotations

import re
from typing import Any

from luqum import tree
from luqum.parser import parser

_ESCAPE = re.compile(r"\\(.)")


def parse(query: str) -> tree.Item:
    """The luqum tree of a query (raises on invalid syntax)."""
    return parser.parse(query)


def matches(query: str, document: dict[str, Any]) -> bool:
    """Whether the query selects the document (a JSON object as it is indexed)."""
    return _match(parse(query), document)


def _match(node: tree.Item, document: dict[str, Any]) -> bool:
    if isinstance(node, tree.AndOperation):
        return all(_match(child, document) for child in node.children)
    if isinstance(node, tree.SearchField) and "." not in node.name:
        value = document.get(node.name)
        return value is not None and _term(node.expr, value)
    raise NotImplementedError(f"Lucene construct {type(node).__name__}: {node}")


def _term(node: tree.Item, value: Any) -> bool:
    """Whether one field value matches the expression applied to that field."""
    if isinstance(node, tree.FieldGroup):
        return _term(node.expr, value)
    if isinstance(node, tree.OrOperation):
        return any(_term(child, value) for child in node.children)
    if isinstance(node, tree.Phrase) and isinstance(value, str):
        return value == _ESCAPE.sub(r"\1", node.value[1:-1])
    if isinstance(node, tree.To) and isinstance(value, int | float):
        bound = float(node.a.value)
        return value <= bound if node.include else value < bound
    raise NotImplementedError(f"Lucene term {type(node).__name__}: {node} on {value!r}")
