"""Which documents a Lucene query string selects, for the constructs our Grafana panels use.

Parsed with luqum; evaluated the way Elasticsearch's `query_string` query treats our mapping
(keyword fields match exact terms, numeric fields compare numbers, `*` and `?` are wildcards,
the default operator is OR). Anything else raises NotImplementedError, so a new construct fails
the tests until it is handled here rather than being guessed at.
"""

from __future__ import annotations

import re
from typing import Any

from luqum import tree
from luqum.parser import parser

_ESCAPE = re.compile(r"\\(.)")
_WILDCARD = re.compile(r"(?<!\\)[*?]")
_WILDCARD_TOKEN = re.compile(r"\\(.)|([*?])|(.)", re.DOTALL)


def parse(query: str) -> tree.Item:
    """The luqum tree of a query (raises on invalid syntax)."""
    return parser.parse(query)


def matches(query: str, document: dict[str, Any]) -> bool:
    """Whether the query selects the document (a JSON object as it is indexed)."""
    return _match(parse(query), document)


def _values(document: dict[str, Any], field: str) -> list[Any]:
    value: Any = document
    for key in field.split("."):
        if not isinstance(value, dict) or key not in value:
            return []
        value = value[key]
    return value if isinstance(value, list) else [value]


def _match(node: tree.Item, document: dict[str, Any]) -> bool:
    if isinstance(node, tree.AndOperation):
        return all(_match(child, document) for child in node.children)
    if isinstance(node, tree.OrOperation | tree.UnknownOperation):  # default operator: OR
        return any(_match(child, document) for child in node.children)
    if isinstance(node, tree.Group):
        return _match(node.expr, document)
    if isinstance(node, tree.Not | tree.Prohibit):
        return not _match(node.a, document)
    if isinstance(node, tree.SearchField):
        return any(_term(node.expr, value) for value in _values(document, node.name))
    raise NotImplementedError(f"Lucene construct {type(node).__name__}: {node}")


def _wildcard(text: str) -> re.Pattern:
    """A Lucene wildcard term as a regex: `*` any characters, `?` one, `\\x` a literal x."""
    parts = []
    for escaped, wildcard, plain in _WILDCARD_TOKEN.findall(text):
        if wildcard:
            parts.append(".*" if wildcard == "*" else ".")
        else:
            parts.append(re.escape(escaped or plain))
    return re.compile("".join(parts), re.DOTALL)


def _number(text: str) -> float:
    return float(_ESCAPE.sub(r"\1", text))


def _term(node: tree.Item, value: Any) -> bool:
    """Whether one field value matches the expression applied to that field."""
    if isinstance(node, tree.FieldGroup | tree.Group):
        return _term(node.expr, value)
    if isinstance(node, tree.OrOperation | tree.UnknownOperation):
        return any(_term(child, value) for child in node.children)
    if isinstance(node, tree.AndOperation):
        return all(_term(child, value) for child in node.children)
    if isinstance(node, tree.Phrase):
        return str(value) == _ESCAPE.sub(r"\1", node.value[1:-1])
    if isinstance(node, tree.Word):
        text = node.value
        if _WILDCARD.search(text):
            return isinstance(value, str) and _wildcard(text).fullmatch(value) is not None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value == _number(text)
        return str(value) == _ESCAPE.sub(r"\1", text)
    if isinstance(node, tree.Range):
        low, high = node.low.value, node.high.value
        above = low == "*" or (value >= _number(low) if node.include_low else value > _number(low))
        below = high == "*" or (
            value <= _number(high) if node.include_high else value < _number(high)
        )
        return above and below
    if isinstance(node, tree.From):
        bound = _number(node.a.value)
        return value >= bound if node.include else value > bound
    if isinstance(node, tree.To):
        bound = _number(node.a.value)
        return value <= bound if node.include else value < bound
    raise NotImplementedError(f"Lucene term {type(node).__name__}: {node}")
