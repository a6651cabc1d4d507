"""Forged and replayed events, published by an attacker who got past NATS's permissions (a service's
NATS password): none is applied, none becomes a leaf, each is parked, counted and logged, and Chron
says it is not ready until an operator acknowledges them."""

from __future__ import annotations

import asyncio
import logging
import secrets

import pytest
from claiim import AsyncGate
from claiim_core.canonical import canonical_bytes
from claiim_core.checkpoint import Signer
from claiim_core.document import PolicyDocument
from claiim_core.eventauth import GateKey, seal_control, seal_decision
from claiim_core.events import AgentUpdated, ControlEvent, PolicyPublished, aggregate, decode_control
from claiim_core.schemas import DecisionEvent
from claiim_runtime.settings import Settings
from claiim_server.bootstrap import start_services
from nats.aio.client import Client
from nats.js.api import RawStreamMsg

from tests.conftest import Stack, connect_as, sealed, with_auth
from tests.integration.test_chron import event, wait_count

pytestmark = pytest.mark.integration


async def production(stack: Stack) -> tuple[str, str]:
    async with AsyncGate("deploy-bot", stack.tokens["deploy-bot"], stack.settings.url,
                         namespace=stack.settings.namespace) as gate:
        result = await gate.check(action="deploy:production", target="prod-db")
    return result.outcome, result.reason


def open_policy(actor: str = "alice") -> tuple[PolicyPublished, AgentUpdated]:
    """The attack: a policy that allows every deploy, and deploy-bot bound to it, both claiming alice."""
    policy = PolicyPublished(event_id=f"chr_01forged{secrets.token_hex(8)}", at="2026-11-27T10:00:00.000000Z",
                             actor=actor, org="demo", name="open", version=1, description="",
                             document=PolicyDocument(skill="deploy-v2", allow=("deploy:*",), deny=()),
                             content_hash="sha256:" + "0" * 64)
    bind = AgentUpdated(event_id=f"chr_01forged{secrets.token_hex(8)}", at="2026-11-27T10:00:00.000000Z",
                        actor=actor, org="demo", agent_id="deploy-bot", anchor="s.emp1", description="",
                        skills=("deploy-v2",), policy="open-v1")
    return policy, bind


async def publish_control(nc: Client, stack: Stack, events: list[tuple[ControlEvent, bytes]]) -> int:
    """Publish each event's bytes on its own subject; returns the last stream sequence."""
    js, names = nc.jetstream(), stack.names
    seq = 0
    for e, data in events:
        seq = (await js.publish(names.control_subject(e.org, *aggregate(e)), data, stream=names.control_stream,
                                headers={"Nats-Msg-Id": secrets.token_hex(8)})).seq
    return seq


async def read_msg(stack: Stack, stream: str, *, seq: int = 0, subject: str = "") -> RawStreamMsg:
    """A stored message, read as the maintenance user (the attacker copies a genuine event)."""
    nc = await connect_as(stack.settings)
    try:
        js = nc.jetstream()
        return await (js.get_msg(stream, seq) if seq else js.get_last_msg(stream, subject))
    finally:
        await nc.close()


async def chron_settled(stack: Stack, parked: int) -> None:
    """Wait until Chron has parked ``parked`` messages and stored everything before them."""
    chron = stack.running.chron
    assert chron is not None
    for _ in range(200):
        if chron.parked >= parked and (await stack.admin.chron_status()).pending == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"Chron parked {chron.parked} of {parked}")


