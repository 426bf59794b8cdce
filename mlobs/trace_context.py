"""W3C Trace Context: the trace and parent span a request arrives with, from `traceparent`.

https://www.w3.org/TR/trace-context/#traceparent-header: `version-traceid-parentid-flags`, lowercase
hex, e.g. `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`. A header that does not follow
the rules is ignored, never an error: tracing is the caller's business, the prediction is ours.
"""

from __future__ import annotations

import re

_FIELDS = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_VERSION_00_LENGTH = 55
# Later versions may append fields; a header longer than this is refused unread.
MAX_LENGTH = 512
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


def parse_traceparent(value: bytes) -> tuple[str, str] | None:
    """(trace_id, parent span_id) of a valid `traceparent` header value, else None.

    Invalid: upper-case or non-hex digits, version `ff`, an all-zero trace or span id, version 00
    with anything after the flags, a later version whose flags are not followed by `-` or the
    end, and values over MAX_LENGTH bytes.
    """
    if len(value) > MAX_LENGTH:
        return None
    fields = _FIELDS.match(value)
    if fields is None:
        return None
    version, trace_id, span_id = fields.groups()
    if version == b"ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if len(value) > _VERSION_00_LENGTH and (
        version == b"00" or value[_VERSION_00_LENGTH : _VERSION_00_LENGTH + 1] != b"-"
    ):
        return None
    return trace_id.decode(), span_id.decode()
