"""Retries that cannot record twice: a repeated request id gets the first recorded answer from any
gate replica, even when the first reply was lost; JetStream's deduplication, not a replica's memory,
decides."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest
from claiim import AsyncGate
from claiim_core.schemas import CheckRequest, DecisionReply
from claiim_core.tokens import inbox_prefix
from claiim_server.bootstrap import start_services

from tests.conftest import Stack, connect_agent

pytestmark = pytest.mark.integration


async def rows_with_request_id(stack: Stack, request_id: str) -> list[str]:
    """The chron ids of the decisions recorded with ``request_id``, once Chron has everything."""
    assert stack.running.chron is not None
    for _ in range(100):
        if (await stack.admin.chron_status()).pending == 0:
            break
        await asyncio.sleep(0.05)
    rows = await stack.running.chron.store.query(kind="decision", limit=10_000)
    return [r["chron_id"] for r in rows if json.loads(bytes(r["event"])).get("request_id") == request_id]


async def test_a_repeated_request_id_gets_one_recorded_answer_from_every_replica(stack: Stack) -> None:
    """Twenty repeats of one request over two gate replicas: one chron id in every reply, one row in Chron;
    the id reused for another request is refused and that refusal recorded."""
    other = await start_services(stack.settings, which=("gate",), instance="replica-b")
    try:
        async with AsyncGate("deploy-bot", stack.tokens["deploy-bot"], stack.settings.url,
                             namespace=stack.settings.namespace) as gate:
            replies = [await gate.check(action="deploy:staging", target="api-v2", request_id="order-42")
                       for _ in range(20)]
            reused = await gate.check(action="deploy:production", target="api-v2", request_id="order-42")
    finally:
        await other.stop()
    assert {r.chron_id for r in replies} == {replies[0].chron_id} and replies[0].outcome == "ALLOW"
    assert (reused.outcome, reused.rule) == ("DENY", "request-id") and reused.chron_id != replies[0].chron_id
    assert sorted(await rows_with_request_id(stack, "order-42")) == sorted([replies[0].chron_id, reused.chron_id])


async def test_a_lost_reply_is_answered_by_the_retry_and_recorded_once(stack: Stack) -> None:
    """A gate records a decision whose reply never reaches the agent, then is gone (as when a gate dies after
    the PubAck); the agent's retry, answered by another replica, gets that decision, and nothing new is
    recorded."""
    token = stack.tokens["deploy-bot"]
    nc = await connect_agent(stack.settings, "deploy-bot", token)
    try:
        request = CheckRequest(agent_id="deploy-bot", token=token, action="deploy:staging", target="api-v2",
                               request_id="lost-1")
        await nc.publish(stack.names.gate_check, msgspec.json.encode(request),
                         reply=f"{inbox_prefix(token)}.nobody-listens")
        await nc.flush()
    finally:
        await nc.close()
    [recorded] = await rows_with_request_id(stack, "lost-1")
    for gate_service in stack.running.gates:
        await gate_service.stop()
    other = await start_services(stack.settings, which=("gate",), instance="replica-b")
    try:
        async with AsyncGate("deploy-bot", token, stack.settings.url, namespace=stack.settings.namespace) as gate:
            retry = await gate.check(action="deploy:staging", target="api-v2", request_id="lost-1")
    finally:
        await other.stop()
    assert isinstance(retry, DecisionReply) and (retry.chron_id, retry.outcome) == (recorded, "ALLOW")
    assert await rows_with_request_id(stack, "lost-1") == [recorded]
