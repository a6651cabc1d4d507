"""Hostile input against every request handler over real NATS: each request gets an answer, no
service stops, nothing already in Chron changes, and garbage is never an ALLOW.

Hypothesis generates the payloads (random bytes, truncated and padded requests, wrongly typed
and deeply nested JSON, other text encodings); they are then sent to the gate, every admin
subject and Chron's query subject of one running stack.
"""

from __future__ import annotations

import asyncio
import json
import resource
from typing import Any

import msgspec
import pytest
from claiim import AsyncGate
from claiim_core.schemas import DecisionReply
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Stack, connect_as, gate_via

pytestmark = pytest.mark.integration
EXAMPLES = 250

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                       max_size=4), max_leaves=20)
FIELDS = ["agent_id", "token", "action", "target", "context", "request_id", "admin_token", "op", "bundle", "org",
          "name", "proposal_id", "reason", "role", "approvals", "chron_id", "limit", "first"]


def valid_check(token: str) -> bytes:
    return json.dumps({"agent_id": "deploy-bot", "token": token, "action": "deploy:staging",
                       "target": "api-v2"}).encode()


@st.composite
def hostile(draw: st.DrawFn, sample: bytes) -> bytes:
    kind = draw(st.sampled_from(["bytes", "truncated", "padded", "typed", "nested", "encoding", "huge-json"]))
    if kind == "bytes":
        return draw(st.binary(max_size=4096))
    if kind == "truncated":
        return sample[:draw(st.integers(0, len(sample) - 1))]
    if kind == "padded":
        return sample[:-1] + b', "pad": "' + b"x" * draw(st.integers(16_000, 200_000)) + b'"}'
    if kind == "typed":
        obj = draw(st.dictionaries(st.sampled_from(FIELDS), JSON, min_size=1, max_size=8))
        return json.dumps(obj).encode()
    if kind == "nested":
        depth = draw(st.integers(100, 5000))
        return b"[" * depth + b"]" * depth if draw(st.booleans()) else b'{"a":' * depth + b"1" + b"}" * depth
    if kind == "encoding":  # the request in another encoding, or with a byte that is not UTF-8
        codec = draw(st.sampled_from(["utf-16", "utf-32", "utf-16-be", "latin-1"]))
        if codec == "latin-1":
            return sample.replace(b"deploy-bot", "d\u00e9ploy-bot".encode("latin-1"))
        return sample.decode().encode(codec)
    return json.dumps({"agent_id": "deploy-bot", "context": {str(i): "v" * 200 for i in range(draw(
        st.integers(33, 500)))}}).encode()


def generate(sample: bytes) -> list[bytes]:
    found: list[bytes] = []

    @settings(max_examples=EXAMPLES, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(hostile(sample))
    def collect(payload: bytes) -> None:
        found.append(payload)

    collect()
    return found


async def chron_rows(stack: Stack) -> dict[str, bytes]:
    assert stack.running.chron is not None
    rows = await stack.running.chron.store.query(limit=10_000)
    return {r["chron_id"]: bytes(r["event"]) for r in rows}


async def settle(stack: Stack) -> None:
    assert stack.running.chron is not None
    for _ in range(100):
        before = stack.running.chron.stored
        await asyncio.sleep(0.1)
        if stack.running.chron.stored == before:
            return


async def test_every_handler_answers_hostile_input(stack: Stack) -> None:
    names = stack.names
    await settle(stack)
    before = await chron_rows(stack)
    control_seq = stack.running.followers[0].registry.last_seq
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    subjects = [names.gate_check, names.admin_apply, names.admin_agent, names.admin_admins, names.admin_org,
                names.admin_proposal, names.admin_query, names.chron_query]
    payloads = generate(valid_check(stack.tokens["deploy-bot"]))
    nc = await connect_as(stack.settings)
    answered = 0
    try:
        for subject in subjects:
            for payload in payloads:
                if len(payload) > 1_000_000:  # over NATS's max_payload: the client refuses to send it
                    continue
                msg = await nc.request(subject, payload, timeout=10)  # a timeout here fails the test
                reply: dict[str, Any] = json.loads(msg.data)
                if subject == names.gate_check:
                    decision = msgspec.convert(reply, DecisionReply)
                    assert decision.outcome == "DENY", (payload[:200], decision)
                else:
                    assert reply.get("ok") is False or reply.get("error"), (subject, payload[:200], reply)
                answered += 1
    finally:
        await nc.close()
    print(f"{len(payloads)} generated payloads x {len(subjects)} subjects: {answered} answered")
    await settle(stack)
    after = await chron_rows(stack)
    assert {k: after.get(k) for k in before} == before, "a record already in Chron changed"
    assert stack.running.followers[0].registry.last_seq == control_seq, "garbage changed the registry"
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
    assert grown_mb < 300, f"the process grew {grown_mb:.0f} MB while answering hostile input"
    async with AsyncGate("deploy-bot", stack.tokens["deploy-bot"], stack.settings.url,
                         namespace=stack.settings.namespace) as gate:
        assert (await gate.check(action="deploy:staging", target="api-v2")).outcome == "ALLOW", "the gate stopped"


async def check(stack: Stack, token: str, agent: str = "deploy-bot", action: str = "deploy:staging",
                request_id: str | None = None) -> DecisionReply:
    """The gate's answer; a token that is not the agent's own is carried over review-bot's connection."""
    gate = (AsyncGate(agent, token, stack.settings.url, namespace=stack.settings.namespace)
            if token == stack.tokens.get(agent) else gate_via(stack, agent, token))
    async with gate:
        return await gate.check(action=action, target="api-v2", request_id=request_id)


async def test_another_agents_token_is_a_bad_token(stack: Stack) -> None:
    reply = await check(stack, stack.tokens["review-bot"])
    assert (reply.outcome, reply.reason) == ("DENY", "auth:bad-token -- token does not match agent deploy-bot")


async def test_a_retried_request_id_gets_the_first_answer_and_a_reused_one_is_refused(stack: Stack) -> None:
    token = stack.tokens["deploy-bot"]
    first = await check(stack, token, request_id="req-1")
    again = await check(stack, token, request_id="req-1")
    assert (again.chron_id, again.outcome) == (first.chron_id, "ALLOW"), "a retry must not be a new decision"
    reused = await check(stack, token, action="deploy:production", request_id="req-1")
    assert (reused.outcome, reused.rule) == ("DENY", "request-id")
    assert reused.reason == "request:replayed -- request id 'req-1' was already used for another request"
    assert reused.chron_id and reused.chron_id != first.chron_id
    # Without the token nobody can claim (or poison) an agent's request ids.
    forged = await check(stack, "clm_demo.forged", request_id="req-2")
    real = await check(stack, token, request_id="req-2")
    assert forged.reason.startswith("auth:bad-token") and real.outcome == "ALLOW"
    await settle(stack)
    rows = await chron_rows(stack)
    assert first.chron_id in rows and reused.chron_id in rows
    ids = [json.loads(e).get("request_id") for e in rows.values()]
    assert ids.count("req-1") == 2, "the retry was recorded twice"
