"""The gate's spans over OTLP/HTTP, to a collector of the test's own (an HTTP server decoding what the OpenTelemetry
exporter posts): one span a check, the child of the agent's span, naming the decision."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from claiim import AsyncGate
from claiim_gate.tracing import GateSpans
from claiim_runtime.settings import ConfigError, Settings
from claiim_server.bootstrap import start_services
from claiim_server.servers import free_port
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import TracerProvider

from tests.conftest import backend, load_demo

pytestmark = pytest.mark.integration


@dataclass
class Collector:
    url: str
    spans: list[tuple[dict[str, str], Span]] = field(default_factory=list)
    """Each span received with its resource's attributes."""


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    port = free_port()
    found = Collector(f"http://127.0.0.1:{port}")

    async def traces(request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in export.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            found.spans += [(resource, s) for scope in resource_spans.scope_spans for s in scope.spans]
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield found
    finally:
        await runner.cleanup()


def attributes(span: Span) -> dict[str, str]:
    return {a.key: a.value.string_value for a in span.attributes}


async def test_each_check_is_a_span_the_child_of_the_agents(stack_settings: Settings, collector: Collector) -> None:
    """A traced check's span is in the agent's trace under the agent's span; an untraced one starts a trace; the
    spans reach the collector by the time the gate has stopped."""
    settings = stack_settings.model_copy(update={"otlp_endpoint": collector.url})
    running = await start_services(settings, backend(settings), instance="spans")
    try:
        tokens = await load_demo(settings)
        tracer = TracerProvider().get_tracer("agent")
        async with AsyncGate("deploy-bot", tokens["deploy-bot"], settings.url, namespace=settings.namespace) as gate:
            with tracer.start_as_current_span("deploy") as agent_span:
                denied = await gate.check("deploy:production", "api-v2")
            allowed = await gate.check("deploy:staging", "api-v2")
    finally:
        await running.stop()
    assert len(collector.spans) == 2, collector.spans
    by_chron = {attributes(s)["claiim.chron_id"]: (resource, s) for resource, s in collector.spans}
    resource, traced = by_chron[denied.chron_id]
    context = agent_span.get_span_context()
    assert (traced.trace_id.hex(), traced.parent_span_id.hex()) == (
        f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert traced.name == "claiim.gate.check" and traced.kind == Span.SpanKind.SPAN_KIND_SERVER
    assert traced.end_time_unix_nano > traced.start_time_unix_nano
    assert {k: attributes(traced)[k] for k in ("claiim.outcome", "claiim.rule", "claiim.reason.category",
                                                "claiim.org", "claiim.agent_id", "claiim.policy")} == {
        "claiim.outcome": "DENY", "claiim.rule": denied.rule, "claiim.reason.category": "policy", "claiim.org": "demo",
        "claiim.agent_id": "deploy-bot", "claiim.policy": "no-prod-v1"}
    assert resource["service.name"] == "claiim-gate" and resource["service.instance.id"] == "spans"
    _, untraced = by_chron[allowed.chron_id]
    assert untraced.parent_span_id == b"" and untraced.trace_id.hex() != f"{context.trace_id:032x}"
    assert attributes(untraced)["claiim.outcome"] == "ALLOW"


async def test_an_unreachable_collector_changes_no_decision_nor_the_stop(stack_settings: Settings) -> None:
    """Spans to a port where nothing listens: checks are answered as ever, and the gate still stops in time."""
    settings = stack_settings.model_copy(update={"otlp_endpoint": f"http://127.0.0.1:{free_port()}"})
    running = await start_services(settings, backend(settings), instance="spans")
    try:
        tokens = await load_demo(settings)
        async with AsyncGate("deploy-bot", tokens["deploy-bot"], settings.url, namespace=settings.namespace) as gate:
            results = [await gate.check("deploy:staging", "api-v2") for _ in range(20)]
    finally:
        started = time.monotonic()
        await running.stop()
        stopped_in = time.monotonic() - started
    assert all(r.outcome == "ALLOW" and r.chron_id for r in results)
    assert stopped_in < 10, stopped_in


def test_an_endpoint_without_the_sdk_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ConfigError, match=r"pip install 'claiim-server\[otel\]'"):
        GateSpans("http://127.0.0.1:4318", "g")
