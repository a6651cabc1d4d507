"""The gate's OpenTelemetry spans, exported over OTLP/HTTP when ``CLAIIM_OTLP_ENDPOINT`` is set.

One span per check, ``claiim.gate.check`` of kind SERVER, from the request's arrival to the reply
sent (the PubAck wait included): a child of the agent's span when the request carries a W3C
``traceparent``, else the root of a trace of its own. Its attributes name the decision (outcome,
rule, reason category, org, agent, chron id, policy and skill versions); a decision that could
not be recorded has status ERROR. Spans go out in batches from a thread of OpenTelemetry's SDK
(``pip install 'claiim-server[otel]'``), so that the collector's speed never reaches the decision
path; the standard ``OTEL_*`` variables (headers, sampler, batch sizes) apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Mapping
from typing import Any

from claiim_core.schemas import DecisionReply
from claiim_core.tracecontext import TRACEPARENT, TRACESTATE
from claiim_runtime.settings import ConfigError

EXPORT_TIMEOUT_S = 2.0
"""The longest one export to the collector may take."""


class GateSpans:
    """Starts a span per request and ends it with the reply; :meth:`shutdown` sends what is left."""

    def __init__(self, endpoint: str, instance: str) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.trace import SpanKind, Status, StatusCode
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError as e:
            raise ConfigError("CLAIIM_OTLP_ENDPOINT is set but OpenTelemetry's SDK is not installed: "
                                   "pip install 'claiim-server[otel]'") from e
        self._provider = TracerProvider(resource=Resource.create(
            {"service.name": "claiim-gate", "service.instance.id": instance}))
        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=EXPORT_TIMEOUT_S)
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("claiim.gate")
        self._propagator = TraceContextTextMapPropagator()
        self._server = SpanKind.SERVER
        self._error = Status(StatusCode.ERROR, "the decision could not be recorded")

    def start(self, headers: Mapping[str, str] | None) -> Any:
        """A span from now, the child of the ``traceparent`` in ``headers`` if there is a valid one."""
        carrier = {k: headers[k] for k in (TRACEPARENT, TRACESTATE) if k in headers} if headers else {}
        parent = self._propagator.extract(carrier) if carrier else None
        return self._tracer.start_span("claiim.gate.check", context=parent, kind=self._server,
                                       start_time=time.time_ns())

    def end(self, span: Any, reply: DecisionReply, org: str) -> None:
        span.set_attributes({
            "claiim.outcome": reply.outcome, "claiim.rule": reply.rule, "claiim.reason.category": reply.category,
            "claiim.org": org, "claiim.agent_id": reply.agent_id, "claiim.chron_id": reply.chron_id,
            "claiim.policy": reply.policy, "claiim.skill": reply.skill})
        if not reply.chron_id:
            span.set_status(self._error)
        span.end()

    async def shutdown(self, timeout: float) -> None:
        """Send the spans not yet sent and stop, waiting ``timeout`` seconds at most (an unreachable
        collector must not hold up the gate's stop); the event loop goes on meanwhile."""
        loop, done = asyncio.get_running_loop(), asyncio.Event()

        def stop() -> None:
            try:
                self._provider.shutdown()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                    loop.call_soon_threadsafe(done.set)

        threading.Thread(target=stop, name="claiim-otel-stop", daemon=True).start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
