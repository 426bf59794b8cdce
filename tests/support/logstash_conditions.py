"""Evaluate a Logstash `if` condition, as parsed by logstash-pipeline-parser, on an event.

Logstash cannot run here, so its semantics for the parts of the condition language our pipeline
uses are reproduced from its source, elastic/logstash v9.5.2,
logstash-core/src/main/java/org/logstash/config/ir/compiler/EventCondition.java:
- `[field]` alone is true unless the value is missing, false, or renders as "" or "false"
  (valueIsTruthy): a confidence of 0.0 is true, unlike in Python;
- `<`, `<=`, `>`, `>=` compare with compareTo: a missing field or a value of another type is an
  evaluation error (the event goes to the dead letter queue, not through the `else`);
- `"x" in [field]` is a substring test on a string and membership on a list; a missing field is
  not an error but false; `not in` is its negation; `!` negates;
- `and` / `or` evaluate left to right and stop early.
Anything else raises NotImplementedError, so a condition this module does not understand cannot
pass a test by accident.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_ORDER = {
    "<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    ">": lambda c: c > 0,
    ">=": lambda c: c >= 0,
}


class EvaluationError(Exception):
    """Logstash would fail to evaluate the condition on this event."""


def _is_field(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("[") and value.endswith("]")


def field(event: dict, reference: str) -> Any:
    """The value of `[a][b]` in the event, None when missing."""
    value: Any = event
    for part in reference[1:-1].split("]["):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _value(event: dict, operand: Any) -> Any:
    return field(event, operand) if _is_field(operand) else operand


def truthy(value: Any) -> bool:
    """Logstash's valueIsTruthy."""
    if value is None or value is False:
        return False
    return not (isinstance(value, str) and value in ("", "false"))


def _compare(left: Any, right: Any) -> int:
    numbers = (int, float)
    same_kind = (
        isinstance(left, numbers)
        and isinstance(right, numbers)
        and not isinstance(left, bool)
        and not isinstance(right, bool)
    ) or (isinstance(left, str) and isinstance(right, str))
    if not same_kind:
        raise EvaluationError(f"cannot compare {left!r} with {right!r}")
    return (left > right) - (left < right)


def _contains(needle: Any, haystack: Any) -> bool:
    if isinstance(haystack, str):
        return isinstance(needle, str) and needle in haystack
    if isinstance(haystack, list):
        return needle in haystack
    return False


def _term(term: list, event: dict) -> bool:
    if term and isinstance(term[0], list):  # a parenthesised group
        return evaluate(term, event)
    if len(term) == 1:
        return truthy(_value(event, term[0]))
    if len(term) == 2 and term[0] == "!":
        return not _term(term[1], event)
    if len(term) == 3 and term[1] in _ORDER:
        left, right = _value(event, term[0]), _value(event, term[2])
        return _ORDER[term[1]](_compare(left, right))
    if len(term) == 3 and term[1] == "in":
        return _contains(_value(event, term[0]), _value(event, term[2]))
    if len(term) == 4 and term[1:3] == ["not", "in"]:
        return not _contains(_value(event, term[0]), _value(event, term[3]))
    raise NotImplementedError(f"condition term {term!r}")


def evaluate(condition: list, event: dict) -> bool:
    """True if the condition (terms joined by `and` or `or`) holds for the event."""
    terms, operators = condition[0::2], set(condition[1::2])
    if not operators <= {"and", "or"} or len(operators) > 1:
        raise NotImplementedError(f"boolean operators {sorted(operators)} (add parentheses)")
    if operators == {"or"}:
        return any(_term(term, event) for term in terms)
    return all(_term(term, event) for term in terms)


def conditionals(section: list) -> Iterator[tuple[list, list]]:
    """(condition, plugins) of every `if` and `else if` in a parsed pipeline section, nested
    ones included."""
    for name, value in section:
        if name in ("if", "else if"):
            condition, [body] = value[:-1], value[-1]
            yield condition, body
            yield from conditionals(body)
        elif name == "else":
            yield from conditionals(value)


def tags_added(plugins: list) -> set[str]:
    """Tags the `add_tag` of these plugins adds."""
    return {
        tag
        for _name, options in plugins
        for key, values in options
        if key == "add_tag"
        for tag in values[0]
    }
