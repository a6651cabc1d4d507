"""Trace context through the real decision path: the agent's span → the gate's decision → Chron's column,
found again with ``chron_list(trace_id=...)``."""

from __future__ import annotations

import msgspec
import pytest
from claiim import AsyncGate
from claiim_core.schemas import DecisionEvent, DecisionReply
from opentelemetry.sdk.trace import TracerProvider

from tests.conftest import Stack, connect_agent
from tests.integration.test_decision_path import gate_for, wait_in_chron

pytestmark = pytest.mark.integration


async def test_a_traced_check_is_found_by_its_trace_id(stack: Stack) -> None:
    """Two checks in one agent span and one outside it: the span's trace id is in the two decisions' events
    and Chron rows, and a search by it finds exactly those two, newest first."""
    tracer = TracerProvider().get_tracer("agent")
    gate: AsyncGate
    async with gate_for(stack, "deploy-bot") as gate:
        with tracer.start_as_current_span("deploy") as span:
            allowed = await gate.check("deploy:staging", target="api-v2")
            denied = await gate.check("deploy:production", target="api-v2")
        untraced = await gate.check("deploy:staging", target="api-v2")
    trace_id = f"{span.get_span_context().trace_id:032x}"
    for reply in (allowed, denied):
        row = await wait_in_chron(stack, reply.chron_id)
        assert row["trace_id"] == trace_id
        assert msgspec.json.decode(row["event"], type=DecisionEvent).trace_id == trace_id
    assert (await wait_in_chron(stack, untraced.chron_id))["trace_id"] is None
    found = await stack.admin.chron_list(trace_id=trace_id)
    assert [(r.chron_id, r.outcome, r.trace_id) for r in found] == [
        (denied.chron_id, "DENY", trace_id), (allowed.chron_id, "ALLOW", trace_id)]
    assert await stack.admin.chron_list(trace_id="f" * 32) == []


@pytest.mark.parametrize("header", ["garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01"])
async def test_an_invalid_traceparent_changes_nothing_but_is_not_recorded(stack: Stack, header: str) -> None:
    """A raw request with an invalid traceparent header: the same decision, recorded and stored without a
    trace id (the specification says to ignore it)."""
    nc = await connect_agent(stack.settings, "deploy-bot", stack.tokens["deploy-bot"])
    try:
        payload = msgspec.json.encode({"agent_id": "deploy-bot", "token": stack.tokens["deploy-bot"],
                                       "action": "deploy:staging", "target": "api-v2"})
        msg = await nc.request(stack.names.gate_check, payload, timeout=5, headers={"traceparent": header})
    finally:
        await nc.close()
    reply = msgspec.json.decode(msg.data, type=DecisionReply)
    assert reply.outcome == "ALLOW" and reply.chron_id
    row = await wait_in_chron(stack, reply.chron_id)
    assert row["trace_id"] is None and b"trace_id" not in bytes(row["event"])
