"""The W3C trace context a check carries: the caller's current OpenTelemetry span when
``opentelemetry-api`` is installed (``pip install 'claiim[otel]'``; never required), or a
``traceparent`` the caller gives. The gate records its trace id with the decision."""

from __future__ import annotations

import functools
from collections.abc import Callable

from claiim_core.tracecontext import TRACEPARENT, TRACESTATE, parse_traceparent

Inject = Callable[[dict[str, str]], None]


@functools.cache
def _inject() -> Inject | None:
    """OpenTelemetry's ``propagate.inject``, or None without ``opentelemetry-api`` (imported once)."""
    try:
        import opentelemetry.propagate
    except ImportError:
        return None
    inject: Inject = opentelemetry.propagate.inject
    return inject


def trace_headers(traceparent: str | None = None) -> dict[str, str]:
    """The NATS headers of a check: ``traceparent`` (and ``tracestate``) of the current span as the
    globally configured OpenTelemetry propagator writes them, or ``traceparent`` as given (a
    ``ValueError`` when it is not a valid one); none without either."""
    if traceparent is not None:
        if parse_traceparent(traceparent) is None:
            raise ValueError(f"not a W3C traceparent: {traceparent!r} (00-<32 hex>-<16 hex>-<2 hex>)")
        return {TRACEPARENT: traceparent}
    inject = _inject()
    if inject is None:
        return {}
    carrier: dict[str, str] = {}
    inject(carrier)
    return {k: v for k, v in carrier.items() if k in (TRACEPARENT, TRACESTATE)}
