"""The decision path against a real nats-server and PostgreSQL: SDK → gate → JetStream → Chron."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from claiim import AsyncGate, GateUnavailableError
from claiim_core.schemas import DecisionEvent, DecisionReply
from nats.js.api import DiscardPolicy

from tests.conftest import Stack, connect_agent, connect_as

pytestmark = pytest.mark.integration

SEED_TABLE = [
    ("deploy-bot", "deploy:staging", "ALLOW", "policy:no-prod-v1 -- action allowed", "no-prod-v1", "deploy-v2",
     "s.emp1"),
    ("deploy-bot", "deploy:production", "DENY", "policy:no-prod-v1 -- action explicitly denied", "no-prod-v1",
     "deploy-v2", "s.emp1"),
    ("deploy-bot", "deploy:rollback-staging", "ALLOW", "policy:no-prod-v1 -- action allowed", "no-prod-v1",
     "deploy-v2", "s.emp1"),
    ("deploy-bot", "infra:destroy", "DENY", "skill:deploy-v2 -- action outside the agent's skills", "",
     "deploy-v2", "s.emp1"),
    ("review-bot", "pr:comment", "ALLOW", "policy:review-v2 -- action allowed", "review-v2", "review-v1", "j.smith"),
    ("review-bot", "pr:merge", "DENY", "policy:review-v2 -- action explicitly denied", "review-v2", "review-v1",
     "j.smith"),
    ("review-bot", "pr:approve", "DENY", "policy:review-v2 -- action not in allow list", "review-v2", "review-v1",
     "j.smith"),
]


def gate_for(stack: Stack, agent: str, token: str | None = None) -> AsyncGate:
    return AsyncGate(agent, token or stack.tokens[agent], stack.settings.url, namespace=stack.settings.namespace)


async def wait_in_chron(stack: Stack, chron_id: str) -> dict[str, object]:
    assert stack.running.chron is not None
    for _ in range(200):
        rows = await stack.running.chron.store.query(chron_id=chron_id)
        if rows:
            return rows[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{chron_id} never reached Chron")


@pytest.mark.parametrize(("agent", "action", "outcome", "reason", "policy", "skill", "anchor"), SEED_TABLE)
async def test_seed_decision_table(stack: Stack, agent: str, action: str, outcome: str, reason: str,
                                   policy: str, skill: str, anchor: str) -> None:
    """Each seed decision comes back as specified and lands in Chron with the same versions."""
    async with gate_for(stack, agent) as gate:
        result = await gate.check(action=action, target="api-v2")
    assert (result.outcome, result.reason, result.policy, result.skill, result.anchor) == (
        outcome, reason, policy, skill, anchor)
    assert result.chron_id.startswith("chr_")
    row = await wait_in_chron(stack, result.chron_id)
    assert (row["outcome"], row["agent_id"], row["action"], row["target"], row["anchor"], row["policy"],
            row["skill"], row["org"]) == (outcome, agent, action, "api-v2", anchor, policy, skill, "demo")
    assert row["control_seq"] == stack.running.followers[-1].registry.last_seq
    stored = msgspec.json.decode(row["event"], type=DecisionEvent)
    assert stored.chron_id == result.chron_id and stored.reason == reason


async def test_decision_is_in_jetstream_before_the_reply(stack: Stack) -> None:
    """The instant a reply arrives, its decision event is already stored in the decisions stream."""
    nc = await connect_agent(stack.settings, "deploy-bot", stack.tokens["deploy-bot"])
    reader = await connect_as(stack.settings, "siem")
    js = reader.jetstream()
    try:
        for action, outcome in [("deploy:staging", "allow"), ("deploy:production", "deny")] * 5:
            payload = msgspec.json.encode({"agent_id": "deploy-bot", "token": stack.tokens["deploy-bot"],
                                           "action": action, "target": "api-v2"})
            msg = await nc.request(stack.names.gate_check, payload, timeout=5)
            reply = msgspec.json.decode(msg.data, type=DecisionReply)
            stored = await js.get_last_msg(stack.names.decisions_stream,
                                           stack.names.decision_subject("demo", "deploy-bot", outcome))
            assert msgspec.json.decode(stored.data, type=DecisionEvent).chron_id == reply.chron_id
            assert stored.headers is not None and stored.headers.get("Nats-Msg-Id") == reply.chron_id
    finally:
        await nc.close()
        await reader.close()


async def test_gate_fails_closed_when_jetstream_refuses(stack: Stack) -> None:
    """When the decisions stream refuses new messages, an otherwise allowed action is DENIED."""
    nc = await connect_as(stack.settings)
    js = nc.jetstream()
    try:
        async with gate_for(stack, "deploy-bot") as gate:
            assert (await gate.check(action="deploy:staging")).outcome == "ALLOW"
        info = await js.stream_info(stack.names.decisions_stream)
        assert info.state.messages >= 1
        config = info.config
        config.max_msgs = info.state.messages
        config.discard = DiscardPolicy.NEW
        await js.update_stream(config)
        async with gate_for(stack, "deploy-bot") as gate:
            result = await gate.check(action="deploy:staging", target="api-v2")
        assert result.outcome == "DENY"
        assert result.reason.startswith("chron:unavailable -- ")
        assert result.chron_id == ""
        config.max_msgs = -1
        await js.update_stream(config)
        async with gate_for(stack, "deploy-bot") as gate:
            again = await gate.check(action="deploy:staging", target="api-v2")
        assert again.outcome == "ALLOW"
    finally:
        await nc.close()


async def test_gate_fails_closed_when_the_stream_is_gone(stack: Stack) -> None:
    """With the decisions stream deleted, nothing can be recorded, so the gate answers DENY."""
    nc = await connect_as(stack.settings)
    try:
        await nc.jetstream().delete_stream(stack.names.decisions_stream)
        async with gate_for(stack, "deploy-bot") as gate:
            result = await gate.check(action="deploy:staging", target="api-v2")
        assert result.outcome == "DENY" and result.reason.startswith("chron:unavailable")
    finally:
        await nc.close()


@pytest.mark.parametrize(("payload", "reason"), [
    (b"", "request:malformed"),
    (b"{not json", "request:malformed"),
    (b"[1, 2, 3]", "request:malformed"),
    (b'{"agent_id": "deploy-bot"}', "request:malformed"),
    (b'{"agent_id": 7, "token": "x", "action": "deploy:staging"}', "request:malformed"),
    (b'{"agent_id": "a", "token": "x", "action": "deploy:staging", "extra": 1}', "request:malformed"),
    (b'{"agent_id": "a", "token": "x", "action": "not an action!"}', "request:malformed"),
    (b"\xff\xfe\x00garbage", "request:malformed"),
    (b'{"pad": "' + b"x" * 40_000 + b'"}', "request:oversized"),
    (b'{"agent_id": "nobody", "token": "clm_demo.x", "action": "deploy:staging"}', "agent:unknown"),
    (b'{"agent_id": "deploy-bot", "token": "x", "action": "deploy:staging"}', "auth:bad-token"),
    (b'{"agent_id": "deploy-bot", "token": "clm_wrong", "action": "deploy:staging"}', "auth:bad-token"),
])
async def test_bad_requests_get_a_recorded_deny(stack: Stack, payload: bytes, reason: str) -> None:
    """Malformed, oversized, unknown-agent and bad-token requests are answered DENY and recorded (sent by an
    admitted agent: NATS authentication is the first line, the gate's own checks the second)."""
    nc = await connect_agent(stack.settings, "review-bot", stack.tokens["review-bot"])
    try:
        msg = await nc.request(stack.names.gate_check, payload, timeout=5)
    finally:
        await nc.close()
    reply = msgspec.json.decode(msg.data, type=DecisionReply)
    assert reply.outcome == "DENY" and reply.reason.startswith(reason + " -- "), reply.reason
    row = await wait_in_chron(stack, reply.chron_id)
    assert row["outcome"] == "DENY" and row["reason"] == reply.reason
    assert b"clm_wrong" not in row["event"]  # type: ignore[operator]


async def test_gate_unreachable_raises_and_never_allows(nats_url: str) -> None:
    """With no gate on the subject, or no server at all, check raises GateUnavailableError."""
    async with AsyncGate("deploy-bot", "t", nats_url, namespace="nobodyhome", timeout=1) as gate:
        with pytest.raises(GateUnavailableError):
            await gate.check(action="deploy:staging")
    async with AsyncGate("deploy-bot", "t", "nats://127.0.0.1:1", timeout=1) as gate:
        with pytest.raises(GateUnavailableError):
            await gate.check(action="deploy:staging")


async def test_many_concurrent_decisions_all_recorded(stack: Stack) -> None:
    """500 concurrent checks each get a distinct chron id, and Chron ends with all of them."""
    async with gate_for(stack, "deploy-bot") as gate:
        results = await asyncio.gather(*[
            gate.check(action="deploy:staging" if i % 2 else "deploy:production", target=f"t{i}") for i in range(500)
        ])
    ids = {r.chron_id for r in results}
    assert len(ids) == 500
    assert stack.running.chron is not None
    for _ in range(200):
        rows = await stack.running.chron.store.query(kind="decision", limit=10_000)
        if ids <= {r["chron_id"] for r in rows}:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("not every decision reached Chron")


async def test_internal_error_is_answered_and_recorded(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """When evaluation itself raises, the agent still gets an explicit, recorded DENY."""
    import claiim_gate.service

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("evaluator bug")

    monkeypatch.setattr(claiim_gate.service, "decide", broken)
    async with gate_for(stack, "deploy-bot") as gate:
        result = await gate.check(action="deploy:staging", target="api-v2")
    assert result.outcome == "DENY" and result.reason == "gate:internal-error -- RuntimeError"
    row = await wait_in_chron(stack, result.chron_id)
    assert row["reason"] == result.reason