@pytest.mark.parametrize("signed_by", ["nobody", "another key"])
async def test_forged_control_events_change_nothing_and_are_parked(stack: Stack, signed_by: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A policy allowing deploy:* and deploy-bot bound to it, claiming alice, published with the control
    service's own NATS password: deploy:production stays DENY, and both are parked, counted and logged."""
    caplog.set_level(logging.CRITICAL)
    await stack.admin.enrol_admin("alice")
    assert await production(stack) == ("DENY", "policy:no-prod-v1 -- action explicitly denied")
    attacker = Signer.from_seed("claiim-control", secrets.token_bytes(32))  # same name, another key
    forged = open_policy()
    nc = await connect_as(stack.settings, "control")
    try:
        seq = await publish_control(nc, stack, [
            (e, canonical_bytes(e) if signed_by == "nobody" else seal_control(e, 0, attacker)) for e in forged])
    finally:
        await nc.close()
    for follower in stack.running.followers:
        await follower.wait_for(seq, timeout=5)
        assert follower.rejected == 2
        assert ("demo", "open") not in follower.registry.policies
        assert follower.registry.agents[("demo", "deploy-bot")].policy == "no-prod-v1"
    assert await production(stack) == ("DENY", "policy:no-prod-v1 -- action explicitly denied")
    await chron_settled(stack, parked=2)
    status = await stack.admin.chron_status()
    assert status.tree_size == 9 + 1 + 2, "the demo bundle, alice's enrolment and the two DENYs: no forgery"
    assert status.parked == 2 and status.problems == [
        "2 parked message(s) not acknowledged by an operator (claiim chron parked)"]
    parked = await stack.admin.chron_parked()
    why = "carries no signature" if signed_by == "nobody" else "unknown control key"
    assert len(parked) == 2 and all(p.error.startswith("unauthenticated: ") and why in p.error for p in parked)
    assert {p.subject for p in parked} == {stack.names.control_subject("demo", "policy", "open"),
                                           stack.names.control_subject("demo", "agent", "deploy-bot")}
    criticals = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert sum("not a leaf" in m for m in criticals) == 2 and sum("refused, not applied" in m for m in criticals) >= 2
    assert stack.running.chron is not None and stack.running.chron.rejected == 2
    assert await stack.admin.chron_acknowledge_parked([], "drill: forged by the security test") == sorted(
        p.id for p in parked)
    after = await stack.admin.chron_status()
    assert (after.parked, after.problems) == (0, [])
    [first, _] = await stack.admin.chron_parked(unacknowledged=False)
    assert first.acked_by == "operator" and first.ack_reason == "drill: forged by the security test"


async def test_forged_control_events_stay_unapplied_for_a_gate_started_later(stack: Stack) -> None:
    """A gate replica that rebuilds its registry from the stream later refuses the forgeries too."""
    forged = open_policy()
    nc = await connect_as(stack.settings, "control")
    try:
        await publish_control(nc, stack, [(e, canonical_bytes(e)) for e in forged])
    finally:
        await nc.close()
    replica = await start_services(stack.settings, which=("gate",), instance="later")
    try:
        registry = replica.followers[0].registry
        assert replica.followers[0].rejected == 2
        assert registry.agents[("demo", "deploy-bot")].policy == "no-prod-v1"
        assert ("demo", "open") not in registry.policies
    finally:
        await replica.stop()


async def test_a_genuine_control_event_replayed_elsewhere_or_later_is_refused(stack: Stack) -> None:
    """deploy-bot suspended, then reactivated: replaying the genuine, signed suspension on its own subject
    (later) or on another org's subject applies nothing, and both copies are parked as replays."""
    suspended = await stack.admin.suspend("deploy-bot")
    await stack.admin.reactivate("deploy-bot")
    names = stack.names
    genuine = await read_msg(stack, names.control_stream, seq=suspended.control_seq)
    assert decode_control(genuine.data).auth is not None
    nc = await connect_as(stack.settings, "control")
    try:
        js = nc.jetstream()
        later = await js.publish(genuine.subject, genuine.data, stream=names.control_stream,
                                 headers={"Nats-Msg-Id": secrets.token_hex(8)})
        elsewhere = await js.publish(names.control_subject("acme", "agent", "deploy-bot"), genuine.data,
                                     stream=names.control_stream, headers={"Nats-Msg-Id": secrets.token_hex(8)})
    finally:
        await nc.close()
    gate_follower = stack.running.followers[-1]
    await gate_follower.wait_for(elsewhere.seq, timeout=5)
    assert gate_follower.registry.agents[("demo", "deploy-bot")].status == "active"
    async with AsyncGate("deploy-bot", stack.tokens["deploy-bot"], stack.settings.url,
                         namespace=stack.settings.namespace) as gate:
        assert (await gate.check(action="deploy:staging")).outcome == "ALLOW"
    await chron_settled(stack, parked=2)
    parked = {p.stream_seq: p.error for p in await stack.admin.chron_parked()}
    assert "replayed: signed to follow stream sequence" in parked[later.seq]
    assert "replayed on" in parked[elsewhere.seq] and "it belongs on" in parked[elsewhere.seq]


async def test_forged_and_replayed_decisions_never_become_leaves(stack: Stack) -> None:
    """With the gate's NATS password: an unauthenticated ALLOW, one with a MAC by another key, and a genuine
    decision replayed under another agent's subject and under its own are all parked; none is a leaf, none
    reaches the OCSF feed."""
    async with AsyncGate("deploy-bot", stack.tokens["deploy-bot"], stack.settings.url,
                         namespace=stack.settings.namespace) as gate:
        genuine_id = (await gate.check(action="deploy:production", target="prod-db")).chron_id
    names = stack.names
    allow = DecisionEvent(chron_id=f"chr_01forged{secrets.token_hex(8)}", decided_at="2026-11-27T10:00:00.000000Z",
                          outcome="ALLOW", reason="policy:no-prod-v1 -- action allowed", rule="allow[0]", org="demo",
                          agent_id="deploy-bot", anchor="s.emp1", action="deploy:production", target="prod-db",
                          context={}, request_id=None, policy="no-prod-v1", skill="deploy-v2", gate="g", control_seq=9)
    subject = names.decision_subject("demo", "deploy-bot", "allow")
    denials = names.decision_subject("demo", "deploy-bot", "deny")
    genuine = await read_msg(stack, names.decisions_stream, subject=denials)
    nc = await connect_as(stack.settings, "gate")
    try:
        js = nc.jetstream()
        attempts = [(subject, canonical_bytes(allow)),
                    (subject, seal_decision(allow, GateKey("test-gate", secrets.token_bytes(32)))),
                    (names.decision_subject("demo", "review-bot", "deny"), genuine.data),
                    (genuine.subject, genuine.data)]
        for subj, data in attempts:
            await js.publish(subj, data, stream=names.decisions_stream, headers={"Nats-Msg-Id": secrets.token_hex(8)})
    finally:
        await nc.close()
    await chron_settled(stack, parked=4)
    errors = [p.error for p in sorted(await stack.admin.chron_parked(), key=lambda p: p.stream_seq)]
    assert errors[0] == "unauthenticated: the decision event carries no gate MAC"
    assert errors[1].startswith("unauthenticated: the MAC does not verify with gate key 'test-gate'")
    assert errors[2].startswith("unauthenticated: a genuine decision replayed on")
    assert errors[3].startswith(f"replayed: chron id {genuine_id} is already leaf")
    assert await stack.admin.chron_show(allow.chron_id) is None
    assert [r.chron_id for r in await stack.admin.chron_list(agent_id="deploy-bot", kind="decision")] == [genuine_id]
    ocsf = await connect_as(stack.settings, "siem")
    try:
        await asyncio.sleep(0.5)
        assert (await ocsf.jetstream().stream_info(names.ocsf_stream)).state.messages == 1
    finally:
        await ocsf.close()
    # The copy on its own subject is a duplicate the OCSF stream drops (its Nats-Msg-Id is the chron id).
    assert stack.running.ocsf is not None and stack.running.ocsf.rejected == 3


async def test_a_revoked_gate_key_authenticates_nothing_after_its_revocation(stack_settings: Settings) -> None:
    """With the gate key revoked after stream sequence 2, Chron keeps the decisions before it and parks
    those after; the keyring still verifies the old ones."""
    key = stack_settings.require_gate_key()
    settings = Settings(**{**stack_settings.model_dump(), "gate_keys": f"{key} revoked-after 2"})
    running = await start_services(settings, with_auth(settings, "chron"))
    nc = await connect_as(settings, "gate")
    try:
        for i in range(3):
            await nc.jetstream().publish(settings.names.decision_subject("demo", "bot", "allow"),
                                         sealed(settings, event(i)))
        db = settings.require_database_url()
        await wait_count(db, 2)
        await wait_count(db, 1, "SELECT count(*) FROM chron_parked")
        assert running.chron is not None
        [parked] = await running.chron.store.parked()
        assert parked["stream_seq"] == 3
        assert parked["error"] == ("unauthenticated: signed with gate key 'test-gate', revoked after stream "
                                   "sequence 2 (this event is at 3)")
    finally:
        await nc.close()
        await running.stop()
