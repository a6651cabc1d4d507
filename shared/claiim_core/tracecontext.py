"""W3C Trace Context (https://www.w3.org/TR/trace-context/): the trace id of a ``traceparent`` header.

An agent's SDK sends the ``traceparent`` of the caller's current span as a NATS header with its
check; the gate records the trace id in the decision, so that a decision is found from a trace
(``claiim chron list --trace-id``) and a trace from a decision. A header that is not a valid
``traceparent`` is ignored, as the specification asks: it never changes a decision.
"""

from __future__ import annotations

import re

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\Z")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
TRACE_ID = re.compile(r"[0-9a-f]{32}\Z")
"""A trace id as claiim stores and searches it: 32 lowercase hex digits."""


def parse_traceparent(header: str | None) -> tuple[str, str] | None:
    """The (trace id, parent span id) of a ``traceparent`` header; None when it is absent or invalid.

    Version ``ff`` is invalid; version ``00`` has exactly four fields; a later version may add
    fields after the fourth (they are ignored). All-zero ids are invalid."""
    if not header:
        return None
    found = _TRACEPARENT.match(header.strip())
    if found is None:
        return None
    version, trace_id, span_id, _flags, rest = found.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id


def trace_id_of(header: str | None) -> str | None:
    """The trace id of a ``traceparent`` header, or None (see :func:`parse_traceparent`)."""
    parsed = parse_traceparent(header)
    return parsed[0] if parsed else None
